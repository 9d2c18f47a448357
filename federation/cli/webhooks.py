"""``ipdn node webhook ...``: the operator's view of partners' webhook subscriptions and their deliveries.

The commands work on the node's database directly (whether the node runs or not): a running node sees a
new or removed subscription at its next applied record, and an enabled subscription or requeued
deliveries within ``webhook_poll_interval`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from federation.cli.commands import Commands
from federation.cli.errors import UsageError
from federation.protocol.errors import InputError
from federation.server.times import utc_text as time_text
from node.config import load_config
from node.partners import access as partners
from node.store.records import NodeStore
from node.webhooks import events as webhooks
from node.webhooks.api import describe_delivery, describe_subscription, new_subscription
from node.webhooks.store import FAILED, OPERATOR, WebhookStore

T = TypeVar("T")


def _with_store(args: argparse.Namespace, work: Callable[[WebhookStore], Awaitable[T]]) -> T:
    return with_node_store(args.dir, lambda store: work(store.webhooks))


def with_node_store(node_dir: Path, work: Callable[[NodeStore], Awaitable[T]]) -> T:
    """Run ``work(store)`` against the node's database (the node may be running: both see the same rows).
    The operator commands' one way in (federation/cli/node.py uses it too)."""
    config = load_config(node_dir)

    async def run() -> T:
        store = await NodeStore.open(config.db_url, config.member)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def cmd_add(args: argparse.Namespace) -> int:
    config = load_config(args.dir)
    filters = {k: v for k in ("kind", "origin", "country", "lang", "status", "tag")
               if (v := getattr(args, k)) is not None}
    if args.type:
        filters["types"] = args.type
    try:
        partners.check_name(args.partner)
    except ValueError as e:
        raise UsageError(str(e)) from e
    try:
        sub = new_subscription(args.partner, args.url, filters, allow_loopback=config.webhook_allow_loopback,
                               now=datetime.now(UTC))
    except InputError as e:
        raise UsageError(e.message) from e
    async def work(store: NodeStore) -> bool:
        await store.webhooks.add_subscription(sub)
        return any(k.name == sub.partner and k.revoked_at is None and "webhooks" in k.scopes
                   for k in await store.partners.keys())

    if not with_node_store(args.dir, work):
        print(f"note: no live key of {sub.partner!r} has the webhooks scope, so the partner cannot see or manage "
              "this subscription itself (ipdn node partner add ... --scope webhooks)", file=sys.stderr)
    if args.json:
        print(json.dumps(describe_subscription(sub, secret=True), indent=2))
    else:
        print(f"subscription {sub.id} for {sub.partner}: {sub.url}\nfilters {json.dumps(sub.filters.to_dict())}\n"
              f"secret {sub.secret}\n(give the secret to the partner now: it is not shown again)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    subs = _with_store(args, lambda s: s.subscriptions(args.partner))
    if args.json:
        print(json.dumps([describe_subscription(s) for s in subs], indent=2))
        return 0
    for sub in subs:
        off = sub.disabled
        state = sub.state if off is None else f"DISABLED ({off.reason} at {time_text(off.at)}: {off.detail})"
        failing = f" failing since {time_text(sub.failing_since)}" if sub.failing_since else ""
        print(f"{sub.id} {sub.partner} {state}{failing}\n  {sub.url} {json.dumps(sub.filters.to_dict())}")
    if not subs:
        print("no subscriptions", file=sys.stderr)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    if not _with_store(args, lambda s: s.remove_subscription(args.id)):
        raise UsageError(f"no subscription {args.id}")
    print(f"removed {args.id} with its deliveries")
    return 0


def cmd_enable(args: argparse.Namespace) -> int:
    async def work(store: WebhookStore) -> tuple[bool, int]:
        if not await store.enable(args.id):
            return False, 0
        return True, await store.retry_failed(args.id, datetime.now(UTC)) if args.retry_failed else 0

    found, requeued = _with_store(args, work)
    if not found:
        raise UsageError(f"no subscription {args.id}")
    print(f"{args.id} enabled" + (f"; {requeued} failed deliveries queued again" if args.retry_failed else ""))
    return 0


def cmd_disable(args: argparse.Namespace) -> int:
    done = _with_store(args, lambda s: s.disable(args.id, OPERATOR, args.reason, datetime.now(UTC)))
    if not done:
        raise UsageError(f"no active subscription {args.id}")
    print(f"{args.id} disabled")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    n = _with_store(args, lambda s: s.retry_failed(args.id, datetime.now(UTC)))
    print(f"{n} failed deliveries of {args.id} queued again")
    return 0


def cmd_deliveries(args: argparse.Namespace) -> int:
    rows = _with_store(args, lambda s: s.deliveries(subscription_id=args.subscription,
                                                    state=FAILED if args.failed else None, limit=args.limit))
    if args.json:
        print(json.dumps([describe_delivery(d) for d in rows], indent=2))
        return 0
    for d in rows:
        when = time_text(d.delivered_at) if d.delivered_at else f"next {time_text(d.next_attempt_at)}" \
            if d.next_attempt_at else time_text(d.last_attempt_at)
        print(f"{d.id} {d.subscription_id} {d.type} {d.record_id} v{d.version} {d.state.upper()} "
              f"attempts {d.attempts} {when}")
        if d.state != "delivered" and d.last_error:
            print(f"  last: {d.last_error}")
    if not rows:
        print("no deliveries", file=sys.stderr)
    return 0


def register(node: Commands) -> None:
    """Add ``ipdn node webhook ...`` to the node command group."""
    hooks = node.subgroup("webhook", "partners' webhook subscriptions: add, list, remove, deliveries, enable",
                          "ipdn node webhook add --dir qa --partner museum --url https://hooks.museum.example/ipdn "
                          "--kind cultural-event")

    def command(name: str, func: Callable[[argparse.Namespace], int], help_: str, example: str, *,
                json_out: bool = False, by_id: bool = False) -> argparse.ArgumentParser:
        """A webhook command: ``--dir``, then the subscription ``id`` it acts on or ``--json`` it prints."""
        p = hooks.add(name, func, help_, f"ipdn node webhook {name} --dir qa {example}")
        if by_id:
            p.add_argument("id")
        if json_out:
            p.add_argument("--json", action="store_true", help="print JSON")
        return p

    a = command("add", cmd_add, "subscribe a partner's URL to record events (prints the secret once)",
                "--partner museum --url https://hooks.museum.example/ipdn --country QA --type record.cancelled",
                json_out=True)
    a.add_argument("--partner", required=True, help="the partner's name (as its API key names it)")
    a.add_argument("--url", required=True, help="where to POST: https:// (see docs/PROTOCOL.md §13)")
    a.add_argument("--kind", help="only this record kind, e.g. cultural-event")
    a.add_argument("--origin", help="only records of this member (country code)")
    a.add_argument("--country", help="only records with this participating, venue or eligible country")
    a.add_argument("--lang", help="only records titled in this language")
    a.add_argument("--status", help="only records with this status (or that had it: a change away is sent)")
    a.add_argument("--tag", help="only records with this tag")
    a.add_argument("--type", action="append", choices=webhooks.EVENT_TYPES,
                   help="only these event types (repeat; default all)")

    command("list", cmd_list, "subscriptions, with their state and failure streak", "--partner museum",
            json_out=True).add_argument("--partner", help="only this partner's")
    command("remove", cmd_remove, "delete a subscription and its deliveries", "sub_01JD...", by_id=True)

    d = command("deliveries", cmd_deliveries, "recent deliveries, newest first, with the last error",
                "--failed --json", json_out=True)
    d.add_argument("--subscription", help="only this subscription's")
    d.add_argument("--failed", action="store_true", help="only those that failed for good")
    d.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")

    command("enable", cmd_enable, "deliver to a disabled subscription again", "sub_01JD... --retry-failed",
            by_id=True).add_argument("--retry-failed", action="store_true",
                                     help="also queue its failed deliveries again")
    command("disable", cmd_disable, "stop delivering to a subscription (its queue is kept)",
            "sub_01JD... --reason 'partner asked'",
            by_id=True).add_argument("--reason", default="disabled by the node operator", help="shown to the partner")
    command("retry", cmd_retry, "queue a subscription's failed deliveries again (same webhook-id)", "sub_01JD...",
            by_id=True)
