"""The ``ipdn`` command line. Exit codes: 0 success, 1 something did not verify or validate,
2 usage errors (bad arguments, unreadable files). Failures print one line per reason on stderr."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from federation.cli.errors import UsageError
from federation.progress import add_argument as add_progress_argument
from federation.progress import reporter
from federation.protocol import strictjson
from federation.protocol.envelope import ORIGIN_RE, Envelope, Payload, format_time, sign_envelope
from federation.protocol.errors import IpdnError, StrictJsonError
from federation.protocol.keys import PublicKey, SigningKey
from federation.protocol.registry import load_registry, load_registry_keys
from federation.protocol.schemas import default_schemas
from federation.protocol.verify import Failure, keys_resolver, verify_envelope

FILE_LIMITS = strictjson.JsonLimits(max_bytes=512 * 1024 * 1024, max_depth=40)
# The command groups (see build_parser): each is imported and registered only when it is the command asked for.
GROUPS = ("hub", "governance", "node", "conformance")


# -- reading documents ---------------------------------------------------------------------------------


def read_documents(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, document) for each document in a JSON or JSON Lines file, strictly parsed.

    A document that is not strict JSON yields a ``StrictJsonError`` in place of the value.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from e
    lines = data.split(b"\n")
    if path.suffix not in (".jsonl", ".ndjson"):
        try:
            yield str(path), strictjson.loads(data, FILE_LIMITS)
            return
        except StrictJsonError as e:
            if sum(1 for ln in lines if ln.strip()) < 2:
                yield str(path), e
                return
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                yield f"{path}:{n}", strictjson.loads(line)
            except StrictJsonError as e:
                yield f"{path}:{n}", e


def iter_envelope_objects(doc: Any) -> Iterator[Any]:
    """Envelopes in a document: one JWS, a list, a feed item carrying ``envelope``, a page, or a webhook
    event body (``{"type", "timestamp", "data": item}``)."""
    if isinstance(doc, list):
        for item in doc:
            yield from iter_envelope_objects(item)
    elif isinstance(doc, dict) and "items" in doc and isinstance(doc["items"], list):
        yield from iter_envelope_objects(doc["items"])
    elif isinstance(doc, dict) and isinstance(doc.get("envelope"), dict):
        yield doc["envelope"]
    elif isinstance(doc, dict) and isinstance(ext := doc.get("_ipdn"), dict) and isinstance(ext.get("envelope"), dict):
        yield ext["envelope"]  # a JSON Feed item
    elif isinstance(doc, dict) and isinstance(doc.get("type"), str) and isinstance(doc.get("data"), dict):
        yield from iter_envelope_objects(doc["data"])  # a webhook delivery's body
    else:
        yield doc


def _is_jws(doc: Any) -> bool:
    return isinstance(doc, dict) and {"protected", "payload", "signature"} <= set(doc)


# -- commands ------------------------------------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace) -> int:
    member = args.member.upper()
    if not ORIGIN_RE.fullmatch(member):
        raise UsageError("--member is an ISO 3166-1 alpha-2 code such as QA")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    key_path, jwk_path = out / f"{member}.key.pem", out / f"{member}.pub.jwk.json"
    if key_path.exists() and not args.force:
        raise UsageError(f"{key_path} exists; refusing to overwrite a private key (use --force)")
    key_path.unlink(missing_ok=True)
    key = SigningKey.generate()
    key.save(key_path)
    pub = PublicKey(key=key.public.key, kid=key.kid, member=member)
    jwk_path.write_text(json.dumps(pub.to_jwk(), indent=2) + "\n")
    print(f"{key_path}\n{jwk_path}\nkid {key.kid}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    schemas = default_schemas()
    bad = 0
    for path in args.files:
        for where, doc in read_documents(path):
            problems = _validate_doc(schemas, doc, args.kind)
            if problems:
                bad += 1
                for p in problems:
                    print(f"{where}: {p}")
            elif not args.quiet:
                print(f"{where}: valid")
    return 1 if bad else 0


def _validate_doc(schemas: Any, doc: Any, kind: str | None) -> list[str]:
    if isinstance(doc, IpdnError):
        return [f"{doc.reason}: {doc.message}"]
    if _is_jws(doc):
        try:
            env = Envelope.from_dict(doc)
        except IpdnError as e:
            return [f"{e.reason}: {e.message}"]
        if env.payload.body is None:
            return []
        kind, doc = env.payload.schema, env.payload.body
    elif isinstance(doc, dict) and set(doc) == {"kind", "body"}:
        kind, doc = doc["kind"], doc["body"]
    kind = kind or schemas.guess_kind(doc)
    if kind is None:
        return ["unknown-kind: cannot tell the record kind (no event_type or programme_type); pass --kind"]
    try:
        issues = schemas.validate(kind, doc)
    except IpdnError as e:
        return [f"{e.reason}: {e.message}"]
    return [f"{i.pointer or '/'} {i.keyword}: {i.message}" for i in issues]


def cmd_sign(args: argparse.Namespace) -> int:
    key = SigningKey.load(args.key)
    schemas = default_schemas()
    origin = args.origin.upper()
    if args.delete:
        if not args.record_id:
            raise UsageError("--delete needs --record-id")
        body = None
    else:
        if args.body is None:
            raise UsageError("BODY.json is required unless --delete")
        body = strictjson.loads(args.body.read_bytes())
    record_id = args.record_id or f"{origin}:{uuid.uuid4().hex}"
    payload = Payload(
        origin=origin, seq=args.seq, prev=args.prev, record_id=record_id, version=args.version,
        kind=args.kind, schema=schemas.schema_id(args.kind), op="delete" if args.delete else "put",
        issued_at=format_time(datetime.now(UTC)), body=body,
    )
    if body is not None:
        issues = schemas.validate(payload.schema, body)
        if issues:
            for i in issues:
                print(f"{args.body}: {i.pointer or '/'} {i.keyword}: {i.message}", file=sys.stderr)
            print("refusing to sign an invalid record", file=sys.stderr)
            return 1
    env = sign_envelope(key, payload)
    sys.stdout.write(env.to_bytes().decode() + "\n")
    print(f"hash {env.hash}", file=sys.stderr)
    return 0


_JWK_LIMITS = strictjson.JsonLimits(max_bytes=64 * 1024, max_depth=4)


def _read_jwk(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path`` when it is a JWK (has ``kty``), None when the file is something else."""
    try:
        doc = strictjson.loads(path.read_bytes()[: _JWK_LIMITS.max_bytes + 1], _JWK_LIMITS)
    except (OSError, StrictJsonError):
        return None
    return doc if isinstance(doc, dict) and "kty" in doc else None


