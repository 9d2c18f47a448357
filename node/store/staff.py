"""The authoring pages' tables (0006): staff accounts, unsigned drafts, who published each own version
(authorship, written by ``NodeStore.author`` in the transaction that keeps the envelope: :func:`add_authorship`)
and the record each imported source id created."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from federation.protocol.envelope import Envelope
from node.store.tables import drafts, envelopes, import_sources, record_authors, staff_users, utc


@dataclass(frozen=True, slots=True)
class Authorship:
    """Who published an own version through the authoring pages or an import, and the import's source id."""

    username: str
    via: str  # "form" or "import"
    source_id: str | None = None
    note: str | None = None  # a cancellation's reason, kept here when the schema has no field for it


@dataclass(frozen=True, slots=True)
class StaffUser:
    username: str
    name: str
    password_hash: str = field(repr=False)
    disabled: bool = False
    created_at: datetime | None = None
    totp_secret: str | None = field(default=None, repr=False)  # RFC 6238, base32; None: no second factor


@dataclass(frozen=True, slots=True)
class Draft:
    """A record body being written: unsigned, kept only here. ``body`` may be incomplete or invalid."""

    id: str
    kind: str
    body: dict[str, Any]
    langs: tuple[str, ...]
    created_by: str
    updated_by: str
    created_at: datetime
    updated_at: datetime
    record_id: str | None = None  # set when the draft edits a published record ...
    base_version: int | None = None  # ... starting from this version of it


@dataclass(frozen=True, slots=True)
class VersionRow:
    """One version of a record as held: its envelope, and who published it here (own versions only)."""

    version: int
    seq: int
    envelope: bytes
    username: str | None
    via: str | None
    note: str | None
    name: str | None = None  # the account's display name (None: no account of that name held here)


async def add_authorship(conn: AsyncConnection, env: Envelope, by: Authorship, now: datetime) -> None:
    """Who published ``env`` and the import source id it answers to, in the transaction that keeps it."""
    p = env.payload
    await conn.execute(record_authors.insert().values(
        record_id=p.record_id, version=p.version, username=by.username, via=by.via, at=now, note=by.note))
    if by.source_id is not None:
        done = await conn.execute(import_sources.update().where(
            import_sources.c.source_id == by.source_id).values(record_id=p.record_id))
        if done.rowcount == 0:
            await conn.execute(import_sources.insert().values(source_id=by.source_id, record_id=p.record_id))


def _user(r: Any) -> StaffUser:
    return StaffUser(r.username, r.name, r.password_hash, bool(r.disabled), utc(r.created_at), r.totp_secret)


def _draft(r: Any) -> Draft:
    return Draft(r.id, r.kind, json.loads(r.body), tuple(json.loads(r.langs)), r.created_by, r.updated_by,
                 utc(r.created_at), utc(r.updated_at), r.record_id, r.base_version)


class StaffStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # -- accounts --------------------------------------------------------------------------------------

    async def add_user(self, user: StaffUser, now: datetime) -> bool:
        """Add an account; False if the username is taken."""
        async with self.engine.begin() as conn:
            if (await conn.execute(sa.select(staff_users.c.username).where(
                    staff_users.c.username == user.username))).first() is not None:
                return False
            await conn.execute(staff_users.insert().values(
                username=user.username, name=user.name, password_hash=user.password_hash, disabled=user.disabled,
                created_at=utc(now)))
        return True

    async def user(self, username: str) -> StaffUser | None:
        async with self.engine.connect() as conn:
            r = (await conn.execute(sa.select(staff_users).where(staff_users.c.username == username))).first()
        return _user(r) if r else None

    async def users(self) -> list[StaffUser]:
        async with self.engine.connect() as conn:
            return [_user(r) for r in await conn.execute(sa.select(staff_users).order_by(staff_users.c.username))]

    async def set_user_disabled(self, username: str, disabled: bool) -> bool:
        """False if there is no such account."""
        async with self.engine.begin() as conn:
            done = await conn.execute(staff_users.update().where(staff_users.c.username == username)
                                      .values(disabled=disabled))
        return bool(done.rowcount)

    async def set_totp(self, username: str, secret: str | None) -> bool:
        """Enrol (or, with None, remove) the account's second factor; False if there is no such account."""
        async with self.engine.begin() as conn:
            done = await conn.execute(staff_users.update().where(staff_users.c.username == username)
                                      .values(totp_secret=secret, totp_last_step=None))
        return bool(done.rowcount)

    async def use_totp_step(self, username: str, step: int) -> bool:
        """Record a sign-in with the code of ``step``: False, recording nothing, when the account has used that
        step or a later one. One statement, so two sign-ins with one code cannot both pass."""
        last = staff_users.c.totp_last_step
        async with self.engine.begin() as conn:
            done = await conn.execute(staff_users.update().where(
                staff_users.c.username == username, sa.or_(last.is_(None), last < step)).values(totp_last_step=step))
        return bool(done.rowcount)

    # -- drafts ----------------------------------------------------------------------------------------

    async def save_draft(self, d: Draft) -> None:
        values = {"id": d.id, "kind": d.kind, "record_id": d.record_id, "base_version": d.base_version,
                  "body": json.dumps(d.body, ensure_ascii=False), "langs": json.dumps(list(d.langs)),
                  "created_by": d.created_by, "updated_by": d.updated_by, "created_at": utc(d.created_at),
                  "updated_at": utc(d.updated_at)}
        async with self.engine.begin() as conn:
            done = await conn.execute(drafts.update().where(drafts.c.id == d.id).values(values))
            if done.rowcount == 0:
                await conn.execute(drafts.insert().values(values))

    async def draft(self, draft_id: str) -> Draft | None:
        async with self.engine.connect() as conn:
            r = (await conn.execute(sa.select(drafts).where(drafts.c.id == draft_id))).first()
        return _draft(r) if r else None

    async def draft_of(self, record_id: str) -> Draft | None:
        """The draft editing a published record, if one is open."""
        async with self.engine.connect() as conn:
            r = (await conn.execute(sa.select(drafts).where(drafts.c.record_id == record_id))).first()
        return _draft(r) if r else None

    async def drafts(self, limit: int = 500) -> list[Draft]:
        async with self.engine.connect() as conn:
            return [_draft(r) for r in await conn.execute(
                sa.select(drafts).order_by(drafts.c.updated_at.desc()).limit(limit))]

    async def delete_draft(self, draft_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(drafts.delete().where(drafts.c.id == draft_id))

    # -- history and import source ids -------------------------------------------------------------------

    async def versions(self, record_id: str) -> list[VersionRow]:
        """Every version of a record held, oldest first, with who published own versions here."""
        q = (sa.select(envelopes.c.version, envelopes.c.seq, envelopes.c.envelope, record_authors.c.username,
                       record_authors.c.via, record_authors.c.note, staff_users.c.name)
             .outerjoin(record_authors, sa.and_(record_authors.c.record_id == envelopes.c.record_id,
                                                record_authors.c.version == envelopes.c.version))
             .outerjoin(staff_users, staff_users.c.username == record_authors.c.username)
             .where(envelopes.c.record_id == record_id).order_by(envelopes.c.version, envelopes.c.seq))
        async with self.engine.connect() as conn:
            return [VersionRow(r.version, r.seq, bytes(r.envelope), r.username, r.via, r.note, r.name or None)
                    for r in await conn.execute(q)]

    async def last_puts(self, record_ids: Sequence[str]) -> dict[str, bytes]:
        """The envelope of each record's last version with a body (a deleted record's last words)."""
        out: dict[str, bytes] = {}
        async with self.engine.connect() as conn:
            for i in range(0, len(record_ids), 500):
                last = (sa.select(envelopes.c.record_id, sa.func.max(envelopes.c.version).label("version"))
                        .where(envelopes.c.record_id.in_(list(record_ids[i:i + 500])), envelopes.c.op == "put")
                        .group_by(envelopes.c.record_id).subquery())
                q = sa.select(envelopes.c.record_id, envelopes.c.envelope).join(last, sa.and_(
                    envelopes.c.record_id == last.c.record_id, envelopes.c.version == last.c.version))
                out.update({r.record_id: bytes(r.envelope) for r in await conn.execute(q)})
        return out

    async def source_records(self, source_ids: Sequence[str]) -> dict[str, str]:
        """The record each imported source id created (absent: none yet)."""
        out: dict[str, str] = {}
        async with self.engine.connect() as conn:
            for i in range(0, len(source_ids), 500):
                q = sa.select(import_sources).where(import_sources.c.source_id.in_(list(source_ids[i:i + 500])))
                out.update({r.source_id: r.record_id for r in await conn.execute(q)})
        return out

    async def record_sources(self) -> dict[str, str]:
        """record id -> the source id it was imported under (the last one, if several)."""
        async with self.engine.connect() as conn:
            return {r.record_id: r.source_id for r in await conn.execute(
                sa.select(import_sources).order_by(import_sources.c.source_id))}
