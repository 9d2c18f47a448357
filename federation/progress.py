"""Progress and time left for long command-line work (audit, backup, restore, import, catch-up).

One reporter for every command: ``label: done/total unit (pct%), rate/s, about T left``, at most once a
second, on stderr. Shown when stderr is a terminal or the command was given ``--progress`` (so cron
mail and CI logs stay quiet unless asked), never with ``--quiet``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TextIO

ProgressCallback = Callable[[int, int], None]
"""``progress(done, total)``: call as often as convenient; the reporter throttles its output."""


class Progress:
    """A :data:`ProgressCallback` printing ``done/total, rate, time left`` to ``stream``, at most once per interval."""

    def __init__(self, stream: TextIO, *, label: str, unit: str, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream, self.label, self.unit, self.interval, self.clock = stream, label, unit, interval, clock
        self.started = clock()
        self.last = self.started

    def __call__(self, done: int, total: int) -> None:
        t = self.clock()
        if t - self.last < self.interval:
            return
        self.last = t
        rate = done / (t - self.started) if t > self.started else 0.0
        left = f", about {duration((total - done) / rate)} left" if rate > 0 else ""
        pct = 100.0 * done / total if total else 100.0
        print(f"{self.label}: {done}/{total} {self.unit} ({pct:.0f}%), {rate:,.0f}/s{left}", file=self.stream,
              flush=True)


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def add_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--progress`` flag every long command takes."""
    parser.add_argument("--progress", action="store_true",
                        help="report progress and time left on stderr even when it is not a terminal")


def reporter(args: argparse.Namespace, *, label: str, unit: str,
             stream: TextIO | None = None) -> ProgressCallback | None:
    """The reporter a command should use: None unless ``stream`` (stderr) is a TTY or ``--progress`` was
    given, and always None with ``--quiet``."""
    stream = stream or sys.stderr
    if getattr(args, "quiet", False):
        return None
    if not (getattr(args, "progress", False) or stream.isatty()):
        return None
    return Progress(stream, label=label, unit=unit)
