"""What member staff do on the authoring pages and with import files: accounts, drafts, publishing, history.

Decisions only; the store persists, node/staff/web.py and the CLI parse and authenticate. Publishing
always goes through :class:`~node.records.service.NodeService` (validate, sign, store, queue for the hub),
with who did it (:class:`~node.store.staff.Authorship`) written in the same transaction as the envelope.
Drafts are never signed and never leave the node.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from babel.lists import format_list

from federation.protocol.envelope import Envelope
from federation.protocol.schemas import Issue
from federation.server.ui.i18n import Catalog
from federation.server.ui.passwords import hash_password
from federation.server.ui.totp import new_secret
from node.errors import (
    AccountError,
    DraftNotFoundError,
    EditConflictError,
    InvalidRecordError,
    NotOwnRecordError,
    RecordNotFoundError,
    found,
)
from node.records.service import REASON_FIELD, NodeService
from node.staff import bulk
from node.staff.forms import FormBuilder, Names, flatten, issue_path, plain_message
from node.store.records import StoredRecord
from node.store.staff import Authorship, Draft, StaffUser

USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
MIN_PASSWORD = 12


DRY_RUN, ALL_OR_NOTHING, VALID_ONLY = "dry-run", "all", "valid"


@dataclass(frozen=True)
class HistoryEntry:
    version: int
    op: str
    status: str | None
    issued_at: str
    hash: str
    origin: str
    username: str | None
    via: str | None
    note: str | None
    changed: list[str]  # dotted paths of the fields that differ from the version before
    name: str | None = None  # the person's display name (the account's)
    changes: list[Change] = field(default_factory=list)  # each value that differs, old and new
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class Change:
    """One value that differs between two versions: a leaf's dotted path (``venue.name.ar``), its text before
    and after (None: absent)."""

    path: str
    old: str | None
    new: str | None


@dataclass
class Planned:
    """What importing one row does (or would do): create, update, unchanged, invalid (and, once
    applied, created, updated, skipped, failed)."""

    row: bulk.Row
    action: str
    record_id: str | None = None
    version: int | None = None
    errors: list[bulk.RowError] = field(default_factory=list)


@dataclass
class ImportReport:
    mode: str
    rows: list[Planned]
    published: bool = False  # False: nothing was published (a dry run, or refused for errors)

    def count(self, action: str) -> int:
        return sum(1 for p in self.rows if p.action == action)

    @property
    def invalid(self) -> int:
        return self.count("invalid")


def changed_paths(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    """The fields (dotted paths, trimmed to the field a person edits) whose value differs."""
    a, b = flatten(before or {}), flatten(after or {})
    out: list[str] = []
    for path in sorted(set(a) | set(b)):
        if a.get(path) != b.get(path):
            top = ".".join(path.split(".")[:2]) if path.split(".")[0] else path
            if top not in out:
                out.append(top)
    return out


def changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[Change]:
    """Every value that differs, leaf by leaf, in the order of the later version's fields."""
    a, b = flatten(before or {}), flatten(after or {})
    order = list(b) + [p for p in a if p not in b]
    return [Change(p, a.get(p), b.get(p)) for p in order if a.get(p) != b.get(p)]


