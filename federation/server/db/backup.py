"""Back up and restore a hub's or a node's directory and database, while the service runs.

An archive is a gzip-compressed tar (docs/adr/0011-deployment-tls-and-backups.md):

- ``MANIFEST.json``: format, role, creation time, the database kind and Alembic revision, every file
  with its SHA-256 and mode, and which secrets were left out;
- ``files/...``: the service directory (configuration, registry, ``keys.json``, public keys, ...),
  without its live database files. Secrets (every PEM private key, and the operator token) are
  included only with ``include_secrets``; otherwise they are listed as left out and must be restored
  from the operator's key backup;
- ``db/sqlite.db``: a consistent copy made with SQLite's online backup API inside one read
  transaction (WAL: the service keeps writing meanwhile), checked with ``PRAGMA integrity_check``;
  or ``db/postgresql.dump``: ``pg_dump --format=custom`` of the PostgreSQL database.

Restoring writes into a new, empty directory, checks every file against the manifest, and refuses an
archive from a newer schema than this code knows. The store migrates an older one when it opens.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w

from federation.progress import ProgressCallback
from federation.protocol.envelope import format_time
from federation.protocol.errors import IpdnError
from federation.server.db import engine as db

FORMAT = "ipdn-backup/1"
MANIFEST = "MANIFEST.json"
SQLITE_MEMBER = "db/sqlite.db"
PG_MEMBER = "db/postgresql.dump"
_STEP_PAGES = 1024  # pages copied per backup step (4 MiB at the default page size)
_CHUNK = 1024 * 1024
_GZIP_LEVEL = 1  # the data is mostly base64 (envelopes): higher levels cost more time and shrink it hardly more
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".partial")


class BackupError(IpdnError):
    """A backup or restore could not be made; the message says why in one line."""

    reason = "backup-failed"


@dataclass(frozen=True)
class Role:
    """What differs between the hub's and the node's directory."""

    name: str  # "hub" or "node"
    config_file: str  # hub.toml, node.toml
    default_db: str  # the SQLite file used when db_url is not set
    version_table: str
    migrations: Path


SECRET_NAMES = frozenset({"operator.token"})


def is_secret(path: Path) -> bool:
    """Private keys (any PEM private key: member, rotated, hub or TLS keys) and the operator token.

    By content and name, not by mode: under a 0077 umask (systemd, the container) every file is 0600.
    """
    if path.name in SECRET_NAMES:
        return True
    with path.open("rb") as f:
        return b"PRIVATE KEY-----" in f.read(64 * 1024)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _pg_env(url: str) -> dict[str, str]:
    """libpq variables for a PostgreSQL URL (the password travels in the environment, never in argv)."""
    parts = db.url_parts(url)
    env = {**os.environ}
    for var, key in (("PGHOST", "host"), ("PGPORT", "port"), ("PGUSER", "username"), ("PGPASSWORD", "password"),
                     ("PGDATABASE", "database")):
        if parts.get(key):
            env[var] = str(parts[key])
    return env


def _run(argv: list[str], env: dict[str, str]) -> None:
    if shutil.which(argv[0]) is None:
        raise BackupError(f"{argv[0]} is not on PATH: install the PostgreSQL client tools "
                          f"(Debian: postgresql-client), or dump by hand: see docs/operating-hub.md, Back up")
    p = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        lines = p.stderr.strip().splitlines() or [f"exit {p.returncode}"]
        raise BackupError(f"{argv[0]}: {lines[-1]}")


# -- backup -------------------------------------------------------------------------------------------------


def _copy_sqlite(source: Path, target: Path, progress: ProgressCallback | None) -> None:
    """A consistent copy of a live SQLite database.

    The source connection holds one read transaction for the whole copy, so every step reads the same
    snapshot (in WAL mode writers carry on; without it a write would restart the backup).
    """
    if not source.exists():
        raise BackupError(f"no database at {source} (the service creates it when it first starts)")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30, isolation_level=None)
    dst = sqlite3.connect(target, isolation_level=None)
    try:
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # starts the read transaction: the snapshot
        src.backup(dst, pages=_STEP_PAGES,
                   progress=(lambda _s, remaining, total: progress(total - remaining, total)) if progress else None)
        src.execute("COMMIT")
        problems = [r[0] for r in dst.execute("PRAGMA integrity_check").fetchall()]
        if problems != ["ok"]:
            raise BackupError(f"the copy of {source} failed its integrity check: {problems[0]}")
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file in the archive
    except sqlite3.Error as e:
        raise BackupError(f"cannot back up {source}: {e}") from e
    finally:
        dst.close()
        src.close()


def _sqlite_revision(path: Path, version_table: str) -> str | None:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = con.execute(f'SELECT version_num FROM "{version_table}"').fetchone()  # noqa: S608 (our table name)
        return str(row[0]) if row else None
    except sqlite3.Error:
        return None
    finally:
        con.close()


def create(role: Role, directory: Path, db_url: str, out: Path, *, include_secrets: bool = False,
           progress: ProgressCallback | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
           ) -> dict[str, Any]:
    """Write the archive ``out`` of ``directory`` and its database; the manifest.

    Raises:
        BackupError: the directory is not a ``role`` directory, the database cannot be copied or
            dumped, or ``out`` cannot be written.
    """
    directory = directory.resolve()
    if not (directory / role.config_file).is_file():
        raise BackupError(f"{directory} is not a {role.name} directory (no {role.config_file})")
    sqlite_path = db.sqlite_path(db_url)
    out = out.resolve()
    skip = {out}
    if sqlite_path is not None:
        skip |= {Path(f"{sqlite_path}{suffix}").resolve() for suffix in ("", "-wal", "-shm", "-journal")}
    files: dict[str, dict[str, Any]] = {}
    left_out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ipdn-backup-") as tmp:
        if sqlite_path is not None:
            dump, member, kind = Path(tmp) / "sqlite.db", SQLITE_MEMBER, "sqlite"
            _copy_sqlite(sqlite_path, dump, progress)
            revision = _sqlite_revision(dump, role.version_table)
        else:
            dump, member, kind = Path(tmp) / "postgresql.dump", PG_MEMBER, "postgresql"
            _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--file={dump}"], _pg_env(db_url))
            revision = None  # read back by restore, after pg_restore
        chosen: list[tuple[str, bytes, int]] = []
        for path in sorted(directory.rglob("*")):
            if not path.is_file() or path.resolve() in skip or path.is_symlink():
                continue
            if path.name.endswith(_ARCHIVE_SUFFIXES):  # earlier archives written into the directory
                continue
            name = path.relative_to(directory).as_posix()
            secret = is_secret(path)
            if secret and not include_secrets:
                left_out.append(name)
                continue
            # Read once: hashed and archived bytes are the same even if the service rewrites the file meanwhile.
            data, mode = path.read_bytes(), path.stat().st_mode & 0o777
            files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "mode": mode, "secret": secret}
            chosen.append((name, data, mode))
        manifest = {"format": FORMAT, "role": role.name, "created_at": format_time(clock()),
                    "database": {"kind": kind, "member": member, "sha256": _sha256(dump), "revision": revision},
                    "files": files, "secrets_included": include_secrets, "secrets_left_out": left_out}
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        # 0600 either way: even without keys, the registry history and the log are the operator's to share.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as raw:
                with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=_GZIP_LEVEL) as tar:
                    mtime = int(clock().timestamp())
                    for name, data, mode in [(MANIFEST, json.dumps(manifest, indent=2).encode(), 0o600),
                                             *((f"files/{n}", d, m) for n, d, m in chosen)]:
                        info = tarfile.TarInfo(name)
                        info.size, info.mode, info.mtime = len(data), mode, mtime
                        tar.addfile(info, io.BytesIO(data))
                    tar.add(dump, arcname=member, recursive=False)
                raw.flush()
                os.fsync(raw.fileno())  # after the gzip trailer: the archive is whole on disk before its rename
            partial.replace(out)
        except OSError as e:
            partial.unlink(missing_ok=True)
            raise BackupError(f"cannot write {out}: {e.strerror}") from e
    return manifest


# -- restore ------------------------------------------------------------------------------------------------


def read_manifest(tar: tarfile.TarFile, role: Role) -> dict[str, Any]:
    try:
        f = tar.extractfile(MANIFEST)
        manifest = json.loads(f.read()) if f else None
    except (KeyError, ValueError) as e:
        raise BackupError(f"not an IPDN backup archive (no readable {MANIFEST})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"not an {FORMAT} archive")
    if manifest.get("role") != role.name:
        raise BackupError(f"this is a {manifest.get('role')} backup, not a {role.name} one")
    return manifest


def _known_revisions(role: Role) -> set[str]:
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory(str(role.migrations)).walk_revisions()}


def _extract(tar: tarfile.TarFile, name: str, target: Path, sha256: str, mode: int,
             progress: Callable[[int], None] | None = None) -> None:
    """Stream one member to ``target`` (created 0600 first, then given ``mode``), checking its hash."""
    try:
        member = tar.getmember(name)
    except KeyError as e:
        raise BackupError(f"the archive lacks {name}") from e
    if not member.isfile():
        raise BackupError(f"{name} in the archive is not a regular file")
    source = tar.extractfile(member)
    assert source is not None
    h = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        while chunk := source.read(_CHUNK):
            h.update(chunk)
            f.write(chunk)
            if progress:
                progress(len(chunk))
        f.flush()
        os.fsync(f.fileno())
    if h.hexdigest() != sha256:
        raise BackupError(f"{name} does not match its SHA-256 in the manifest: the archive is damaged")
    os.chmod(target, mode)


def restore(role: Role, archive: Path, directory: Path, *, db_url: str | None = None,
            progress: ProgressCallback | None = None) -> dict[str, Any]:
    """Restore ``archive`` into ``directory`` (absent or empty); the manifest.

    The database goes to ``db_url`` when given (PostgreSQL: an empty database), else to the role's
    default SQLite file in ``directory``; the restored configuration names it.

    Raises:
        BackupError: the archive is not a ``role`` backup, is damaged or from a newer schema; the
            directory is not empty; a PostgreSQL dump has no ``db_url`` to go to; pg_restore failed.
    """
    directory = directory.resolve()
    if directory.exists() and any(directory.iterdir()):
        raise BackupError(f"{directory} is not empty: restore into a new directory")
    try:
        tar = tarfile.open(archive, mode="r:gz")  # noqa: SIM115 (closed by the with below)
    except (OSError, tarfile.TarError) as e:
        raise BackupError(f"cannot read {archive}: {e}") from e
    with tar:
        manifest = read_manifest(tar, role)
        database = manifest["database"]
        revision = database.get("revision")
        if revision and revision not in _known_revisions(role):
            raise BackupError(f"the backup's schema revision {revision} is newer than this version of ipdn knows: "
                              "upgrade ipdn first")
        target_url = db_url
        if database["kind"] == "postgresql" and not (db_url and db.sqlite_path(db_url) is None):
            raise BackupError("this backup holds a PostgreSQL dump: give --db-url of an empty PostgreSQL database")
        if database["kind"] == "sqlite" and db_url and db.sqlite_path(db_url) is None:
            raise BackupError("this backup holds a SQLite database: give a sqlite+aiosqlite:/// --db-url or none")
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        members = tar.getmembers()
        total = sum(m.size for m in members)
        done = [0]

        def advance(n: int) -> None:
            done[0] += n
            if progress:
                progress(done[0], total)

        files: dict[str, dict[str, Any]] = manifest["files"]
        for name, meta in files.items():
            target = (directory / name).resolve()
            if directory not in target.parents:  # a crafted archive naming ../ or an absolute path
                raise BackupError(f"{name}: a path outside the directory")
            _extract(tar, f"files/{name}", target, meta["sha256"], int(meta["mode"]) & 0o777, advance)
        with tempfile.TemporaryDirectory(prefix="ipdn-restore-") as tmp:
            if database["kind"] == "sqlite":
                sqlite_target = db.sqlite_path(db_url) if db_url else directory / role.default_db
                assert sqlite_target is not None
                if sqlite_target.exists():
                    raise BackupError(f"{sqlite_target} exists: restore into a new database file")
                _extract(tar, database["member"], sqlite_target, database["sha256"], 0o600, advance)
                target_url = db_url or None
            else:
                dump = Path(tmp) / "postgresql.dump"
                _extract(tar, database["member"], dump, database["sha256"], 0o600, advance)
                assert db_url is not None
                _run(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", f"--dbname={_pg_dsn(db_url)}",
                      str(dump)], _pg_env(db_url))
    _set_db_url(directory / role.config_file, target_url)
    return manifest


def _pg_dsn(url: str) -> str:
    """The database name only: host, user and password come from the environment (see :func:`_pg_env`)."""
    return str(db.url_parts(url).get("database") or "")


def _set_db_url(config: Path, url: str | None) -> None:
    """Name the restored database in the configuration (no key: the default SQLite file in the directory)."""
    text = config.read_text(encoding="utf-8")
    values = tomllib.loads(text)
    if values.get("db_url") == url or (url is None and "db_url" not in values):
        return
    if url is None:
        values.pop("db_url", None)
    else:
        values["db_url"] = url
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    config.write_text(header + tomli_w.dumps(values), encoding="utf-8")