def verify_keys(paths: Sequence[Path], member: str | None) -> tuple[dict[str, PublicKey], list[Path]]:
    """The public keys among ``paths`` (each bound to its member) and the other paths (input files).

    `--keys A.jwk B.jwk export.jsonl` reads naturally but argparse gives --keys every path: whatever is not a
    JWK is an input file. A JWK that is not a usable key (a weak point: bad-key) or that no member is bound to
    (a plain RFC 7517 JWK without ``ipdn_member`` and no ``--member``) stops the command: such a key would be
    dropped, or would vouch for envelopes of every origin.
    """
    keys: dict[str, PublicKey] = {}
    files: list[Path] = []
    refused: list[str] = []
    for path in paths:
        jwk = _read_jwk(path)
        if jwk is None:
            files.append(path)
            continue
        try:
            k = PublicKey.from_jwk(jwk)
        except IpdnError as e:
            refused.append(f"{path}: {e.reason}: {e.message}")
            continue
        if k.member is not None and member is not None and k.member != member:
            refused.append(f"{path}: bad-key: ipdn_member {k.member} and --member {member} disagree")
            continue
        if k.member is None and member is not None:
            k = PublicKey(k.key, k.kid, member=member)
        if k.member is None:
            refused.append(f"{path}: no member binding: key {k.kid} has no ipdn_member; give --member CODE (the "
                           "member whose envelopes it verifies) or --registry FILE")
            continue
        keys[k.kid] = k
    if refused:
        raise UsageError("; ".join(refused))
    return keys, files


