"""The ``ipdn`` command line run in-process, for the CLI tests."""

from __future__ import annotations

import pytest

from federation.cli.main import main


def ipdn(*args: str) -> int:
    """Run the ``ipdn`` command line in-process; its exit code."""
    return main(list(args))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``ipdn`` in-process: its exit code (argparse's usage errors too), stdout and stderr."""
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse usage errors
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
