"""Backup archives: what goes in, what is left out, and the archives a restore refuses."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from federation.hub.store.log import MIGRATIONS, VERSION_TABLE
from federation.server.db import backup
from federation.server.db import engine as db
from tests.support.harness import wait_for

ROLE = backup.Role("hub", "hub.toml", "hub.db", VERSION_TABLE, MIGRATIONS)


@pytest.fixture
def hub_dir(tmp_path: Path) -> Path:
    """A hub directory with a config, a public file, a 0600 key and a SQLite database at revision 0003."""
    d = tmp_path / "hub"
    d.mkdir()
    (d / "hub.toml").write_text("# the hub\nport = 8440\n")
    (d / "registry.json").write_text('{"registry": 1}\n')
    (d / "hub.key.pem").write_text("-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n")
    (d / "operator.token").write_text("t0ken\n")
    for f in d.iterdir():
        f.chmod(0o600)  # as under a 0077 umask (systemd, the container): the mode says nothing
    con = sqlite3.connect(d / "hub.db")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"CREATE TABLE {VERSION_TABLE} (version_num TEXT)")
    con.execute(f"INSERT INTO {VERSION_TABLE} VALUES ('0003')")  # noqa: S608 (a constant)
    con.execute("CREATE TABLE log (position INTEGER PRIMARY KEY, envelope BLOB)")
    con.executemany("INSERT INTO log VALUES (?, ?)", [(i, b"x" * 100) for i in range(1, 2001)])
    con.commit()
    con.close()
    return d


def _make(hub_dir: Path, tmp_path: Path, **kw: Any) -> tuple[Path, dict[str, Any]]:
    out = tmp_path / "b.tar.gz"
    return out, backup.create(ROLE, hub_dir, db.sqlite_url(hub_dir / "hub.db"), out, **kw)


def _rewrite(archive: Path, out: Path, change: Any) -> None:
    """Copy ``archive`` to ``out`` passing each (TarInfo, bytes) through ``change`` (an attacker's edit)."""
    with tarfile.open(archive, "r:gz") as src, tarfile.open(out, "w:gz") as dst:
        for m in src.getmembers():
            f = src.extractfile(m)
            data = f.read() if f else b""
            m, data = change(m, data)
            m.size = len(data)
            dst.addfile(m, io.BytesIO(data))


def _forge(archive: Path, out: Path, edit: Callable[[dict[str, Any]], None],
           renames: dict[str, str] | None = None) -> None:
    """Copy ``archive`` to ``out`` with ``edit`` applied to its manifest and members renamed by ``renames``."""
    def change(m: tarfile.TarInfo, d: bytes) -> tuple[tarfile.TarInfo, bytes]:
        if m.name == backup.MANIFEST:
            doc = json.loads(d)
            edit(doc)
            return m, json.dumps(doc).encode()
        m.name = (renames or {}).get(m.name, m.name)
        return m, d

    _rewrite(archive, out, change)


class TestCreate:
    def test_secrets_left_out_unless_asked(self, hub_dir: Path, tmp_path: Path) -> None:
        """Without --include-secrets the private key and the token are listed as left out and absent from
        the archive (recognised by content and name, not by mode), which is written 0600 either way."""
        out, manifest = _make(hub_dir, tmp_path)
        assert manifest["secrets_left_out"] == ["hub.key.pem", "operator.token"]
        assert set(manifest["files"]) == {"hub.toml", "registry.json"}
        with tarfile.open(out) as tar:
            assert "files/hub.key.pem" not in tar.getnames() and backup.SQLITE_MEMBER in tar.getnames()
        assert out.stat().st_mode & 0o777 == 0o600
        _, with_keys = _make(hub_dir, tmp_path, include_secrets=True)
        assert with_keys["files"]["hub.key.pem"]["secret"] and with_keys["secrets_included"]

    def test_database_copied_whole_with_its_revision(self, hub_dir: Path, tmp_path: Path) -> None:
        """The copy holds every row and the Alembic revision; progress is reported in pages."""
        seen: list[tuple[int, int]] = []
        out, manifest = _make(hub_dir, tmp_path, progress=lambda d, t: seen.append((d, t)))
        assert manifest["database"]["revision"] == "0003" and seen and seen[-1][0] == seen[-1][1]
        restored = tmp_path / "restored"
        backup.restore(ROLE, out, restored)
        con = sqlite3.connect(restored / "hub.db")
        assert con.execute("SELECT count(*) FROM log").fetchone() == (2000,)
        con.close()
        assert (restored / "hub.toml").read_text() == "# the hub\nport = 8440\n"
        assert not (restored / "hub.key.pem").exists()

    def test_copy_is_one_snapshot_while_a_writer_commits(self, tmp_path: Path) -> None:
        """With another connection committing all along, the copy completes without restarting (progress
        only goes forward) and holds exactly the rows of one moment: positions 1..N, no gap, no torn page.
        (Without the read snapshot SQLite restarts the copy at every foreign commit and may never finish.)"""
        src = tmp_path / "live.db"
        con = sqlite3.connect(src)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE log (position INTEGER PRIMARY KEY, envelope BLOB)")
        con.executemany("INSERT INTO log VALUES (?, ?)", [(i, os.urandom(1500)) for i in range(1, 15001)])
        con.commit()
        con.close()
        stop, written = threading.Event(), [15000]

        def writer() -> None:
            c = sqlite3.connect(src, timeout=30)
            while not stop.is_set():
                c.execute("INSERT INTO log VALUES (?, ?)", (written[0] + 1, os.urandom(1500)))
                c.commit()
                written[0] += 1
            c.close()

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            wait_for("the writer to commit", lambda: written[0] > 15010)
            before = written[0]
            seen: list[int] = []
            backup._copy_sqlite(src, tmp_path / "copy.db", lambda done, _total: seen.append(done))
            during = written[0] - before
        finally:
            stop.set()
            thread.join()
        copy = sqlite3.connect(tmp_path / "copy.db")
        count, last = copy.execute("SELECT count(*), max(position) FROM log").fetchone()
        copy.close()
        assert count == last and before <= last <= written[0]
        assert seen == sorted(seen) and len(seen) > 1 and during > 0

    def test_not_a_hub_directory(self, tmp_path: Path) -> None:
        with pytest.raises(backup.BackupError, match="not a hub directory"):
            backup.create(ROLE, tmp_path, db.sqlite_url(tmp_path / "hub.db"), tmp_path / "x.tar.gz")


class TestRestore:
    def test_restore_into_non_empty_directory_refused(self, hub_dir: Path, tmp_path: Path) -> None:
        """A restore never mixes with (or overwrites) an existing installation."""
        out, _ = _make(hub_dir, tmp_path)
        with pytest.raises(backup.BackupError, match="not empty"):
            backup.restore(ROLE, out, hub_dir)

    def test_damaged_archive_refused(self, hub_dir: Path, tmp_path: Path) -> None:
        """A file whose bytes no longer match the manifest's SHA-256 stops the restore."""
        out, _ = _make(hub_dir, tmp_path)
        bad = tmp_path / "bad.tar.gz"
        _rewrite(out, bad, lambda m, d: (m, d.replace(b"8440", b"9999") if m.name == "files/hub.toml" else d))
        with pytest.raises(backup.BackupError, match="damaged"):
            backup.restore(ROLE, bad, tmp_path / "r")

    def test_path_traversal_in_archive_refused(self, hub_dir: Path, tmp_path: Path) -> None:
        """A crafted manifest naming ../ cannot write outside the restore directory."""
        out, _ = _make(hub_dir, tmp_path)
        bad = tmp_path / "evil.tar.gz"

        def escape(doc: dict[str, Any]) -> None:
            doc["files"]["../escaped.toml"] = doc["files"].pop("hub.toml")

        _forge(out, bad, escape, {"files/hub.toml": "files/../escaped.toml"})
        with pytest.raises(backup.BackupError, match="outside"):
            backup.restore(ROLE, bad, tmp_path / "r")
        assert not (tmp_path / "escaped.toml").exists()

    def test_backup_from_newer_schema_refused(self, hub_dir: Path, tmp_path: Path) -> None:
        """An archive made by a newer ipdn (a revision this code lacks) asks for an upgrade first."""
        out, _ = _make(hub_dir, tmp_path)
        newer = tmp_path / "newer.tar.gz"
        _forge(out, newer, lambda doc: doc["database"].update(revision="9999"))
        with pytest.raises(backup.BackupError, match="upgrade ipdn first"):
            backup.restore(ROLE, newer, tmp_path / "r")

    def test_node_backup_refused_as_hub(self, hub_dir: Path, tmp_path: Path) -> None:
        out, _ = _make(hub_dir, tmp_path)
        node = backup.Role("node", "node.toml", "node.db", "node_alembic_version", MIGRATIONS)
        with pytest.raises(backup.BackupError, match="hub backup, not a node one"):
            backup.restore(node, out, tmp_path / "r")

    def test_sqlite_to_postgres_refused(self, hub_dir: Path, tmp_path: Path) -> None:
        out, _ = _make(hub_dir, tmp_path)
        with pytest.raises(backup.BackupError, match="SQLite"):
            backup.restore(ROLE, out, tmp_path / "r", db_url="postgresql+asyncpg://u@h/d")
