"""``ipdn conformance run``: the published conformance suite (conformance/README.md) against an implementation."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from federation.cli.errors import UsageError
from federation.conformance import generate, runner


def cmd_run(args: argparse.Namespace) -> int:
    categories = tuple(args.category) if args.category else generate.CATEGORIES
    cases_dir: Path | None = args.cases
    if cases_dir is None and generate.DEFAULT_OUT.is_dir():
        cases_dir = generate.DEFAULT_OUT
    try:
        documents = runner.load_cases(cases_dir, categories)
    except ValueError as e:
        raise UsageError(str(e)) from e
    command = shlex.split(args.impl) if args.impl else list(runner.DEFAULT_IMPL)
    if not command:
        raise UsageError("--impl names a command")
    try:
        report = runner.run_command(documents, command)
    except FileNotFoundError as e:
        raise UsageError(f"cannot start {command[0]}: {e.strerror}") from e
    print("\n".join(report.lines(verbose=args.verbose)))
    return 0 if report.ok else 1


def register(sub: Any) -> None:
    c = sub.add_parser("conformance", help="run the published conformance suite against an implementation",
                       epilog="example: ipdn conformance run --impl 'java -jar my-verifier.jar' --category envelopes")
    csub = c.add_subparsers(dest="conformance_command", required=True, metavar="SUBCOMMAND")
    r = csub.add_parser("run", help="feed every case to an implementation (stdin/stdout JSON lines) and compare",
                        epilog="example: ipdn conformance run --impl 'python3 my_verifier.py' --category envelopes\n"
                               "Without --impl it runs this project's own adapter "
                               "(python -m federation.conformance.adapter). Exit 0 only when every case passes.")
    r.add_argument("--impl", metavar="CMD", help="the implementation's command line (split like a shell would)")
    r.add_argument("--category", action="append", choices=generate.CATEGORIES, metavar="C",
                   help=f"run only this category (repeatable): {', '.join(generate.CATEGORIES)}")
    r.add_argument("--cases", type=Path, metavar="DIR",
                   help="the case files (default: the repository's conformance/, else generated afresh)")
    r.add_argument("-v", "--verbose", action="store_true", help="list every case, not only failures")
    r.set_defaults(func=cmd_run)
