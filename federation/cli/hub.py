"""``ipdn hub init`` and ``ipdn hub serve``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import hashlib
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomli_w
from aiohttp import web

from federation.cli import backup as backupcli
from federation.cli.errors import UsageError
from federation.hub.config import HubConfig
from federation.hub.handover import import_hub
from federation.hub.recovery import report_text
from federation.hub.store.log import MIGRATIONS, VERSION_TABLE, HubStore
from federation.progress import add_argument as add_progress_argument
from federation.progress import reporter
from federation.protocol.keys import PublicKey, SigningKey, load_public_jwk
from federation.protocol.registry import genesis
from federation.server.aio import keep_for_life
from federation.server.db import backup
from federation.server.logs import configure as configure_logging
from federation.server.ui.passwords import hash_password
from federation.server.ui.totp import new_secret, provisioning_uri

# Display names of the network's institutions, used when a founder's key file carries only its code.
KNOWN_INSTITUTIONS: dict[str, dict[str, str]] = {
    "QA": {"en": "Katara – Cultural Village Foundation", "ar": "المؤسسة العامة للحي الثقافي – كتارا"},
    "TR": {"en": "Yunus Emre Institute", "tr": "Yunus Emre Enstitüsü"},
    "KR": {"en": "Korea Foundation", "ko": "한국국제교류재단"},
    "HU": {"en": "Balassi Institute", "hu": "Balassi Intézet"},
    "TW": {"en": "Taiwan public diplomacy institution"},
    "NG": {"en": "Nigerian public diplomacy institution"},
    "SG": {"en": "Singapore public diplomacy institution"},
    "MX": {"en": "Mexican public diplomacy institution", "es": "Institución mexicana de diplomacia pública"},
    "MZ": {"en": "Mozambican public diplomacy institution", "pt": "Instituição moçambicana de diplomacia pública"},
    "PH": {"en": "Philippine public diplomacy institution"},
}


def cmd_init(args: argparse.Namespace) -> int:

    hub_dir: Path = args.dir
    if (hub_dir / "registry.json").exists():
        raise UsageError(f"{hub_dir} already holds a hub (registry.json exists)")
    founders: list[tuple[PublicKey, dict[str, str]]] = []
    for path in args.founder:
        pub = load_public_jwk(path)
        code = pub.member or path.name.split(".")[0].upper()
        if len(code) != 2 or not code.isalpha():
            raise UsageError(f"{path}: cannot tell the member code (ipdn_member in the JWK, or CODE.pub.jwk.json)")
        founders.append((PublicKey(pub.key, pub.kid, member=code.upper()),
                         KNOWN_INSTITUTIONS.get(code.upper(), {"en": code.upper()})))
    if len({p.member for p, _ in founders}) != len(founders):
        raise UsageError("a founder is listed twice")
    hub_dir.mkdir(parents=True, exist_ok=True)
    hub_key = SigningKey.generate()
    hub_key.save(hub_dir / "hub.key.pem")
    signed = genesis(hub_key=hub_key, hub_url=args.url.rstrip("/"), founders=founders, chair=args.chair,
                     now=datetime.now(UTC))
    (hub_dir / "registry.json").write_bytes(signed.to_bytes() + b"\n")
    token = secrets.token_urlsafe(32)
    fd = os.open(hub_dir / "operator.token", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    settings: dict[str, Any] = {"port": args.port or _port_of(args.url),
                                "operator_token_sha256": hashlib.sha256(token.encode()).hexdigest()}
    if args.db_url:
        settings["db_url"] = args.db_url
    (hub_dir / "hub.toml").write_text(tomli_w.dumps(settings))
    print(f"hub initialised in {hub_dir}: registry v1 with {len(founders)} founders "
          f"({', '.join(str(p.member) for p, _ in founders)}), hub key {hub_key.kid}")
    print(f"give {hub_dir / 'registry.json'} to each founder's node operator (ipdn node init --registry ...)")
    print(f"the hub operator's token is in {hub_dir / 'operator.token'}")
    return 0


def _port_of(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 8440)


def cmd_serve(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in (("workers", args.workers),) if v is not None}
    cfg = HubConfig.load(args.dir, host=args.host, port=args.port, **overrides)
    if not cfg.registry_path.exists():
        raise UsageError(f"{args.dir} is not a hub directory (run ipdn hub init first)")
    configure_logging()  # one JSON object per line (federation/server/logs.py)
    served = cfg.ssl_context()  # a bad TLS setting fails here, once, on one line (not in every worker)
    if cfg.workers > 1:
        if not cfg.db_url.startswith("postgresql"):
            raise UsageError("several workers share one log only on PostgreSQL (set db_url); SQLite has one writer")
        return _supervise(args.dir, cfg)
    # keepalive_timeout also bounds how long a new connection may take to send its request headers
    # (aiohttp arms it at connect): a client trickling headers byte by byte is cut after idle_timeout.
    # lingering_time: after an early answer (408, 413), read what the client still sends for at most 2 s
    # (so that it sees the answer), not aiohttp's 10.
    from federation.hub.app import create_app  # the web app only where it is served (federation/cli/main.py)

    app = create_app(cfg)
    app.on_startup.append(keep_for_life)  # after the services started (the cleanup context's startup runs first)
    web.run_app(app, host=cfg.host, port=cfg.port, print=None, access_log=None,
                shutdown_timeout=5, reuse_port=args.reuse_port, ssl_context=served,
                keepalive_timeout=cfg.idle_timeout, lingering_time=2.0)
    return 0


def _supervise(hub_dir: Path, cfg: HubConfig) -> int:
    """``workers`` hub processes on one address (SO_REUSEPORT: the kernel spreads connections), sharing the
    PostgreSQL log. Migrations and first-start work run once here, before any worker starts; a worker that
    dies is started again; SIGTERM/SIGINT stop them all."""
    from federation.hub.app import prepare

    asyncio.run(prepare(cfg))
    command = [sys.executable, "-m", "federation", "hub", "serve", "--dir", str(hub_dir), "--host", cfg.host,
               "--port", str(cfg.port), "--workers", "1", "--reuse-port"]
    procs = [subprocess.Popen(command) for _ in range(cfg.workers)]
    stopping = False

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logging.getLogger("ipdn.hub").info("hub: %d workers on %s:%d", cfg.workers, cfg.host, cfg.port)
    while not stopping:
        for i, p in enumerate(procs):
            if p.poll() is not None and not stopping:
                logging.getLogger("ipdn.hub").warning("worker %d exited (%s); starting it again", p.pid, p.returncode)
                time.sleep(1)  # no tight loop when a worker cannot start at all
                procs[i] = subprocess.Popen(command)
        time.sleep(0.2)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
    return 0


def _hub_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=5):  # noqa: S310 (the operator's own hub)
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def cmd_recover(args: argparse.Namespace) -> int:
    """Recover the log from the members (docs/operating-hub.md, "Recover from the members"): through the running
    hub (its operator endpoint), or, with the hub stopped, here on its database."""
    cfg = HubConfig.load(args.dir)
    if not cfg.key_path.exists() or not cfg.registry_path.exists():
        raise UsageError(f"{args.dir} needs hub.key.pem (from your key backup) and registry.json (any node's copy)")
    only = [m.partition("=")[0] for m in args.member]
    endpoints = {m.partition("=")[0]: m.partition("=")[2].rstrip("/") for m in args.member if "=" in m}
    url = (args.hub or f"{'https' if cfg.tls_cert else 'http'}://{cfg.host}:{cfg.port}").rstrip("/")
    if _hub_answers(url):
        token_file = args.dir / "operator.token"
        if not token_file.exists():
            raise UsageError(f"{token_file} is missing: the running hub's recovery endpoint needs the operator token")
        body = json.dumps({"members": only, "endpoints": endpoints, "dry_run": args.dry_run, "force": args.force,
                           "begin": True}).encode()
        req = urllib.request.Request(url + "/api/v1/recovery", data=body, method="POST", headers={  # noqa: S310
            "Content-Type": "application/json", "Authorization": f"Bearer {token_file.read_text().strip()}"})
        print(f"asking the members through the running hub at {url}", file=sys.stderr)
        try:
            with urllib.request.urlopen(req, timeout=600) as resp:  # noqa: S310 (the operator's own hub)
                report = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raise UsageError(f"the hub refused: {e.code} {e.read()[:300].decode('utf-8', 'replace')}") from e
    else:
        print(f"the hub does not answer at {url}: recovering on its database directly", file=sys.stderr)
        from federation.hub.app import recover_offline

        report = asyncio.run(recover_offline(cfg, only=only, endpoints=endpoints, dry_run=args.dry_run,
                                             force=args.force)).to_dict()
    print(report_text(report))
    if report["outcome"] == "refused":
        return 1
    return 3 if report["recovering"] and not args.dry_run else 0


def cmd_keygen(args: argparse.Namespace) -> int:
    """An incoming chair's hub key, made before the handover vote (its public JWK goes in the proposal)."""

    args.dir.mkdir(parents=True, exist_ok=True)
    if (args.dir / "hub.key.pem").exists():
        raise UsageError(f"{args.dir / 'hub.key.pem'} exists")
    key = SigningKey.generate()
    key.save(args.dir / "hub.key.pem")
    (args.dir / "hub.pub.jwk.json").write_text(json.dumps(key.public.to_jwk(), indent=2) + "\n")
    print(f"{args.dir / 'hub.pub.jwk.json'}\nkid {key.kid}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Take over the log from the outgoing hub once the handover is decided."""
    cfg = HubConfig.load(args.dir)
    if not (args.dir / "registry.json").exists():

        raise UsageError(f"put the network's genesis registry (your trust anchor) in {args.dir / 'registry.json'}")
    token = secrets.token_urlsafe(32)
    size = asyncio.run(import_hub(args.dir, cfg.db_url, args.source,
                                  progress=reporter(args, label="import", unit="entries")))
    if not (args.dir / "hub.toml").exists():
        fd = os.open(args.dir / "operator.token", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        settings: dict[str, Any] = {"port": args.port or 8440,
                                    "operator_token_sha256": hashlib.sha256(token.encode()).hexdigest()}
        if args.db_url:
            settings["db_url"] = args.db_url
        (args.dir / "hub.toml").write_text(tomli_w.dumps(settings))
    print(f"imported and verified {size} log entries; start it with: ipdn hub serve --dir {args.dir}")
    return 0


MIN_PASSWORD = 12


def _read_password(args: argparse.Namespace) -> str:
    """From ``--password-file``, else a line of stdin when it is not a terminal, else asked twice."""

    if args.password_file:
        password = args.password_file.read_text(encoding="utf-8").rstrip("\r\n")
    elif not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise UsageError("the two passwords differ")
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"the password must be at least {MIN_PASSWORD} characters")
    return str(password)


async def _operators(cfg: HubConfig, args: argparse.Namespace, password_hash: str | None) -> int:
    store = await HubStore.open(cfg.db_url)
    now = datetime.now(UTC)
    try:
        if args.operator_command == "list":
            for op in await store.operators():
                last = op["last_sign_in_at"].isoformat() if op["last_sign_in_at"] else "never"
                print(f"{op['name']}\t{'disabled' if op['disabled'] else 'enabled'}\tlast sign-in {last}")
            return 0
        if args.operator_command == "add":
            assert password_hash is not None
            if not await store.add_operator(args.name, password_hash, now):
                raise UsageError(f"operator {args.name!r} exists")
        elif args.operator_command == "totp":
            return await _operator_totp(store, args, now)
        elif not await store.set_operator(args.name, disabled=args.operator_command == "disable"):
            raise UsageError(f"no operator {args.name!r}")
        # The operators' trail on the dashboard's registry page (``cli:`` marks it as done at the console).
        await store.add_operator_event(now, args.name, f"cli-{args.operator_command}")
        print(f"operator {args.name} {args.operator_command.removesuffix('e')}ed")
        return 0
    finally:
        await store.close()


async def _operator_totp(store: HubStore, args: argparse.Namespace, now: datetime) -> int:
    """Enrol (or remove) an operator's second factor: the secret and the otpauth:// URI are printed once, for the
    operator's authenticator app; the hub keeps the secret in its database."""
    secret = None if args.remove else new_secret()
    if not await store.set_operator_totp(args.name, secret):
        raise UsageError(f"no operator {args.name!r}")
    await store.add_operator_event(now, args.name, "cli-totp-remove" if secret is None else "cli-totp-enrol")
    if secret is None:
        print(f"operator {args.name} signs in with the password alone now")
        return 0
    print(f"secret: {secret}")
    print(f"uri: {provisioning_uri(secret, args.name, 'IPDN hub')}")
    print(f"give these to {args.name} only (their authenticator app takes the URI, e.g. as a QR code); from now on "
          "they sign in to the dashboard with the password and the app's 6-digit code")
    return 0


def cmd_operator(args: argparse.Namespace) -> int:
    """Dashboard accounts: ``add`` (password hashed with scrypt), ``list``, ``disable``, ``enable``."""
    cfg = HubConfig.load(args.dir)
    if not cfg.registry_path.exists():
        raise UsageError(f"{args.dir} is not a hub directory (run ipdn hub init first)")
    if args.operator_command != "list" and not re.fullmatch(r"[A-Za-z0-9._@-]{1,64}", args.name):
        raise UsageError("an operator name is 1 to 64 letters, digits, '.', '_', '@' or '-'")
    password_hash = hash_password(_read_password(args)) if args.operator_command == "add" else None
    return asyncio.run(_operators(cfg, args, password_hash))


def register(sub: Any) -> None:
    hub = sub.add_parser("hub", help="the chair's hub: init, serve, backup, restore, keygen, import",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog="examples:\n  ipdn hub init --dir hub --url https://hub.ipdn.network "
                                "--founder keys/QA.pub.jwk.json\n  ipdn hub serve --dir hub")
    hs = hub.add_subparsers(dest="hub_command", required=True, metavar="COMMAND")

    i = hs.add_parser("init", help="create the hub key and the genesis registry",
                      formatter_class=argparse.RawDescriptionHelpFormatter,
                      epilog="example:\n  ipdn hub init --dir hub --url https://hub.ipdn.network "
                             "--founder keys/QA.pub.jwk.json --founder keys/KR.pub.jwk.json")
    i.add_argument("--dir", required=True, type=Path)
    i.add_argument("--url", required=True, help="the hub's public base URL, as nodes will reach it")
    i.add_argument("--founder", required=True, action="append", type=Path, metavar="JWK.json",
                   help="a founding member's public key (repeat)")
    i.add_argument("--chair", help="member code of the chair (default: the first founder)")
    i.add_argument("--port", type=int, help="port to listen on (default: the URL's)")
    i.add_argument("--db-url", help="SQLAlchemy URL (default: SQLite in the hub directory)")
    i.set_defaults(func=cmd_init)

    k = hs.add_parser("keygen", help="an incoming chair's hub key (before a handover)",
                      epilog="example: ipdn hub keygen --dir newhub")
    k.add_argument("--dir", required=True, type=Path)
    k.set_defaults(func=cmd_keygen)

    m = hs.add_parser("import", help="take over the log and registry from the outgoing hub, verifying all",
                      epilog="example: ipdn hub import --dir newhub --from https://hub.qa.example")
    m.add_argument("--dir", required=True, type=Path, help="holds hub.key.pem and the genesis registry.json")
    m.add_argument("--from", dest="source", required=True, help="the outgoing hub's URL")
    m.add_argument("--port", type=int)
    m.add_argument("--db-url")
    add_progress_argument(m)
    m.set_defaults(func=cmd_import)

    o = hs.add_parser("operator", help="dashboard accounts: add, list, disable, enable",
                      epilog="example: ipdn hub operator add amal --dir hub < password.txt")
    osub = o.add_subparsers(dest="operator_command", required=True, metavar="ACTION")
    oa = osub.add_parser("add", help="a new operator (password from --password-file, stdin, or asked)",
                         epilog="example: ipdn hub operator add amal --dir hub --password-file amal.pw")
    oa.add_argument("name")
    oa.add_argument("--password-file", type=Path, help="a file holding the password (else stdin or a prompt)")
    for action, text in (("disable", "end an operator's sessions and sign-ins"), ("enable", "allow again")):
        osub.add_parser(action, help=text,
                        epilog=f"example: ipdn hub operator {action} amal --dir hub").add_argument("name")
    osub.add_parser("list", help="every operator, enabled or not, with the last sign-in",
                    epilog="example: ipdn hub operator list --dir hub")
    ot = osub.add_parser("totp", help="enrol a second factor (RFC 6238 codes): prints the authenticator URI",
                         epilog="example: ipdn hub operator totp amal --dir hub")
    ot.add_argument("name")
    ot.add_argument("--remove", action="store_true", help="remove the second factor instead (a lost phone)")
    for p in osub.choices.values():
        p.add_argument("--dir", required=True, type=Path, help="the hub directory")
    o.set_defaults(func=cmd_operator)

    backupcli.register(hs, backup.Role("hub", "hub.toml", "hub.db", VERSION_TABLE, MIGRATIONS),
                       lambda d: HubConfig.load(d).db_url)

    r = hs.add_parser("recover", help="rebuild the log from the members' copies (after a restore or a lost disk)",
                      formatter_class=argparse.RawDescriptionHelpFormatter,
                      epilog="examples:\n  ipdn hub recover --from-members --dir /var/lib/ipdn/hub --dry-run\n"
                             "  ipdn hub recover --from-members --dir /var/lib/ipdn/hub\n"
                             "  ipdn hub recover --from-members --dir hub --member KR=https://node.kf.or.kr --force\n"
                             "Asks each member for the checkpoint it co-signed and its log beyond the hub's;\n"
                             "appends a suffix only when it makes that checkpoint's root. Exit 0: recovered,\n"
                             "pushes taken again; 3: still read-only (a member did not answer: run again, or\n"
                             "--force); 1: refused.")
    r.add_argument("--from-members", action="store_true", required=True,
                   help="the source: the members' nodes (the only one)")
    r.add_argument("--dir", required=True, type=Path, help="the hub directory")
    r.add_argument("--member", action="append", default=[], metavar="CODE[=URL]",
                   help="ask only these members (repeat); =URL: where its node is (default: member_endpoints in "
                        "hub.toml, else the registry's endpoint)")
    r.add_argument("--dry-run", action="store_true", help="ask and verify, append nothing")
    r.add_argument("--force", action="store_true",
                   help="resume taking pushes with what the members that answered hold, even if some did not")
    r.add_argument("--hub", help="the running hub's URL (default: from hub.toml's host and port)")
    r.set_defaults(func=cmd_recover)

    s = hs.add_parser("serve", help="run the hub", formatter_class=argparse.RawDescriptionHelpFormatter,
                      epilog="examples:\n  ipdn hub serve --dir hub --port 8440\n"
                             "  IPDN_HUB_DB_URL=postgresql+asyncpg://ipdn@db/ipdn "
                             "ipdn hub serve --dir hub --workers 4\n"
                             "  IPDN_HUB_TLS_CERT=/etc/ipdn/tls/fullchain.pem IPDN_HUB_TLS_KEY=/etc/ipdn/tls/key.pem "
                             "ipdn hub serve --dir hub\n"
                             "Settings: hub.toml, then IPDN_HUB_<KEY>, then these flags (docs/operating-hub.md).")
    s.add_argument("--dir", required=True, type=Path)
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", type=int, help="hub processes on this address sharing the log "
                                               "(PostgreSQL only; default from hub.toml, 1)")
    s.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # set for the supervisor's workers
    s.set_defaults(func=cmd_serve)