class StaffService:
    def __init__(self, node: NodeService, catalog: Catalog, rights: str | None = None) -> None:
        """``rights``: the licence URI new records start with (the node's ``default_licence``; none: staff choose)."""
        self.node = node
        self.store = node.store.staff
        self.catalog = catalog
        self.forms = FormBuilder(node.schemas, rights, node.member)

    def names(self, lang: str) -> Names:
        return Names(lang, self.catalog.gettext(lang), self.catalog.translator(lang).ngettext)

    # -- accounts -------------------------------------------------------------------------------------

    async def add_user(self, username: str, password: str, name: str = "") -> StaffUser:
        """Raises AccountError: the name is not a valid user name or is taken, or the password is short."""
        if not USERNAME_RE.fullmatch(username):
            raise AccountError("a user name is 2 to 64 lower-case letters, digits, dots, hyphens or underscores")
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"a password has at least {MIN_PASSWORD} characters")
        user = StaffUser(username, name or username, hash_password(password))
        if not await self.store.add_user(user, self.node.clock()):
            raise AccountError(f"there is already a user {username}")
        return user

    async def users(self) -> list[StaffUser]:
        return await self.store.users()

    async def set_disabled(self, username: str, disabled: bool = True) -> None:
        """Raises AccountError: no such user."""
        if not await self.store.set_user_disabled(username, disabled):
            raise AccountError(f"there is no user {username}")

    async def enrol_totp(self, username: str) -> str:
        """A new second-factor secret for the account (replacing any it had), to be shown once to its holder.

        Raises AccountError: no such user."""
        secret = new_secret()
        if not await self.store.set_totp(username, secret):
            raise AccountError(f"there is no user {username}")
        return secret

    async def remove_totp(self, username: str) -> None:
        """Raises AccountError: no such user."""
        if not await self.store.set_totp(username, None):
            raise AccountError(f"there is no user {username}")

    async def use_totp_step(self, username: str, step: int) -> bool:
        """Whether the code of ``step`` may open the account (not used yet, nor a later one): then it is spent."""
        return await self.store.use_totp_step(username, step)

    async def active_user(self, username: str) -> StaffUser | None:
        """The account a session names, if it still exists and is enabled (disabling ends its sessions)."""
        user = await self.store.user(username)
        return user if user is not None and not user.disabled else None

    # -- drafts ---------------------------------------------------------------------------------------

    async def new_draft(self, kind: str, by: str, langs: Sequence[str]) -> Draft:
        self.node.schemas.schema_id(kind)  # raises UnknownSchemaError
        now = self.node.clock()
        draft = Draft(uuid.uuid4().hex, kind, {}, tuple(langs), by, by, now, now)
        await self.store.save_draft(draft)
        return draft

    async def draft(self, draft_id: str) -> Draft:
        """Raises DraftNotFoundError."""
        return found(await self.store.draft(draft_id),
                     DraftNotFoundError(f"no draft {draft_id} (published or discarded?)"))

    async def drafts(self) -> list[Draft]:
        return await self.store.drafts()

    async def edit(self, record_id: str, by: str) -> Draft:
        """The draft editing an own record: the one already open, else a new one from its current version.

        Raises NotOwnRecordError, RecordNotFoundError.
        """
        if record_id.partition(":")[0] != self.node.member:
            raise NotOwnRecordError(f"{record_id} is a record of another member: read only here")
        if (open_draft := await self.store.draft_of(record_id)) is not None:
            return open_draft
        rec = await self.node.get(record_id)
        body = rec.body or {}
        now = self.node.clock()
        draft = Draft(uuid.uuid4().hex, rec.kind, body, tuple(self.forms.langs_of(rec.kind, body) or ["en"]),
                      by, by, now, now, record_id, rec.version)
        await self.store.save_draft(draft)
        return draft

    async def save(self, draft: Draft, body: dict[str, Any], langs: Sequence[str], by: str) -> Draft:
        saved = Draft(draft.id, draft.kind, body, tuple(dict.fromkeys(langs)), draft.created_by, by,
                      draft.created_at, self.node.clock(), draft.record_id, draft.base_version)
        await self.store.save_draft(saved)
        return saved

    async def open_draft(self, record_id: str) -> Draft | None:
        """The draft editing an own record, if one is open."""
        return await self.store.draft_of(record_id)

    async def discard(self, draft_id: str) -> None:
        await self.store.delete_draft(draft_id)

    def check(self, kind: str, body: Any) -> list[Issue]:
        """Every issue of a body in one round: the schema's and, unlike publishing (which stops at the schema),
        the kind's rules too ("end is before the start"), and the form's own (a recurrence a calendar can expand:
        FormBuilder.rules), but none about a field already faulted."""
        issues = self.node.schemas.validate(kind, body)
        if issues:
            faulted = {i.pointer for i in issues}
            issues += [r for r in self.node.schemas.rules(kind, body) if r.pointer not in faulted]
        faulted = {i.pointer for i in issues}
        return issues + [r for r in self.forms.rules(kind, body) if r.pointer not in faulted]

    async def publish(self, draft_id: str, by: str) -> Envelope:
        """Sign and publish a draft (a new record, or the next version of the one it edits); the draft is
        then gone.

        Raises:
            DraftNotFoundError, InvalidRecordError, EditConflictError: the record changed since the draft
            was opened (someone else published a version meanwhile).
        """
        d = await self.draft(draft_id)
        author = Authorship(by, "form")
        if d.record_id is None:
            env = await self.node.create(d.kind, d.body, author)
        else:
            current = await self.node.get(d.record_id)
            if current.version != d.base_version:
                raise EditConflictError(f"{d.record_id} is at version {current.version} now, this draft started "
                                        f"from version {d.base_version}: open the record again to see the change")
            env = await self.node.update(d.record_id, d.body, author)
        await self.store.delete_draft(d.id)
        return env

    async def cancel(self, record_id: str, reason: str, by: str, lang: str = "en") -> Envelope:
        """Cancel, the reason in ``lang`` (the page's language) published when the schema holds one (ADR 0031)."""
        return await self.node.cancel(record_id, reason or None, Authorship(by, "form", note=reason or None), lang)

    def public_reason(self, kind: str) -> bool:
        """Whether a reason given for ``kind`` is published (in ``status_reason``), not only kept in the history."""
        sid = self.node.schemas.schema_id(kind)
        return REASON_FIELD in self.node.schemas.documents[sid].get("properties", {})

    async def delete(self, record_id: str, by: str) -> Envelope:
        env = await self.node.delete(record_id, Authorship(by, "form"))
        if (d := await self.store.draft_of(record_id)) is not None:
            await self.store.delete_draft(d.id)
        return env

    # -- reading --------------------------------------------------------------------------------------

    async def record(self, record_id: str) -> StoredRecord:
        return await self.node.get(record_id)

    async def last_bodies(self, record_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The body of each record's last version that had one: what a deleted record was."""
        envs = await self.store.last_puts(record_ids)
        return {rid: body for rid, raw in envs.items() if (body := Envelope.from_bytes(raw).payload.body) is not None}

    async def history(self, record_id: str) -> list[HistoryEntry]:
        """Every version held, newest first, with who published it here and which fields it changed.

        Raises RecordNotFoundError.
        """
        rows = await self.store.versions(record_id)
        if not rows:
            raise RecordNotFoundError(f"no record {record_id}")
        out: list[HistoryEntry] = []
        before: dict[str, Any] | None = None
        for r in rows:
            p = Envelope.from_bytes(r.envelope).payload
            body = p.body
            status = None if body is None else str(body.get("status", "")) or None
            changed = changed_paths(before, body) if body is not None else []
            out.append(HistoryEntry(p.version, p.op, status, p.issued_at, Envelope.from_bytes(r.envelope).hash,
                                    p.origin, r.username, r.via, r.note, changed, r.name,
                                    changes(before, body) if body is not None and before is not None else [], body))
            before = body
        return out[::-1]

    # -- import and export ----------------------------------------------------------------------------

    def read(self, data: bytes, fmt: str) -> list[bulk.Row]:
        """Raises bulk.FileFormatError."""
        return bulk.read_rows(data, fmt, self.forms.resolver, self.node.schemas.latest)

    async def plan(self, rows: Sequence[bulk.Row], progress: bulk.Progress = bulk.no_progress) -> list[Planned]:
        """What importing each row would do, with every error by row and column (worded when shown:
        :meth:`row_error`)."""
        mapped = await self.store.source_records([r.source_id for r in rows if r.source_id])
        held = await self.node.store.get_records([t for r in rows if (t := mapped.get(r.source_id) or r.record_id)
                                             and t.partition(":")[0] == self.node.member])
        seen: set[str] = set()
        out: list[Planned] = []
        for i, row in enumerate(rows):
            errors = list(row.errors)
            if row.source_id and row.source_id in seen:
                errors.append(bulk.RowError("source_id", "source-id-repeated", {"source_id": row.source_id}))
            seen.add(row.source_id)
            target = mapped.get(row.source_id) or row.record_id
            current: StoredRecord | None = None
            if target is not None:
                if target.partition(":")[0] != self.node.member:
                    errors.append(bulk.RowError("record_id", "record-of-another-member", {"record": target}))
                else:
                    current = held.get(target)
                    if current is None and row.source_id not in mapped:
                        errors.append(bulk.RowError("record_id", "record-unknown", {"record": target}))
                    elif current is not None and current.kind != row.kind:
                        errors.append(bulk.RowError("kind", "record-other-kind",
                                                    {"record": target, "held": current.kind, "kind": row.kind}))
            if row.body is not None and row.kind in self.node.schemas.latest:
                errors += [bulk.RowError(issue_path(x) or "body", "schema", {"kind": row.kind}, x.message, x)
                           for x in self.check(row.kind, row.body)]
            if errors:
                out.append(Planned(row, "invalid", current.record_id if current else None, None, errors))
            elif current is None:
                out.append(Planned(row, "create"))
            elif current.body == row.body:
                out.append(Planned(row, "unchanged", current.record_id, current.version))
            else:
                out.append(Planned(row, "update", current.record_id, current.version + 1))
            progress("checked", i + 1, len(rows))
        return out

    def row_error(self, error: bulk.RowError, names: Names) -> str:
        """An import error in plain words in ``names``' language: a schema issue as the form words it
        (naming the field), any other from the catalogue (``import.err.<key>``, kinds by their labels)."""
        if error.issue is not None:
            kind = error.values["kind"]
            return plain_message(error.issue, names, self.forms.resolver.root(kind), self.forms.resolver)
        values = {k: self._shown(k, v, names) for k, v in error.values.items()}
        return names.message(f"import.err.{error.key}", **values)

    @staticmethod
    def _shown(name: str, value: Any, names: Names) -> Any:
        if name in ("kind", "held"):
            return names.message(f"kind.{value}")
        if isinstance(value, list):
            return format_list([str(v) for v in value], locale=names.lang)
        return value

    async def run_import(self, rows: Sequence[bulk.Row], mode: str, by: str,
                         progress: bulk.Progress = bulk.no_progress) -> ImportReport:
        """Dry run, publish all (refused when any row has errors) or publish the valid rows only.

        Progress counts the rows checked, then the rows published.
        """
        plan = await self.plan(rows, progress)
        report = ImportReport(mode, plan)
        if mode == DRY_RUN or (mode == ALL_OR_NOTHING and report.invalid):
            return report
        todo = [p for p in plan if p.action in ("create", "update")]
        for i, p in enumerate(todo):
            assert p.row.body is not None
            author = Authorship(by, "import", source_id=p.row.source_id)
            try:
                if p.action == "create":
                    env = await self.node.create(p.row.kind, p.row.body, author)
                    p.action = "created"
                else:
                    assert p.record_id is not None
                    env = await self.node.update(p.record_id, p.row.body, author)
                    p.action = "updated"
                p.record_id, p.version = env.payload.record_id, env.payload.version
            except InvalidRecordError as e:  # checked above; kept for a schema that changed meanwhile
                p.action, p.errors = "failed", [bulk.RowError(issue_path(x) or "body", "schema", {"kind": p.row.kind},
                                                              x.message, x) for x in e.issues]
            progress("published", i + 1, len(todo))
        for p in plan:
            if p.action == "invalid":
                p.action = "skipped" if mode == VALID_ONLY else p.action
        report.published = True
        return report

    async def export(self) -> list[bulk.ExportItem]:
        """The member's own records that are not deleted, oldest change first, with their source ids."""
        sources = await self.store.record_sources()
        items: list[bulk.ExportItem] = []
        cursor: str | None = None
        while True:
            page, cursor = await self.node.list_records(origin=self.node.member, cursor=cursor, limit=500)
            items += [bulk.ExportItem(sources.get(r.record_id, r.record_id), r.record_id, r.kind, r.body)
                      for r in page if r.body is not None]
            if cursor is None:
                return items

    def column_order(self, path: str) -> tuple[int, str]:
        """Export columns in the order of the schemas' properties (title first), then by path."""
        top = path.split(".")[0]
        places = [props.index(top) for kind in self.node.schemas.latest
                  if top in (props := list(self.forms.resolver.root(kind).schema.get("properties", {})))]
        return min(places, default=1000), path