def cmd_verify(args: argparse.Namespace) -> int:
    member = args.member.upper() if args.member else None
    if member is not None and not ORIGIN_RE.fullmatch(member):
        raise UsageError("--member is an ISO 3166-1 alpha-2 code such as QA")
    keys, files = verify_keys(args.keys or [], member)
    files = list(args.files) + files
    if args.registry:
        keys.update(load_registry_keys(args.registry))
    if not keys:
        raise UsageError("give --keys JWK.json... (with --member CODE for a JWK without ipdn_member) or "
                         "--registry FILE")
    if not files:
        raise UsageError("no envelope files to verify")
    schemas = default_schemas()
    now = datetime.now(UTC)
    chains: dict[str, dict[int, str]] = {}  # origin -> seq -> hash, as seen in this export
    good = bad = 0
    for path in files:
        for where, doc in read_documents(path):
            if isinstance(doc, IpdnError):
                bad += 1
                print(f"{where}: FAIL intake {doc.reason}: {doc.message}")
                continue
            for i, obj in enumerate(iter_envelope_objects(doc)):
                label = where if i == 0 else f"{where}[{i}]"
                try:
                    env = Envelope.from_dict(obj)
                except IpdnError as e:
                    bad += 1
                    print(f"{label}: FAIL intake {e.reason}: {e.message}")
                    continue
                result = verify_envelope(env, keys=keys_resolver(keys), schemas=schemas, now=now)
                p = env.payload
                # An export may hold any subset of an origin's chain (a feed keeps the latest versions),
                # but two envelopes that meet must agree: same number and hash, or n+1 naming n.
                seen = chains.setdefault(p.origin, {})
                held = seen.get(p.seq)
                before = seen.get(p.seq - 1)
                if (held is not None and held != env.hash) or (before is not None and p.prev != before):
                    result.failures.append(Failure("chain", "chain-fork",
                                                   f"{p.origin} seq {p.seq} disagrees with another envelope here"))
                seen[p.seq] = env.hash
                what = f"{p.origin} seq {p.seq} {p.record_id} v{p.version} {p.op}"
                if result.ok:
                    good += 1
                    if not args.quiet:
                        print(f"{label}: OK {what} {env.hash}")
                else:
                    bad += 1
                    for f in result.failures:
                        print(f"{label}: FAIL {what}: {f.check} {f.reason}: {f.message}")
    print(f"{good} verified, {bad} failed", file=sys.stderr)
    return 1 if bad or not good else 0


def cmd_audit(args: argparse.Namespace) -> int:
    from federation import audit  # its HTTP client only here

    try:
        fetch = audit.HttpFetcher(args.hub)
    except ValueError as e:
        raise UsageError(str(e)) from e
    anchor = load_registry(args.registry)
    previous = audit.load_checkpoint(args.from_checkpoint, anchor.registry) if args.from_checkpoint else None
    progress = reporter(args, label="audit", unit="entries")
    report = audit.audit(fetch, anchor, now=datetime.now(UTC), previous=previous, progress=progress)
    for line in report.failure_lines():
        print(line)
    if not args.quiet:
        print("\n".join(report.summary_lines(fetch.base_url)))
    if args.save_checkpoint and report.ok and report.checkpoint is not None:
        audit.save_checkpoint(report.checkpoint, args.save_checkpoint)
    elif args.save_checkpoint:
        why = "the audit failed" if not report.ok else "the log is empty"
        print(f"not writing {args.save_checkpoint}: {why}", file=sys.stderr)
    return 0 if report.ok else 1


