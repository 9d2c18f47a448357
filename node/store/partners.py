"""Partner API keys (0004): stored as a digest, with their scopes, rate and use (node/partners/access.py decides)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from federation.server.db import direct
from node.store.tables import partner_keys, utc
from node.webhooks import store as webhook_store


@dataclass(frozen=True, slots=True)
class PartnerKeyRow:
    key_id: str
    name: str
    key_hash: str = field(repr=False)
    scopes: frozenset[str]
    rate_per_minute: int | None
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def from_row(cls, r: Any) -> PartnerKeyRow:
        return cls(r.key_id, r.name, r.key_hash, frozenset(r.scopes.split()), r.rate_per_minute, utc(r.created_at),
                   r.revoked_at and utc(r.revoked_at), r.last_used_at and utc(r.last_used_at))


_KEY = sa.select(partner_keys).where(partner_keys.c.key_id == sa.bindparam("key_id"))


class PartnerStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(self, row: PartnerKeyRow) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(partner_keys.insert().values(
                key_id=row.key_id, name=row.name, key_hash=row.key_hash, scopes=" ".join(sorted(row.scopes)),
                rate_per_minute=row.rate_per_minute, created_at=utc(row.created_at)))

    async def key(self, key_id: str) -> PartnerKeyRow | None:
        """The key's row (every partner request reads it)."""
        async with self.engine.connect() as conn:
            rows = await direct.rows(conn, _KEY, {"key_id": key_id})
        return PartnerKeyRow.from_row(rows[0]) if rows else None

    async def keys(self) -> list[PartnerKeyRow]:
        q = sa.select(partner_keys).order_by(partner_keys.c.name, partner_keys.c.created_at)
        async with self.engine.connect() as conn:
            return [PartnerKeyRow.from_row(r) for r in await conn.execute(q)]

    async def revoke(self, name: str, now: datetime, key_id: str | None = None) -> int:
        """Revoke the partner's live keys (or the one named): the number revoked. Once the partner holds no
        live key, its webhook subscriptions are disabled too (``operator``): no more pushes either."""
        q = partner_keys.update().where(partner_keys.c.name == name, partner_keys.c.revoked_at.is_(None))
        if key_id is not None:
            q = q.where(partner_keys.c.key_id == key_id)
        async with self.engine.begin() as conn:
            n = int((await conn.execute(q.values(revoked_at=utc(now)))).rowcount)
            live = (await conn.execute(sa.select(sa.func.count()).select_from(partner_keys).where(
                partner_keys.c.name == name, partner_keys.c.revoked_at.is_(None)))).scalar_one()
            if n and not live:
                await webhook_store.disable_partner(conn, name, "every key of the partner was revoked", utc(now))
        return n

    async def touch(self, key_id: str, now: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(partner_keys.update().where(partner_keys.c.key_id == key_id)
                               .values(last_used_at=utc(now)))
