"""Statements compiled by SQLAlchemy, run on SQLite's driver connection directly (ADR 35).

Executing a statement whose compilation SQLAlchemy has cached still costs it about 0.1 ms of CPU (an execution
context, parameters processed row by row, a result object, a greenlet for the call) on top of SQLite's own work,
which is a few tens of microseconds for the statements a node runs on the path of every record: half of applying
a page of one envelope. Here a Core statement is compiled by SQLAlchemy once per dialect and set of parameter
names (the SQL text SQLAlchemy itself would run, with its bind and result processors), and run on the
``sqlite_driver`` connection beneath the ``AsyncConnection``, inside its transaction: sqlite3 begins the
transaction at the first write, as it does for SQLAlchemy, and SQLAlchemy's commit or rollback ends it.

:func:`rows` and :func:`run` take the ``AsyncConnection`` as SQLAlchemy's own ``execute`` does. On a dialect
other than SQLite, and on an engine made with ``reference(engine)``, they are ``conn.execute``: the reference path,
which the tests hold the direct path to (tests/node/store/test_direct_apply.py). PostgreSQL stays on it: its
adapter begins the transaction itself at SQLAlchemy's first statement, so a statement run beneath it could run
outside the transaction.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import ClauseElement

REFERENCE = "ipdn_reference"  # the execution option that keeps an engine's statements on SQLAlchemy
_DRIVER = "ipdn_driver"  # where a pooled connection keeps its driver connection (its info dict lives as long)

Params = Mapping[str, Any]
_UNSET = object()  # a parameter without a literal value: the caller must give it


def reference(engine: AsyncEngine) -> AsyncEngine:
    """The same engine (and pool) whose statements :func:`rows` and :func:`run` leave to SQLAlchemy."""
    return engine.execution_options(**{REFERENCE: True})


@dataclass(frozen=True, slots=True)
class _Plan:
    """A statement as compiled for one dialect and set of parameter names."""

    stmt: ClauseElement  # held: the plans are keyed by its id
    compiled: Any  # SQLCompiler
    binds: dict[str, Callable[[Any], Any]]  # bind processors by parameter name (a datetime becomes text on SQLite)
    row: Any  # the namedtuple of a result row (None: no result)
    results: tuple[Callable[[Any], Any] | None, ...] | None  # by column (text becomes a datetime); None: none
    # A statement without expanding (IN) lists: its parameters in order, as (key, literal value, processor).
    fixed: tuple[tuple[str, Any, Callable[[Any], Any] | None], ...] | None

    def bound(self, params: Params) -> tuple[str, tuple[Any, ...]]:
        """The SQL and the driver's positional parameters: expanding (IN) lists rendered, literal values included."""
        if self.fixed is not None:  # SQLAlchemy's construct_expanded_state would cost more than SQLite's statement
            values = []
            for k, literal, p in self.fixed:
                v = params.get(k, literal)
                if v is _UNSET:
                    raise KeyError(f"a value is required for the parameter {k!r}")
                values.append(v if p is None or v is None else p(v))
            return self.compiled.string, tuple(values)
        state = self.compiled.construct_expanded_state(params)
        values, binds = state.parameters, self.binds
        procs = {**binds, **state.processors} if state.processors else binds
        return state.statement, tuple(procs[n](values[n]) if n in procs else values[n] for n in state.positiontup)

    def made(self, raw: Sequence[Any]) -> Any:
        if self.results is None:
            return self.row._make(raw)
        return self.row._make([v if p is None or v is None else p(v) for p, v in zip(self.results, raw, strict=True)])


_plans: dict[tuple[int, str, tuple[str, ...] | None], _Plan] = {}
PLANS = 256  # the statements given are built once (module constants); a statement built per call only recompiles


def _plan(stmt: ClauseElement, dialect: Dialect, keys: tuple[str, ...] | None) -> _Plan:
    key = (id(stmt), dialect.name, keys)
    plan = _plans.get(key)
    if plan is None or plan.stmt is not stmt:
        if len(_plans) >= PLANS:
            _plans.clear()
        compiled: Any = stmt.compile(dialect=dialect, column_keys=list(keys) if keys is not None else None)
        binds = {name: p for bp, name in compiled.bind_names.items()
                 if (p := bp.type.dialect_impl(dialect).bind_processor(dialect)) is not None}
        columns = getattr(stmt, "selected_columns", None)
        row: Any = None
        results = None
        if columns is not None:
            row = namedtuple("Row", list(columns.keys()))  # type: ignore[misc,no-redef]  # fields: the statement's
            procs = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns)
            results = procs if any(procs) else None
        fixed = None
        if not compiled.post_compile_params:
            by_name = {name: bp for bp, name in compiled.bind_names.items()}
            fixed = tuple((by_name[n].key, _UNSET if by_name[n].required else by_name[n].effective_value, binds.get(n))
                          for n in compiled.positiontup or ())
        plan = _plans[key] = _Plan(stmt, compiled, binds, row, results, fixed)
    return plan


async def _driver(conn: AsyncConnection) -> Any | None:
    """The sqlite_driver connection beneath ``conn`` (None: the reference path)."""
    sync = conn.sync_connection
    if sync is None or conn.dialect.name != "sqlite" or sync.get_execution_options().get(REFERENCE):
        return None
    info = sync.info
    driver = info.get(_DRIVER)
    if driver is None:
        driver = info[_DRIVER] = (await conn.get_raw_connection()).driver_connection
    return driver


async def rows(conn: AsyncConnection, stmt: Any, params: Params | None = None) -> list[Any]:
    """The rows of a SELECT, each with its columns as attributes."""
    driver = await _driver(conn)
    if driver is None:
        return list(await conn.execute(stmt, dict(params or {})))
    plan = _plan(stmt, conn.dialect, None)
    sql, args = plan.bound(params or {})
    cursor = await driver.cursor()
    try:
        await cursor.execute(sql, args)
        return [plan.made(r) for r in await cursor.fetchall()]
    except conn.dialect.loaded_dbapi.Error as e:
        raise _wrapped(conn, sql, args, e) from e
    finally:
        await cursor.close()


async def run(conn: AsyncConnection, stmt: Any, params: Params | Sequence[Params]) -> None:
    """Execute a statement that returns no rows, once or (a list of parameter sets, one set of names) for each."""
    many = list(params) if not isinstance(params, Mapping) else [params]
    if not many:
        return
    driver = await _driver(conn)
    if driver is None:
        await conn.execute(stmt, many if len(many) > 1 else many[0])
        return
    plan = _plan(stmt, conn.dialect, tuple(many[0]))
    bound = [plan.bound(p) for p in many]
    if any(sql != bound[0][0] for sql, _ in bound):  # IN lists of different lengths: not one executemany
        raise ValueError("each parameter set of one executemany must render the same SQL")
    cursor = await driver.cursor()
    try:
        if len(bound) == 1:
            await cursor.execute(*bound[0])
        else:
            await cursor.executemany(bound[0][0], [args for _, args in bound])
    except conn.dialect.loaded_dbapi.Error as e:
        raise _wrapped(conn, bound[0][0], bound[0][1], e) from e
    finally:
        await cursor.close()


def _wrapped(conn: AsyncConnection, sql: str, args: Any, error: Exception) -> exc.StatementError:
    """The driver's error as SQLAlchemy raises it (an IntegrityError is ``sqlalchemy.exc.IntegrityError``), so that
    callers catch the same exceptions on both paths."""
    return exc.DBAPIError.instance(sql, args, error, conn.dialect.loaded_dbapi.Error)
