"""``ipdn hub backup|restore`` and ``ipdn node backup|restore``: one implementation for both roles."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from federation.hub.recovery import MARKER
from federation.progress import add_argument as add_progress_argument
from federation.progress import reporter
from federation.server.db import backup


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n //= 1024
    return str(n)


def register(sub: Any, role: backup.Role, db_url_of: Callable[[Path], str]) -> None:
    """Add ``backup`` and ``restore`` to a role's sub-command parsers; ``db_url_of(dir)`` reads its configuration."""
    name = role.name
    example_dir = "/var/lib/ipdn/hub" if name == "hub" else "/var/lib/ipdn/KR"

    def cmd_backup(args: argparse.Namespace) -> int:
        manifest = backup.create(role, args.dir, db_url_of(args.dir), args.out, include_secrets=args.include_secrets,
                                 progress=reporter(args, label="backup", unit="pages"))
        database = manifest["database"]
        at = f" at revision {database['revision']}" if database["revision"] else ""
        print(f"{name} {args.dir} backed up to {args.out} ({_size(args.out.stat().st_size)}): "
              f"{database['kind']} database{at}, {len(manifest['files'])} files")
        if manifest["secrets_left_out"]:
            print(f"secrets not in the archive (keep them in your key backup, or use --include-secrets): "
                  f"{', '.join(manifest['secrets_left_out'])}")
        else:
            print(f"{args.out} holds private keys: store it as a secret")
        return 0

    def cmd_restore(args: argparse.Namespace) -> int:
        manifest = backup.restore(role, args.source, args.dir, db_url=args.db_url,
                                  progress=reporter(args, label="restore", unit="bytes"))
        print(f"{name} restored into {args.dir} from the backup of {manifest['created_at']}")
        missing = [f for f in manifest["secrets_left_out"] if not (args.dir / f).exists()]
        if missing:
            print(f"copy these from your key backup into {args.dir} (mode 0600) before serving: {', '.join(missing)}",
                  file=sys.stderr)
        if name == "hub":
            # A backup is older than the log the members hold: start read-only and read the rest back from them.
            (args.dir / MARKER).write_text(f"restored from the backup of {manifest['created_at']}\n")
            print(f"it starts read-only and recovers the log beyond the backup from the members "
                  f"(docs/operating-hub.md; watch it with: ipdn hub recover --from-members --dir {args.dir} --dry-run)")
        print(f"start it with: ipdn {name} serve --dir {args.dir}")
        return 0

    fmt = argparse.RawDescriptionHelpFormatter
    b = sub.add_parser("backup", formatter_class=fmt,
                       help=f"archive the {name}'s directory and a consistent copy of its database, while it runs",
                       epilog=f"examples:\n  ipdn {name} backup --dir {example_dir} "
                              f"--out /backup/{name}-$(date +%F).tar.gz\n"
                              f"  ipdn {name} backup --dir {example_dir} --out all.tar.gz --include-secrets\n"
                              "SQLite is copied with its online backup API (the service keeps running); PostgreSQL\n"
                              "is dumped with pg_dump (PG* variables and the db_url's credentials apply).")
    b.add_argument("--dir", required=True, type=Path, help=f"the {name} directory")
    b.add_argument("--out", required=True, type=Path, metavar="FILE", help="the archive to write (.tar.gz, mode 0600)")
    b.add_argument("--include-secrets", action="store_true",
                   help="also archive private keys and the operator token (the archive is then a secret)")
    add_progress_argument(b)
    b.set_defaults(func=cmd_backup)

    r = sub.add_parser("restore", formatter_class=fmt, help=f"restore a {name} backup into a new directory",
                       epilog=f"examples:\n  ipdn {name} restore --dir {example_dir}.new --from /backup/{name}.tar.gz\n"
                              f"  ipdn {name} restore --dir {example_dir}.new --from {name}.tar.gz "
                              f"--db-url postgresql+asyncpg://ipdn@db/{name}_restored\n"
                              "Every file is checked against the archive's manifest; a PostgreSQL dump needs an\n"
                              "empty database (--db-url), which the restored configuration then names.")
    r.add_argument("--dir", required=True, type=Path, help="a new (absent or empty) directory")
    r.add_argument("--from", dest="source", required=True, type=Path, metavar="FILE", help="the archive")
    r.add_argument("--db-url",
                   help="where the database goes (default: SQLite in --dir; required for a PostgreSQL dump)")
    add_progress_argument(r)
    r.set_defaults(func=cmd_restore)
