"""Where a node waits for the disk (docs/adr/0033): an applied page of the hub's log commits without waiting, since a
page lost to a power cut is pulled again; what the node authors, and every other write, waits for it as before."""

from __future__ import annotations

from typing import Any

from node.records.service import NodeService
from node.store.records import NodeStore
from tests.support.factories import Member


async def _setting(engine: Any, dialect: str) -> str:
    async with engine.connect() as conn:
        query = "PRAGMA synchronous" if dialect == "sqlite" else "SHOW synchronous_commit"
        return str((await conn.exec_driver_sql(query)).scalar_one())


async def test_applied_pages_commit_without_waiting_for_the_disk(store: NodeStore, service: NodeService, kr: Member,
                                                                 event: dict[str, Any]) -> None:
    """The store writes applied pages through an engine whose commits do not wait for the disk (SQLite
    synchronous=NORMAL in WAL mode, PostgreSQL synchronous_commit off); its own engine, which authoring and every
    other write use, keeps waiting (FULL, on). Both see the same database: the page applied is read back."""
    dialect = store.engine.dialect.name
    assert await _setting(store.relaxed, dialect) == ("1" if dialect == "sqlite" else "off")
    assert await _setting(store.engine, dialect) == ("2" if dialect == "sqlite" else "on")
    env = kr.publish(event)
    await service.applier.apply_log(0, [(1, env.to_dict())])
    assert (await service.get(env.payload.record_id)).hash == env.hash
    await service.create("cultural-event", event)  # authored: a durable commit, after the relaxed one
    assert (await service.counts()).own == 1
