"""The node's full-text index compared with one made afresh from the records' envelopes (tests of node/store).

The SQLite index is contentless (0012, docs/adr/0030): a row is taken out by giving its text again, so a text
derived differently from the one indexed would leave terms behind or take the wrong ones out, silently. This reads
what the index holds, term by term and record by record, and what a rebuild from the envelopes would hold.
"""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa

from node.store.records import NodeStore, stored_search_text
from node.store.tables import envelopes, records

_HELD = sa.select(records.c.id, envelopes.c.envelope).select_from(records.join(envelopes, sa.and_(
    envelopes.c.origin == records.c.origin, envelopes.c.seq == records.c.seq)))


async def index_and_rebuild(store: NodeStore) -> tuple[Counter[tuple[int, str]], Counter[tuple[int, str]]]:
    """(record id, term) occurrences the index holds, and those an index made afresh would hold."""
    async with store.engine.connect() as conn:  # closed without a commit: the temporary tables go with it
        texts = {r.id: stored_search_text(bytes(r.envelope)) for r in await conn.execute(_HELD)}
        if conn.dialect.name == "postgresql":
            held = {r.rowid: r.terms for r in await conn.execute(sa.text(
                "SELECT rowid, array_to_string(tsvector_to_array(search), ' ') AS terms FROM records_fts"))}
            fresh = {i: (await conn.execute(sa.text(
                "SELECT array_to_string(tsvector_to_array(strip(to_tsvector('simple', :t))), ' ')"), {"t": t}))
                .scalar_one() for i, t in texts.items()}
            return (Counter((i, w) for i, terms in held.items() for w in terms.split()),
                    Counter((i, w) for i, terms in fresh.items() for w in terms.split()))
        ddl = (await conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE name = 'records_fts'"))).scalar_one()
        await conn.execute(sa.text(ddl.replace("records_fts", "temp.fresh_fts", 1)))
        await conn.execute(sa.text("INSERT INTO temp.fresh_fts (rowid, search) VALUES (:i, :t)"),
                           [{"i": i, "t": t} for i, t in texts.items() if t] or [{"i": 0, "t": ""}])
        out = []
        for table in ("records_fts", "fresh_fts"):
            schema = "temp" if table == "fresh_fts" else "main"
            await conn.execute(sa.text(f"CREATE VIRTUAL TABLE temp.vocab_{table} USING fts5vocab"
                                       f"({schema}, {table}, 'instance')"))
            rows = await conn.execute(sa.text(f"SELECT doc, term FROM temp.vocab_{table}"))  # noqa: S608
            out.append(Counter((r.doc, r.term) for r in rows))
        return out[0], out[1]
