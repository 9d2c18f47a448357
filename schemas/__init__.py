"""The JSON Schema documents of IPDN Exchange, shipped as package data (see federation.protocol.schemas)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
