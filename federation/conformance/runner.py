"""Feed the conformance cases to an implementation and compare its answers with ``expected``.

The runner protocol (conformance/README.md): the implementation is a command that reads one JSON line per case on
stdin, ``{"category", "id", "input"}``, and answers each with one JSON line on stdout, ``{"id", "result":
"accept" | "refuse", "reason": <slug or null>}``, flushed, before the next case is sent. An answer passes when
``expected`` is ``"accept"`` and ``result`` is ``"accept"``, or ``expected`` is ``{"reason": R}`` and ``result``
is ``"refuse"`` with ``reason`` R.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation.conformance import adapter, generate

DEFAULT_IMPL = (sys.executable, "-m", "federation.conformance.adapter")
ANSWER_TIMEOUT = 30.0  # seconds an implementation may take over one case

Answerer = Callable[[dict[str, Any]], dict[str, Any]]  # request line (as a dict) -> answer line (as a dict)


@dataclass(frozen=True)
class Outcome:
    category: str
    id: str
    expected: Any
    answer: dict[str, Any]

    @property
    def passed(self) -> bool:
        result, reason = self.answer.get("result"), self.answer.get("reason")
        if self.answer.get("id") != self.id:
            return False
        if self.expected == "accept":
            return bool(result == "accept")
        return bool(result == "refuse" and reason == self.expected["reason"])


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.outcomes) and all(o.passed for o in self.outcomes)

    def counts(self) -> dict[str, tuple[int, int]]:
        """Category -> (passed, total), in the order run."""
        out: dict[str, tuple[int, int]] = {}
        for o in self.outcomes:
            passed, total = out.get(o.category, (0, 0))
            out[o.category] = (passed + o.passed, total + 1)
        return out

    def lines(self, verbose: bool = False) -> list[str]:
        text = []
        for o in self.outcomes:
            if not o.passed or verbose:
                want = "accept" if o.expected == "accept" else f"refuse {o.expected['reason']}"
                got = f"{o.answer.get('result')} {o.answer.get('reason') or ''}".strip()
                detail = f" ({o.answer['detail']})" if o.answer.get("detail") else ""
                text.append(f"{'ok  ' if o.passed else 'FAIL'} {o.category}/{o.id}: expected {want}, got {got}{detail}")
        width = max((len(c) for c in self.counts()), default=0)
        for category, (passed, total) in self.counts().items():
            text.append(f"{category:<{width}}  {passed:>3}/{total:<3} passed  {total - passed} failed")
        passed = sum(o.passed for o in self.outcomes)
        text.append(f"{'all':<{width}}  {passed:>3}/{len(self.outcomes):<3} passed")
        return text


def load_cases(directory: Path | None = None, categories: Sequence[str] = generate.CATEGORIES
               ) -> dict[str, dict[str, Any]]:
    """Each category's document from ``directory`` (the published files), or generated afresh when None."""
    unknown = [c for c in categories if c not in generate.CATEGORIES]
    if unknown:
        raise ValueError(f"unknown categories {unknown}; known: {', '.join(generate.CATEGORIES)}")
    if directory is None:
        return generate.build(tuple(categories))
    return {c: json.loads((directory / f"{c}.json").read_text(encoding="utf-8")) for c in categories}


def requests(documents: dict[str, dict[str, Any]]) -> Iterable[tuple[dict[str, Any], Any]]:
    """(request line, expected) for every case, category by category."""
    for category, doc in documents.items():
        for c in doc["cases"]:
            yield {"category": category, "id": c["id"], "input": c["input"]}, c["expected"]


def run(documents: dict[str, dict[str, Any]], answer: Answerer) -> Report:
    report = Report()
    for request, expected in requests(documents):
        report.outcomes.append(Outcome(request["category"], request["id"], expected, answer(request)))
    return report


def in_process(request: dict[str, Any]) -> dict[str, Any]:
    """This project's adapter, called directly (no process)."""
    return adapter.answer_line(json.dumps(request))


class Process:
    """An implementation started as a command, answering over stdin/stdout in lockstep."""

    def __init__(self, command: Sequence[str], timeout: float = ANSWER_TIMEOUT) -> None:
        self.timeout = timeout
        self.proc = subprocess.Popen(list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     encoding="utf-8", bufsize=1)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(request, ensure_ascii=False) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"id": request["id"], "result": "error", "detail": "the implementation closed its input"}
        try:
            line = self.lines.get(timeout=self.timeout)
        except queue.Empty:
            return {"id": request["id"], "result": "error", "detail": f"no answer within {self.timeout:g} s"}
        if line is None:
            return {"id": request["id"], "result": "error", "detail": "the implementation exited"}
        try:
            answer = json.loads(line)
        except ValueError:
            return {"id": request["id"], "result": "error", "detail": f"not a JSON line: {line[:80]!r}"}
        return answer if isinstance(answer, dict) else {"id": request["id"], "result": "error",
                                                        "detail": "the answer is not a JSON object"}

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_command(documents: dict[str, dict[str, Any]], command: Sequence[str] = DEFAULT_IMPL) -> Report:
    """Run every case through the implementation ``command`` (by default this project's adapter)."""
    impl = Process(command)
    try:
        return run(documents, impl)
    finally:
        impl.close()
