"""Alembic environment: migrations run on the connection handed over by federation.db.migrate."""

from federation.db import run_alembic_env

run_alembic_env()
