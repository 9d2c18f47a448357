"""``ipdn node ...``: set up and run a member node. Registered into ``federation.cli.main`` by :func:`register`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import hashlib
import json
import os
import secrets
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w
from aiohttp import web

from federation.cli import backup as backupcli
from federation.cli import webhooks as webhook_cli
from federation.cli.commands import Commands
from federation.cli.errors import UsageError
from federation.protocol.keys import SigningKey
from federation.protocol.registry import load_registry, parse_registry
from federation.protocol.webhooks import public_key_text
from federation.server.aio import keep_for_life
from federation.server.db import backup
from federation.server.logs import configure as configure_logging
from federation.server.ui.i18n import Catalog
from federation.server.ui.totp import provisioning_uri
from node.config import CONFIG_FILE, REGISTRY_FILE, TOKEN_FILE, load_config
from node.errors import ConfigError
from node.own_keys import MAX_EFFECTIVE_IN, OwnKeys
from node.partners import access as partners
from node.records.service import NodeService
from node.staff import bulk
from node.staff.service import ALL_OR_NOTHING, DRY_RUN, VALID_ONLY, StaffService
from node.store.records import MIGRATIONS, VERSION_TABLE, NodeStore
from node.webhooks.events import load_or_create_key


def _write_private(path: Path, data: bytes) -> None:
    """Mode 0600 from the first byte: a secret is never world-readable, even briefly."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def cmd_init(args: argparse.Namespace) -> int:
    member = args.member.upper()
    node_dir: Path = args.dir
    if (node_dir / CONFIG_FILE).exists():
        raise UsageError(f"{node_dir / CONFIG_FILE} exists: {node_dir} is already a node")
    try:
        registry_bytes = args.registry.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {args.registry}: {e.strerror}") from e
    signed = parse_registry(registry_bytes)
    key = SigningKey.load(args.key)
    try:
        OwnKeys(member, key).require_listed(signed.registry)
    except ConfigError as e:
        raise UsageError(e.message) from e

    node_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_name = f"{member}.key.pem"
    for name in (key_name, TOKEN_FILE, REGISTRY_FILE):
        (node_dir / name).unlink(missing_ok=True)  # leftovers of an init that failed half-way
    key.save(node_dir / key_name)
    (node_dir / REGISTRY_FILE).write_bytes(registry_bytes)
    token = secrets.token_urlsafe(32)
    _write_private(node_dir / TOKEN_FILE, token.encode() + b"\n")
    doc: dict[str, Any] = {"member": member, "key_path": key_name, "registry_path": REGISTRY_FILE,
                           "operator_token_hash": hashlib.sha256(token.encode()).hexdigest(), "port": args.port}
    if args.db_url:
        doc["db_url"] = args.db_url
    config_text = "# IPDN node; every key can be overridden by IPDN_NODE_<KEY> in the environment.\n"
    (node_dir / CONFIG_FILE).write_text(config_text + tomli_w.dumps(doc), encoding="utf-8")

    config = load_config(node_dir, env={})

    async def migrate() -> None:
        store = await NodeStore.open(config.db_url, member)
        await store.close()

    asyncio.run(migrate())
    webhook_key = load_or_create_key(config.webhook_key_path)
    print(f"node {member} initialised in {node_dir}\nkid {key.kid}\n"
          f"webhook signing key {public_key_text(webhook_key)} ({config.webhook_key_path.name})\n"
          f"operator token in {node_dir / TOKEN_FILE} (mode 0600)\n"
          f"start it with: ipdn node serve --dir {node_dir}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    config = load_config(args.dir, host=args.host, port=args.port)
    configure_logging()  # one JSON object per line, with request ids (federation/server/logs.py)
    # run_app turns SIGINT/SIGTERM into a clean shutdown: the cleanup context cancels and awaits the
    # sync loops and closes the store. Requests are logged by federation/server/logs.py, not aiohttp's access log.
    served = config.ssl_context()
    config.hub_ssl_context()  # a bad hub_ca or client certificate fails here, on one line, not in the sync loop
    # keepalive_timeout also cuts a client trickling its headers (docs/adr/0012-faults-and-abuse.md).
    from node.app import create_app  # the web app only where it is served (GROUPS in federation/cli/main.py)

    app = create_app(config)
    app.on_startup.append(keep_for_life)  # after the services started (the cleanup context's startup runs first)
    web.run_app(app, host=config.host, port=config.port, print=None, access_log=None,
                ssl_context=served, keepalive_timeout=config.idle_timeout, lingering_time=2.0)
    return 0


def _operator_url(node_dir: Path, url: str | None) -> str:
    """The running node's base URL: ``url`` if given, else the host and port of its configuration."""
    if url:
        return url.rstrip("/")
    config = load_config(node_dir)
    host = "127.0.0.1" if config.host in ("", "0.0.0.0") else "::1" if config.host == "::" else config.host  # noqa: S104
    scheme = "https" if config.tls_cert else "http"
    return f"{scheme}://[{host}]:{config.port}" if ":" in host else f"{scheme}://{host}:{config.port}"


def cmd_rotate_key(args: argparse.Namespace) -> int:
    if not 0 <= args.effective_in <= MAX_EFFECTIVE_IN.total_seconds():
        raise UsageError(f"--effective-in is 0 to {MAX_EFFECTIVE_IN.total_seconds():.0f} seconds")
    try:
        token = (args.dir / TOKEN_FILE).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise UsageError(f"cannot read the operator token {args.dir / TOKEN_FILE}: {e.strerror}") from e
    url = _operator_url(args.dir, args.url) + "/api/v1/keys/rotate"
    req = urllib.request.Request(url, data=json.dumps({"effective_in": args.effective_in}).encode(),  # noqa: S310
                                 method="POST", headers={"Content-Type": "application/json",
                                                         "Authorization": f"Bearer {token}"})
    try:
        # The node's own TLS is checked like the hub's (hub_ca, client certificate when mutual TLS is on).
        context = load_config(args.dir).hub_ssl_context() if url.startswith("https:") else None
        with urllib.request.urlopen(req, timeout=120, context=context) as r:  # noqa: S310 (the operator's own node)
            doc = json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            problem = json.loads(e.read())
            print(f"ipdn node rotate-key: {problem.get('reason')}: {problem.get('detail')}", file=sys.stderr)
        except ValueError:
            print(f"ipdn node rotate-key: HTTP {e.code}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"ipdn node rotate-key: cannot reach the node at {url} (is it running?): {e}", file=sys.stderr)
        return 1
    print(f"{'resubmitted' if doc['resubmitted'] else 'submitted'} rotation to key {doc['kid']} ({doc['file']})\n"
          f"effective {doc['effective']}: envelopes are signed with the current key until then, with the new one "
          f"after\nregistry version {doc['registry_version']} (the hub published {doc['hub_registry_version']})")
    return 0


def cmd_partner_add(args: argparse.Namespace) -> int:
    try:
        scopes = partners.parse_scopes(args.scope)
        key, row = partners.new_key(args.name, scopes, args.rate, datetime.now(UTC))
    except ValueError as e:
        raise UsageError(str(e)) from e
    if args.rate is not None and args.rate < 1:
        raise UsageError("--rate is at least 1 request a minute")
    webhook_cli.with_node_store(args.dir, lambda store: store.partners.add(row))
    print(key)
    print(f"partner {row.name!r}: key {row.key_id}, scopes {' '.join(sorted(scopes))}; the key is shown only now "
          "and stored only as a digest: give it to the partner over a private channel", file=sys.stderr)
    return 0


def cmd_partner_list(args: argparse.Namespace) -> int:
    rows = webhook_cli.with_node_store(args.dir, lambda store: store.partners.keys())

    def when(t: datetime | None) -> str | None:
        return t.isoformat(timespec="seconds").replace("+00:00", "Z") if t else None

    docs: list[dict[str, Any]] = [
        {"name": r.name, "key_id": r.key_id, "scopes": sorted(r.scopes), "rate_per_minute": r.rate_per_minute,
         "created_at": when(r.created_at), "last_used_at": when(r.last_used_at),
         "revoked_at": when(r.revoked_at)} for r in rows]
    if args.json:
        print(json.dumps(docs, ensure_ascii=False, indent=2))
        return 0
    for d in docs:
        state = f"revoked {d['revoked_at']}" if d["revoked_at"] else f"last used {d['last_used_at'] or 'never'}"
        print(f"{d['name']}\t{d['key_id']}\t{','.join(d['scopes'])}\t{d['rate_per_minute'] or 'default'}/min\t{state}")
    return 0


def cmd_partner_revoke(args: argparse.Namespace) -> int:
    n = webhook_cli.with_node_store(
        args.dir, lambda store: store.partners.revoke(args.name, datetime.now(UTC), args.key_id))
    if not n:
        raise UsageError(f"no live key of partner {args.name!r}" + (f" with id {args.key_id}" if args.key_id else ""))
    print(f"revoked {n} key(s) of partner {args.name!r}: refused from the next request")
    return 0


# -- staff accounts, import and export (the authoring pages' data; works on the node's database directly) --


@contextlib.asynccontextmanager
async def _staff(node_dir: Path) -> AsyncIterator[StaffService]:
    """The node's staff service over its database, without serving (keys and registry as the node has them)."""
    from node.staff.web import CATALOG, DOMAIN  # the staff pages' catalogue: their module imports the web layer

    config = load_config(node_dir)
    store = await NodeStore.open(config.db_url, config.member)
    try:
        keys = OwnKeys.load(config.member, config.key_path, config.dir)
        service = NodeService(store=store, keys=keys, member=config.member,
                              registry=load_registry(config.registry_path), registry_path=config.registry_path)
        yield StaffService(service, Catalog(CATALOG, DOMAIN))
    finally:
        await store.close()


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"password for {args.username}: ")
    if getpass.getpass("again: ") != first:
        raise UsageError("the two passwords differ")
    return first


def cmd_user_add(args: argparse.Namespace) -> int:
    password = _read_password(args)

    async def run() -> None:
        async with _staff(args.dir) as staff:
            await staff.add_user(args.username, password, args.name or "")

    asyncio.run(run())
    print(f"user {args.username} added; they sign in at /author/ on this node")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    async def run() -> list[Any]:
        async with _staff(args.dir) as staff:
            return list(await staff.users())

    for u in asyncio.run(run()):
        when = u.created_at.strftime("%Y-%m-%d") if u.created_at else ""
        print(f"{u.username}\t{'disabled' if u.disabled else 'enabled'}\t{when}\t{u.name}")
    return 0


def cmd_user_disable(args: argparse.Namespace) -> int:
    async def run() -> None:
        async with _staff(args.dir) as staff:
            await staff.set_disabled(args.username, not args.enable)

    asyncio.run(run())
    print(f"user {args.username} {'enabled' if args.enable else 'disabled (their sessions end now)'}")
    return 0


def cmd_user_totp(args: argparse.Namespace) -> int:
    """Enrol (or remove) an account's second factor: prints the secret and the otpauth:// URI for its holder's
    authenticator app, once; the node keeps the secret in its database."""
    async def run() -> tuple[str | None, str]:
        async with _staff(args.dir) as staff:
            if args.remove:
                await staff.remove_totp(args.username)
                return None, staff.node.member
            return await staff.enrol_totp(args.username), staff.node.member

    secret, member = asyncio.run(run())
    if secret is None:
        print(f"user {args.username} signs in with the password alone now")
        return 0
    print(f"secret: {secret}")
    print(f"uri: {provisioning_uri(secret, args.username, f'IPDN node {member}')}")
    print(f"give these to {args.username} only (their authenticator app takes the URI, e.g. as a QR code); from "
          "now on they sign in with the password and the app's 6-digit code")
    return 0


def _progress(phase: str, done: int, total: int) -> None:
    """Progress on stderr: about every 5 % of the rows, and at the end of each phase."""
    if done == total or done % max(1, total // 20) == 0:
        print(f"{phase} {done}/{total} rows", file=sys.stderr, flush=True)


def cmd_import(args: argparse.Namespace) -> int:
    try:
        data = args.file.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {args.file}: {e.strerror}") from e
    mode = DRY_RUN if args.dry_run else VALID_ONLY if args.valid_only else ALL_OR_NOTHING
    fmt = args.format or bulk.detect_format(args.file.name, data)

    def worded(staff: Any, err: bulk.RowError) -> str:  # in English, with the technical detail
        text = staff.row_error(err, staff.names("en"))
        return f"{text} ({err.detail})" if err.detail else text

    async def run() -> Any:
        async with _staff(args.dir) as staff:
            try:
                rows = staff.read(data, fmt)
            except bulk.FileFormatError as e:
                raise UsageError(f"{args.file}: {worded(staff, bulk.RowError('', e.key, e.values, e.detail))}") from e
            report = await staff.run_import(rows, mode, args.by, _progress)
            return report, {id(err): worded(staff, err) for p in report.rows for err in p.errors}

    report, messages = asyncio.run(run())
    for p in report.rows:
        where = f" {p.record_id}" + (f" v{p.version}" if p.version else "") if p.record_id else ""
        print(f"row {p.row.number}\t{p.row.source_id}\t{p.action}{where}")
        for err in p.errors:
            print(f"row {p.row.number}\tcolumn {err.column or '-'}\t{messages[id(err)]}")
    counts = ", ".join(f"{report.count(a)} {a}" for a in ("create", "update", "created", "updated", "unchanged",
                                                           "invalid", "skipped", "failed") if report.count(a))
    print(f"{'dry run: ' if mode == DRY_RUN else ''}{counts or 'no rows'}")
    if mode == ALL_OR_NOTHING and report.invalid:
        print("nothing was published: the file has rows with errors (fix them, or --valid-only)", file=sys.stderr)
        return 1
    return 1 if report.invalid and mode == DRY_RUN else 0


def cmd_export(args: argparse.Namespace) -> int:
    async def run() -> str:
        async with _staff(args.dir) as staff:
            items = await staff.export()
            return bulk.write_csv(items, staff.column_order) if args.format == "csv" else bulk.write_jsonl(items)

    text = asyncio.run(run())
    args.out.write_text(text, encoding="utf-8", newline="")
    print(f"exported to {args.out}")
    return 0


def register(sub: Any) -> None:
    """Add the ``node`` command group to the ``ipdn`` sub-command parsers."""
    node = Commands.group(sub, "node", "run a member's node (authoring, outbox, sync with the hub)",
                          "ipdn node init --dir qa --member QA --key keys/QA.key.pem --registry hub/registry.json "
                          "&& ipdn node serve --dir qa", directory="the node's directory")

    i = node.add("init", cmd_init, "create a node directory: key, registry, config, operator token, database",
                 "ipdn node init --dir qa --member QA --key keys/QA.key.pem --registry hub/registry.json --port 8441",
                 directory="the node directory to create")
    i.add_argument("--member", required=True, help="this node's member code (ISO 3166-1 alpha-2), e.g. QA")
    i.add_argument("--key", required=True, type=Path, help="the member's private key (PEM); copied, mode 0600")
    i.add_argument("--registry", required=True, type=Path,
                   help="the signed registry obtained from the hub operator: the node's trust anchor")
    i.add_argument("--port", type=int, default=8441, help="port the node listens on (default 8441)")
    i.add_argument("--db-url", help="SQLAlchemy URL (default: SQLite node.db in the node directory)")

    s = node.add("serve", cmd_serve, "run the node's HTTP API and its sync with the hub",
                 "ipdn node serve --dir qa --port 8441\n"
                 "with a hub whose certificate a private CA issued, and mutual TLS:\n"
                 "  IPDN_NODE_HUB_CA=/etc/ipdn/hub-ca.pem IPDN_NODE_HUB_CLIENT_CERT=qa-client.pem "
                 "ipdn node serve --dir qa\n"
                 "Settings: node.toml, then IPDN_NODE_<KEY>, then these flags (docs/operating-node.md).",
                 directory="a directory made by `ipdn node init`",
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--host", help="address to listen on (default from node.toml, 127.0.0.1)")
    s.add_argument("--port", type=int, help="port to listen on (default from node.toml, 8441)")

    backupcli.register(node.sub, backup.Role("node", CONFIG_FILE, "node.db", VERSION_TABLE, MIGRATIONS),
                       lambda d: load_config(d).db_url)

    r = node.add("rotate-key", cmd_rotate_key, "replace the running node's key: a new key takes over after a delay",
                 "ipdn node rotate-key --dir qa --effective-in 3600", directory="the node's directory (token, port)")
    r.add_argument("--effective-in", type=float, default=60.0, metavar="SECONDS",
                   help="seconds from now at which the new key takes over (default 60)")
    r.add_argument("--url", help="the node's base URL (default: http://host:port from node.toml)")

    partner = node.subgroup("partner", "issue, list and revoke partner API keys (node/partners/access.py)",
                            "ipdn node partner add --dir qa 'Doha Culture Portal' --scope read,webhooks",
                            metavar="ACTION")
    pa = partner.add("add", cmd_partner_add, "issue a key: printed once on stdout, stored as a digest",
                     "ipdn node partner add --dir qa 'National Library' --scope read --rate 120")
    pa.add_argument("name", help="the partner's name, e.g. 'Doha Culture Portal'")
    pa.add_argument("--scope", default="read", help="read, webhooks or both, comma-separated (default read)")
    pa.add_argument("--rate", type=int, help="requests a minute for this key (default: the node's "
                                             "partner_rate_per_minute)")
    pl = partner.add("list", cmd_partner_list, "every key: partner, id, scopes, rate, last use, revocation",
                     "ipdn node partner list --dir qa --json")
    pl.add_argument("--json", action="store_true", help="JSON instead of tab-separated lines")
    pr = partner.add("revoke", cmd_partner_revoke, "revoke a partner's keys (all, or the one --key-id names)",
                     "ipdn node partner revoke --dir qa 'National Library'")
    pr.add_argument("name", help="the partner's name")
    pr.add_argument("--key-id", help="only this key (the id `partner list` shows)")

    webhook_cli.register(node)

    user = node.subgroup("user", "staff accounts of the authoring pages (/author/)",
                         "ipdn node user add --dir qa amal --name 'Amal Al-Kuwari'")
    ua = user.add("add", cmd_user_add, "add an account (asks for the password twice)",
                  "ipdn node user add --dir qa amal --name 'Amal Al-Kuwari'")
    ua.add_argument("username", help="2-64 lower-case letters, digits, dots, hyphens, underscores")
    ua.add_argument("--name", help="the person's name as shown on the pages")
    ua.add_argument("--password-stdin", action="store_true", help="read the password from one line of stdin")
    user.add("list", cmd_user_list, "list the accounts", "ipdn node user list --dir qa")
    ud = user.add("disable", cmd_user_disable, "disable an account (its sessions end at once)",
                  "ipdn node user disable --dir qa amal")
    ud.add_argument("username")
    ud.add_argument("--enable", action="store_true", help="enable it again instead")
    ut = user.add("totp", cmd_user_totp, "enrol a second factor (RFC 6238 codes): prints the authenticator URI",
                  "ipdn node user totp --dir qa amal")
    ut.add_argument("username")
    ut.add_argument("--remove", action="store_true", help="remove the second factor instead (a lost phone)")

    im = node.add("import", cmd_import, "publish own records from a CSV or JSON Lines file (idempotent by source_id)",
                  "ipdn node import --dir qa events.csv --dry-run (columns: docs/operating-node.md)")
    im.add_argument("file", type=Path, help="a .csv or .jsonl file")
    im.add_argument("--format", choices=["csv", "jsonl"], help="default: from the file name")
    mode = im.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="report what would happen, per row; publish nothing")
    mode.add_argument("--valid-only", action="store_true", help="publish the valid rows even if others have errors")
    im.add_argument("--by", default="operator", help="the name the history shows for these versions")

    ex = node.add("export", cmd_export, "write the member's own records as CSV or JSON Lines (re-importable)",
                  "ipdn node export --dir qa --format csv --out records.csv")
    ex.add_argument("--format", required=True, choices=["csv", "jsonl"])
    ex.add_argument("--out", required=True, type=Path, help="the file to write")
