"""The hub's configuration: ``hub.toml`` in its directory, each key overridable by ``IPDN_HUB_<KEY>``."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from federation import db

_CASTS: dict[str, Any] = {"int": int, "float": float}


@dataclass(frozen=True, slots=True)
class HubConfig:
    dir: Path
    db_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8440
    max_batch_bytes: int = 64 * 1024 * 1024  # one push request
    page_limit: int = 1000  # entries per log page, at most
    max_wait: float = 30.0  # long-poll seconds, at most
    writer_batch: int = 5000  # envelopes per group commit, at most
    replay_window: int = 300  # seconds an HTTP signature's created may differ from now
    operator_token_sha256: str = ""  # the plaintext is in operator.token, never in this file or a log
    verify_workers: int = field(default_factory=lambda: os.cpu_count() or 1)  # 0: verify in the event loop

    @property
    def key_path(self) -> Path:
        return self.dir / "hub.key.pem"

    @property
    def registry_path(self) -> Path:
        return self.dir / "registry.json"

    @classmethod
    def load(cls, directory: Path, **overrides: Any) -> HubConfig:
        """Defaults, then ``hub.toml``, then environment, then explicit overrides (CLI flags)."""
        directory = directory.resolve()
        values: dict[str, Any] = {}
        toml = directory / "hub.toml"
        if toml.exists():
            values.update(tomllib.loads(toml.read_text()).get("hub", {}))
        for f in fields(cls):
            env = os.environ.get(f"IPDN_HUB_{f.name.upper()}")
            if env is not None and f.name != "dir":
                values[f.name] = _CASTS.get(str(f.type), str)(env)
        values.update({k: v for k, v in overrides.items() if v is not None})
        values.pop("dir", None)
        cfg = cls(dir=directory, **values)
        if not cfg.db_url:
            cfg = replace(cfg, db_url=db.sqlite_url(directory / "hub.db"))
        return cfg
