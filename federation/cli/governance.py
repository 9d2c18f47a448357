"""``ipdn governance ...``: make, sign and submit governance documents (docs/PROTOCOL.md §12).

Every command signs locally with the key it is given and sends the document to the hub, which only
collects; the next registry version exists once the documents justify it (see ``list``).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from federation.protocol.envelope import format_time
from federation.protocol.governance import Document, sign_document
from federation.protocol.keys import SigningKey, load_public_jwk
from federation.protocol.registry import parse_registry


class HubRequestError(Exception):
    pass


def _request(method: str, url: str, body: Any = None, *, raw: bool = False) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,  # noqa: S310 (the operator's hub URL)
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 (the operator's hub URL)
            data = r.read()
    except urllib.error.HTTPError as e:
        try:
            problem = json.loads(e.read())
            raise HubRequestError(f"{problem.get('reason')}: {problem.get('detail')}") from e
        except ValueError:
            raise HubRequestError(f"HTTP {e.code}") from e
    except OSError as e:
        raise HubRequestError(f"cannot reach {url}: {e}") from e
    return data if raw else json.loads(data)


def _base(hub: str) -> int:
    return parse_registry(_request("GET", hub.rstrip("/") + "/api/v1/registry", raw=True)).registry.version


def _submit(hub: str, *docs: Document) -> int:
    answer = _request("POST", hub.rstrip("/") + "/api/v1/governance", {"documents": [d.to_dict() for d in docs]})
    print(f"submitted {docs[0].type} {docs[0].hash}")
    print(f"registry version now {answer['registry_version']}")
    return 0


def _sign(body: dict[str, Any], key: SigningKey) -> Document:
    """``body`` signed by ``key``, issued now: the operator's moment of signing."""
    return sign_document(body, key, now=datetime.now(UTC))


def _time(text: str | None) -> str | None:
    return format_time(datetime.fromisoformat(text)) if text else None


def cmd_apply(a: argparse.Namespace) -> int:
    key = SigningKey.load(a.key)
    names = dict(n.split("=", 1) for n in a.name)
    body: dict[str, Any] = {"type": "application", "base": _base(a.hub), "member": a.member.upper(), "names": names,
                            "key": key.public.to_jwk()}
    if a.endpoint:
        body["endpoint"] = a.endpoint
    if a.email:
        body["contact"] = {"email": a.email}
    return _submit(a.hub, _sign(body, key))


def cmd_vote(a: argparse.Namespace) -> int:
    doc = _sign({"type": "vote", "base": _base(a.hub), "proposal": a.proposal, "voter": a.member.upper(),
                 "decision": "reject" if a.reject else "approve"}, SigningKey.load(a.key))
    return _submit(a.hub, doc)


def cmd_propose(a: argparse.Namespace) -> int:
    doc = _sign({"type": "proposal", "base": _base(a.hub), "action": a.command_name,
                 "member": a.member.upper(), "proposer": a.as_member.upper(), "reason": a.reason or ""},
                SigningKey.load(a.key))
    return _submit(a.hub, doc)


def cmd_rotate(a: argparse.Namespace) -> int:
    old, new = SigningKey.load(a.key), SigningKey.load(a.new_key)
    body: dict[str, Any] = {"type": "rotation", "base": _base(a.hub), "member": a.member.upper(),
                            "new_key": new.public.to_jwk()}
    if a.effective:
        body["effective"] = _time(a.effective)
    first = _sign(body, old)
    return _submit(a.hub, first, _sign(first.body, new))  # the same payload, signed by the new key


def cmd_revoke(a: argparse.Namespace) -> int:
    body: dict[str, Any] = {"type": "revocation", "base": _base(a.hub), "member": a.member.upper(), "kid": a.kid}
    if a.effective:
        body["effective"] = _time(a.effective)
    return _submit(a.hub, _sign(body, SigningKey.load(a.key)))


def cmd_handover(a: argparse.Namespace) -> int:
    new_key = load_public_jwk(a.new_hub_key)
    doc = _sign({"type": "handover", "base": _base(a.hub), "chair": a.chair.upper(),
                 "hub": {"url": a.new_url.rstrip("/"), "keys": [new_key.to_jwk()]}},
                SigningKey.load(a.hub_key))
    return _submit(a.hub, doc)


