"""SQLite's write-ahead log copied back into the database by a thread of its own, off the writers' path (ADR 36).

In WAL mode a commit appends pages to the log, and by default the commit that takes the log past 1,000 pages
also copies every page logged back into the database file (SQLite's automatic checkpoint), while its writer
waits. In a large database the pages an update writes lie at random (each index moves the record's entry), so
that copy is most of what an update costs more at 1,000,000 records than at 10,000.

Here the writers' own checkpoint is only a backstop (``BACKSTOP`` pages, should this thread fall behind or not
be running), and a thread with a connection of its own runs a PASSIVE checkpoint (it takes no lock a writer or
a reader waits for) a moment after each commit: ``spacing`` seconds after the commit's wake-up, so that the
commits of that moment are copied in one pass. While the log stays short (under ``QUIET`` pages), the next
checkpoint waits ``rest`` seconds: a node applying a record now and then syncs the disk once a second, not at
each commit. On a machine of two cores the thread copies while the writer goes on; sqlite3 releases the GIL
while SQLite works.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

BACKSTOP = 10_000  # pages (40 MiB of log at 4 KiB a page): the writers' own automatic checkpoint
SPACING = 0.1  # seconds from a commit's wake-up to the checkpoint; at most ten checkpoints a second
QUIET, REST = 1_000, 1.0  # a log of fewer pages than SQLite's own threshold waits a second for the next checkpoint

log = logging.getLogger("ipdn.db")


class Checkpointer:
    """Checkpoints the database at ``path`` after commits; ``wake`` after each commit, ``stop`` at close."""

    def __init__(self, path: Path, *, spacing: float = SPACING, rest: float = REST) -> None:
        self.path = path
        self.spacing, self.rest = spacing, rest
        self.done = 0  # checkpoints run (for tests and diagnostics)
        self._due = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"checkpoint {path.name}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A commit was made (or is being made): checkpoint soon."""
        self._due.set()

    def stop(self) -> None:
        """End the thread (a checkpoint under way finishes first). The last connection to close checkpoints
        whatever is left, as SQLite does."""
        self._stopping.set()
        self._due.set()
        self._thread.join()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        self._due.wait()  # the first commit: the file exists, in WAL mode
        if self._stopping.is_set():
            return
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stopping.wait(self.spacing):
                self._due.clear()  # a commit woken from now on asks for another pass
                try:
                    _busy, logged, _copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as e:  # the next commit asks again; the backstop meanwhile
                    log.warning("checkpoint of %s failed: %s", self.path, e)
                    logged = 0
                else:
                    self.done += 1
                # A short log costs little to keep: checkpoints (each syncs the disk twice) at most once a rest.
                if logged < QUIET and self._stopping.wait(self.rest):
                    return
                self._due.wait()
        finally:
            db.close()
