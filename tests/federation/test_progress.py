"""The progress reporter shared by long commands: throttled lines with rate and time left, shown on a
terminal or with --progress, never with --quiet."""

from __future__ import annotations

import argparse
import io

from federation.progress import Progress, duration, reporter


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class TestProgress:
    def test_prints_done_total_rate_and_time_left_at_most_once_per_second(self) -> None:
        """Called for every entry, it writes one line per second of work: done/total, rate, time left."""
        t = [0.0]
        out = io.StringIO()
        progress = Progress(out, label="audit", unit="entries", clock=lambda: t[0])
        for done in range(1, 501):
            t[0] = done / 100  # 100 entries per second: 5 s of work
            progress(done, 10_000)
        lines = out.getvalue().splitlines()
        assert len(lines) == 5
        assert lines[0] == "audit: 100/10000 entries (1%), 100/s, about 1 min 39 s left"
        assert lines[-1] == "audit: 500/10000 entries (5%), 100/s, about 1 min 35 s left"

    def test_durations_read_naturally(self) -> None:
        assert [duration(s) for s in (4.4, 185, 7620)] == ["4 s", "3 min 05 s", "2 h 07 min"]


class TestReporter:
    def test_shown_on_a_terminal_or_when_asked_never_when_quiet(self) -> None:
        """A pipe gets nothing unless --progress; a terminal gets progress; --quiet silences both."""
        def ns(**kw: bool) -> argparse.Namespace:
            return argparse.Namespace(**{"progress": False, "quiet": False, **kw})

        assert reporter(ns(), label="x", unit="y", stream=io.StringIO()) is None
        assert reporter(ns(progress=True), label="x", unit="y", stream=io.StringIO()) is not None
        assert reporter(ns(), label="x", unit="y", stream=_Tty()) is not None
        assert reporter(ns(progress=True, quiet=True), label="x", unit="y", stream=_Tty()) is None
