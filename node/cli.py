"""``ipdn node ...``: set up and run a member node. Registered into ``federation.cli`` by :func:`register`."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import secrets
from pathlib import Path
from typing import Any

import tomli_w
from aiohttp import web

from federation.cli import UsageError
from federation.keys import SigningKey
from federation.registry import parse_registry
from node.config import CONFIG_FILE, REGISTRY_FILE, TOKEN_FILE, load_config
from node.errors import ConfigError
from node.service import check_membership
from node.store import NodeStore


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
        check_membership(signed.registry, member, key.kid)
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
    print(f"node {member} initialised in {node_dir}\nkid {key.kid}\n"
          f"operator token in {node_dir / TOKEN_FILE} (mode 0600)\n"
          f"start it with: ipdn node serve --dir {node_dir}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from node.app import create_app  # aiohttp's server parts only when serving

    config = load_config(args.dir, host=args.host, port=args.port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # run_app turns SIGINT/SIGTERM into a clean shutdown: the cleanup context cancels and awaits the
    # sync loops and closes the store.
    web.run_app(create_app(config), host=config.host, port=config.port, print=None)
    return 0


def register(sub: Any) -> None:
    """Add the ``node`` command group to the ``ipdn`` sub-command parsers."""
    node = sub.add_parser("node", help="run a member's node (authoring, outbox, sync with the hub)",
                          epilog="example: ipdn node init --dir qa --member QA --key keys/QA.key.pem "
                                 "--registry hub/registry.json && ipdn node serve --dir qa")
    nsub = node.add_subparsers(dest="node_command", required=True, metavar="COMMAND")

    i = nsub.add_parser("init", help="create a node directory: key, registry, config, operator token, database",
                        epilog="example: ipdn node init --dir qa --member QA --key keys/QA.key.pem "
                               "--registry hub/registry.json --port 8441")
    i.add_argument("--dir", required=True, type=Path, help="the node directory to create")
    i.add_argument("--member", required=True, help="this node's member code (ISO 3166-1 alpha-2), e.g. QA")
    i.add_argument("--key", required=True, type=Path, help="the member's private key (PEM); copied, mode 0600")
    i.add_argument("--registry", required=True, type=Path,
                   help="the signed registry obtained from the hub operator: the node's trust anchor")
    i.add_argument("--port", type=int, default=8441, help="port the node listens on (default 8441)")
    i.add_argument("--db-url", help="SQLAlchemy URL (default: SQLite node.db in the node directory)")
    i.set_defaults(func=cmd_init)

    s = nsub.add_parser("serve", help="run the node's HTTP API and its sync with the hub",
                        epilog="example: ipdn node serve --dir qa --port 8441")
    s.add_argument("--dir", required=True, type=Path, help="a directory made by `ipdn node init`")
    s.add_argument("--host", help="address to listen on (default from node.toml, 127.0.0.1)")
    s.add_argument("--port", type=int, help="port to listen on (default from node.toml, 8441)")
    s.set_defaults(func=cmd_serve)