# -- parser --------------------------------------------------------------------------------------------


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``command`` (the first word of the command line), when one of :data:`GROUPS`, registers that group
    alone, and when another known command, no group (None or an unknown word: every group, for the full help)."""
    p = argparse.ArgumentParser(prog="ipdn", description="IPDN Exchange: signed cultural records, federated.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n  ipdn keygen --member QA --out keys/\n"
                                       "  ipdn verify --registry registry.json feed.json\n"
                                       "  ipdn node serve --dir /var/lib/ipdn/QA\n"
                                       "Each command has --help with examples. Exit codes: 0 success, 1 something did "
                                       "not verify\nor validate, 2 the command could not run (the reason on one line).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    k = sub.add_parser("keygen", help="make a member's Ed25519 key pair",
                       epilog="example: ipdn keygen --member QA --out keys/")
    k.add_argument("--member", required=True, help="ISO 3166-1 alpha-2 code, e.g. QA")
    k.add_argument("--out", required=True, type=Path, help="directory for MEMBER.key.pem and MEMBER.pub.jwk.json")
    k.add_argument("--force", action="store_true", help="replace an existing key")
    k.set_defaults(func=cmd_keygen)

    v = sub.add_parser("validate", help="check record bodies or envelopes against their schemas",
                       epilog="example: ipdn validate event.json records.jsonl")
    v.add_argument("files", nargs="+", type=Path, metavar="FILE")
    v.add_argument("--kind", help="record kind of bare bodies (default: guessed from event_type/programme_type)")
    v.add_argument("-q", "--quiet", action="store_true", help="print failures only")
    v.set_defaults(func=cmd_validate)

    s = sub.add_parser("sign", help="sign a record body into an envelope (printed on stdout)",
                       epilog="example: ipdn sign --key keys/QA.key.pem --origin QA --kind cultural-event "
                              "--seq 1 event.json")
    s.add_argument("--key", required=True, type=Path)
    s.add_argument("--origin", required=True)
    s.add_argument("--kind", required=True)
    s.add_argument("--seq", required=True, type=int)
    s.add_argument("--prev", help="hash of the origin's previous envelope (required when seq > 1)")
    s.add_argument("--record-id")
    s.add_argument("--version", type=int, default=1)
    s.add_argument("--delete", action="store_true", help="sign a tombstone for --record-id")
    s.add_argument("body", nargs="?", type=Path, metavar="BODY.json")
    s.set_defaults(func=cmd_sign)

    f = sub.add_parser("verify", help="verify envelopes (JSON, JSON Lines, feed pages, webhook bodies) offline",
                       epilog="example: ipdn verify --keys keys/QA.pub.jwk.json envelopes.jsonl")
    f.add_argument("--keys", nargs="+", type=Path, metavar="JWK.json")
    f.add_argument("--member", metavar="CODE",
                   help="the member every --keys JWK without ipdn_member belongs to: it verifies that member's "
                        "envelopes only")
    f.add_argument("--registry", type=Path, metavar="FILE", help="a signed registry document")
    f.add_argument("-q", "--quiet", action="store_true")
    f.add_argument("files", nargs="*", type=Path, metavar="FILE")
    f.set_defaults(func=cmd_verify)

    a = sub.add_parser("audit", help="audit a hub from outside: checkpoint, every envelope, Merkle root, consistency",
                       epilog="example: ipdn audit --hub https://hub.ipdn.network --registry registry.json "
                              "--from-checkpoint last.json --save-checkpoint last.json")
    a.add_argument("--hub", required=True, metavar="URL", help="the hub's base URL")
    a.add_argument("--registry", required=True, type=Path, metavar="FILE",
                   help="the registry you trust (e.g. the genesis): the hub's later versions are fetched and each "
                        "checked")
    a.add_argument("--from-checkpoint", type=Path, metavar="FILE", help="a checkpoint saved by an earlier audit")
    a.add_argument("--save-checkpoint", type=Path, metavar="FILE", help="write the verified checkpoint here")
    a.add_argument("-q", "--quiet", action="store_true", help="print failures only (no progress, no summary)")
    add_progress_argument(a)
    a.set_defaults(func=cmd_audit)

    # A group's module is imported only when it is the command asked for (every group for the full help or an
    # unknown command): the node's and hub's modules import their web apps and database layers, about a second of a
    # command's start, which `ipdn keygen`, `sign` or `verify` need none of. (The command line is the top of the
    # house, imported by nothing: an import in its functions cannot hide a cycle; tests/test_architecture.py.)
    every = command is None or command not in {*sub.choices, *GROUPS}
    if every or command == "hub":
        from federation.cli import hub
        hub.register(sub)
    if every or command == "governance":
        from federation.cli import governance
        governance.register(sub)
    if every or command == "node":
        from federation.cli import node
        node.register(sub)
    if every or command == "conformance":
        from federation.cli import conformance
        conformance.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(words[0] if words and not words[0].startswith("-") else None).parse_args(words)
    try:
        return int(args.func(args))
    except UsageError as e:
        print(f"ipdn: {e}", file=sys.stderr)
        return 2
    except IpdnError as e:
        print(f"ipdn: {e.reason}: {e.message}", file=sys.stderr)
        return 2
    except OSError as e:  # a file or socket the command needed: one line, not a traceback
        print(f"ipdn: {e.strerror or e}{f': {e.filename}' if e.filename else ''}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
