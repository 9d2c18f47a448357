"""Alembic environment: migrations run on the connection handed over by federation.server.db.engine.migrate."""

from federation.server.db.engine import run_alembic_env

run_alembic_env()
