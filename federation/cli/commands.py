"""How a group of ``ipdn`` commands is declared: each command has its one-line help, an example of itself, the
``--dir`` it works on and the function it runs; each group requires one of its commands."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Commands:
    """The commands of one group (``sub``, argparse's sub-parsers); ``directory`` helps their ``--dir``."""

    sub: Any
    directory: str

    @classmethod
    def group(cls, sub: Any, name: str, help_: str, example: str, *, directory: str,
              metavar: str = "COMMAND") -> Commands:
        """Add the group ``name`` to ``sub``: ``args.{name}_command`` names the command given."""
        parser = sub.add_parser(name, help=help_, epilog=f"example: {example}")
        return cls(parser.add_subparsers(dest=f"{name}_command", required=True, metavar=metavar), directory)

    def subgroup(self, name: str, help_: str, example: str, *, metavar: str = "COMMAND") -> Commands:
        """A group inside this one, whose commands work on the same directory."""
        return Commands.group(self.sub, name, help_, example, directory=self.directory, metavar=metavar)

    def add(self, name: str, func: Callable[[argparse.Namespace], int], help_: str, example: str, *,
            directory: str | None = None, **parser_options: Any) -> argparse.ArgumentParser:
        """Add the command ``name``, running ``func``, with ``--dir`` first (helped by ``directory`` when this
        command's differs from the group's); the caller adds the rest of its arguments."""
        parser: argparse.ArgumentParser = self.sub.add_parser(name, help=help_, epilog=f"example: {example}",
                                                              **parser_options)
        parser.add_argument("--dir", required=True, type=Path, help=directory or self.directory)
        parser.set_defaults(func=func)
        return parser