def cmd_list(a: argparse.Namespace) -> int:
    doc = _request("GET", a.hub.rstrip("/") + "/api/v1/governance")
    print(f"registry version {doc['registry_version']}; {doc['quorum']} approvals decide")
    for p in doc["pending"]:
        print(f"{p['hash']}  {p['action']:9s} {p.get('member') or '':3s} approve {','.join(p['approve']) or '-'}"
              f"  reject {','.join(p['reject']) or '-'}  ({len(p['approve'])}/{p['needed']})")
    if not doc["pending"]:
        print("nothing pending")
    return 0


def run(func: Any) -> Any:
    def wrapped(a: argparse.Namespace) -> int:
        try:
            return int(func(a))
        except HubRequestError as e:
            print(f"ipdn governance: {e}", file=sys.stderr)
            return 1
    return wrapped


def register(sub: Any) -> None:
    g = sub.add_parser("governance", help="apply, vote, suspend, reinstate, withdraw, rotate, revoke, handover, list",
                       epilog="example: ipdn governance list --hub https://hub.ipdn.network")
    gs = g.add_subparsers(dest="governance_command", required=True, metavar="COMMAND")

    def cmd(name: str, func: Any, help_: str, example: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = gs.add_parser(name, help=help_, epilog=f"example: {example}")
        p.add_argument("--hub", required=True, help="the hub's URL")
        p.set_defaults(func=run(func), command_name=name)
        return p

    p = cmd("apply", cmd_apply, "a candidate institution applies, signing with its new key",
            "ipdn governance apply --hub URL --member MZ --key keys/MZ.key.pem --name en='Mozambique Cultural "
            "Institute' --name pt='Instituto Cultural de Moçambique' --endpoint https://ipdn.mz.example")
    p.add_argument("--member", required=True)
    p.add_argument("--key", required=True, type=Path)
    p.add_argument("--name", required=True, action="append", metavar="LANG=NAME")
    p.add_argument("--endpoint")
    p.add_argument("--email")

    for name, what in (("vote", "an active member approves (or rejects) an application or proposal"),
                       ("admit", "an active member votes to admit an applicant (the hub admits at the quorum)")):
        p = cmd(name, cmd_vote, what, f"ipdn governance {name} --hub URL --member QA --key keys/QA.key.pem "
                                      "--proposal HASH")
        p.add_argument("--member", required=True)
        p.add_argument("--key", required=True, type=Path)
        p.add_argument("--proposal", required=True, help="the hash printed when it was submitted (see list)")
        p.add_argument("--reject", action="store_true")

    for action in ("suspend", "reinstate", "withdraw"):
        p = cmd(action, cmd_propose, f"propose to {action} a member (withdraw: a member may withdraw itself)",
                f"ipdn governance {action} --hub URL --member NG --as QA --key keys/QA.key.pem --reason '...'")
        p.add_argument("--member", required=True, help="the member concerned")
        p.add_argument("--as", dest="as_member", required=True, help="the proposing member")
        p.add_argument("--key", required=True, type=Path)
        p.add_argument("--reason")

    p = cmd("rotate", cmd_rotate, "replace a member's key (signed by the current and the new key)",
            "ipdn governance rotate --hub URL --member KR --key keys/KR.key.pem --new-key keys/KR-2027.key.pem")
    p.add_argument("--member", required=True)
    p.add_argument("--key", required=True, type=Path, help="the current key")
    p.add_argument("--new-key", required=True, type=Path)
    p.add_argument("--effective", help="RFC 3339 time the new key takes over (default: now)")

    p = cmd("revoke", cmd_revoke, "end one of a member's keys from a time on (signed by a key of the member)",
            "ipdn governance revoke --hub URL --member KR --key keys/KR.key.pem --kid=KID")
    p.add_argument("--member", required=True)
    p.add_argument("--key", required=True, type=Path)
    # A kid is base64url and may begin with "-", which argparse would read as an option: written --kid=KID.
    p.add_argument("--kid", required=True, help="the key's kid; write it --kid=KID (a kid may begin with '-')")
    p.add_argument("--effective", help="RFC 3339 time (default: now)")

    p = cmd("handover", cmd_handover, "the outgoing hub proposes a new hub and chair (members then vote)",
            "ipdn governance handover --hub URL --hub-key hub/hub.key.pem --new-url https://hub.tr.example "
            "--new-hub-key newhub.pub.jwk.json --chair TR")
    p.add_argument("--hub-key", required=True, type=Path, help="the outgoing hub's key")
    p.add_argument("--new-url", required=True)
    p.add_argument("--new-hub-key", required=True, type=Path, help="the new hub's public JWK")
    p.add_argument("--chair", required=True)

    cmd("list", cmd_list, "pending applications and proposals with their votes", "ipdn governance list --hub URL")

