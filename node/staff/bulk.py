"""Bulk import and export files: CSV and JSON Lines <-> rows of record bodies (no database, no network).

**CSV**: UTF-8 (a byte-order mark is allowed), a header row, one row per record. Columns:

- ``source_id`` (required): the row's id in the member's own system; importing a file again finds
  the record it created by this id, so an unchanged row changes nothing and a changed row is an update;
- ``kind`` (required): ``cultural-event`` or ``capacity-programme``;
- ``record_id`` (optional): an own record the row is about (export writes it);
- every other column is a field of the body by its dotted path, the same names as the authoring
  form's inputs: ``title.en``, ``title.ar`` (one column per language), ``venue.city.en``,
  ``organizers.0.name.en`` (repeated groups by index from 0), ``participating_countries.0``,
  ``start`` (RFC 3339 with offset). Empty cells are absent fields. Numbers and true/false are typed
  by the schema.

**JSON Lines**: one JSON object per line, ``{"source_id": ..., "kind": ..., "record_id"?: ...,
"body": {...}}``; blank lines are skipped.

Export writes the member's own records (not deleted ones) in the same formats, so that exporting and
importing the result changes nothing.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from federation.protocol.schemas import Issue
from node.staff.forms import Resolver, flatten, unflatten

RESERVED = ("source_id", "kind", "record_id")
MAX_SOURCE_ID = 200

# How far a long import has got: (phase "checked" or "published", rows done, rows in all). A shared progress
# reporter was not on main when this was written; this is the smallest thing serving the CLI and the page.
Progress = Callable[[str, int, int], None]


def no_progress(phase: str, done: int, total: int) -> None:
    return None


class FileFormatError(ValueError):
    """The file as a whole cannot be read (not UTF-8, no header, an unknown format): ``key`` names the message
    (``import.err.<key>`` in the staff catalogue) with its ``values``; ``detail`` the technical text, if any."""

    def __init__(self, key: str, detail: str = "", **values: Any) -> None:
        super().__init__(f"{key}: {detail or values}")
        self.key, self.detail, self.values = key, detail, values


@dataclass
class RowError:
    """What is wrong with a row, worded in the reader's language when shown (node/staff/web.py): a message of
    the staff catalogue (``import.err.<key>``) with its values, or a schema ``issue`` worded as the form words
    it; ``detail`` the technical text behind it (a parser's message), shown on request."""

    column: str  # the CSV column (dotted path) or JSON member the error is about; "" for the row
    key: str
    values: dict[str, Any] = field(default_factory=dict)
    detail: str = ""
    issue: Issue | None = None


@dataclass
class Row:
    """One record of a file: where it is (row 1 is the first record), what it says, what is wrong."""

    number: int
    source_id: str
    kind: str
    record_id: str | None
    body: dict[str, Any] | None
    errors: list[RowError] = field(default_factory=list)


@dataclass(frozen=True)
class ExportItem:
    source_id: str
    record_id: str
    kind: str
    body: dict[str, Any]


def detect_format(name: str, data: bytes) -> str:
    """``csv`` or ``jsonl`` from the file name, else from the first character."""
    lower = name.lower()
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if lower.endswith(".csv"):
        return "csv"
    return "jsonl" if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{" else "csv"


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise FileFormatError("not-utf8", f"{e.reason} at byte {e.start}", byte=e.start) from e


def read_rows(data: bytes, fmt: str, resolver: Resolver, kinds: Iterable[str]) -> list[Row]:
    """Every record of a file, each with the errors found reading it (schema errors come later).

    Raises:
        FileFormatError: the file cannot be read at all.
    """
    if fmt == "csv":
        return read_csv(data, resolver, kinds)
    if fmt == "jsonl":
        return read_jsonl(data, kinds)
    raise FileFormatError("unknown-format", f"format {fmt!r}: csv or jsonl")


def _check(row: Row, kinds: Iterable[str]) -> Row:
    if not row.source_id.strip():
        row.errors.append(RowError("source_id", "source-id-required"))
    elif len(row.source_id) > MAX_SOURCE_ID:
        row.errors.append(RowError("source_id", "source-id-too-long", {"max": MAX_SOURCE_ID}))
    if row.kind not in set(kinds):
        row.errors.append(RowError("kind", "kind-unknown", {"kinds": sorted(kinds)}))
    return row


def read_csv(data: bytes, resolver: Resolver, kinds: Iterable[str]) -> list[Row]:
    kinds = list(kinds)
    reader = csv.reader(io.StringIO(_text(data), newline=""))
    try:
        header = next(reader)
    except StopIteration as e:
        raise FileFormatError("csv-empty") from e
    except csv.Error as e:
        raise FileFormatError("csv-header-unreadable", str(e)) from e
    header = [h.strip() for h in header]
    if "source_id" not in header or "kind" not in header:
        raise FileFormatError("csv-header-columns")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise FileFormatError("csv-header-duplicates", columns=dupes)
    rows: list[Row] = []
    number = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            number += 1
            rows.append(Row(number, "", "", None, None, [RowError("", "row-unreadable", detail=str(e))]))
            continue
        if not any(c.strip() for c in cells):
            continue  # a blank line
        number += 1
        values = dict(zip(header, cells, strict=False))
        row = Row(number, values.get("source_id", "").strip(), values.get("kind", "").strip(),
                  values.get("record_id", "").strip() or None, None)
        if len(cells) > len(header):
            row.errors.append(RowError("", "row-too-many-cells", {"cells": len(cells), "columns": len(header)}))
        flat = {k: v for k, v in values.items() if k not in RESERVED}
        if _check(row, kinds).kind in kinds:
            row.body = unflatten(flat, resolver, resolver.root(row.kind))
        rows.append(row)
    return rows


def read_jsonl(data: bytes, kinds: Iterable[str]) -> list[Row]:
    kinds = list(kinds)
    rows: list[Row] = []
    number = 0
    for line in _text(data).splitlines():
        if not line.strip():
            continue
        number += 1
        try:
            obj = json.loads(line)
        except ValueError as e:
            rows.append(Row(number, "", "", None, None, [RowError("", "line-not-json", detail=str(e))]))
            continue
        if not isinstance(obj, dict):
            rows.append(Row(number, "", "", None, None, [RowError("", "line-not-object")]))
            continue
        source_id, kind, record_id, body = obj.get("source_id"), obj.get("kind"), obj.get("record_id"), obj.get("body")
        row = Row(number, source_id if isinstance(source_id, str) else "", kind if isinstance(kind, str) else "",
                  record_id if isinstance(record_id, str) and record_id else None, None)
        extra = sorted(set(obj) - {*RESERVED, "body"})
        if extra:
            row.errors.append(RowError(extra[0], "line-unknown-members", {"names": extra}))
        if not isinstance(body, dict):
            row.errors.append(RowError("body", "line-body-not-object"))
        else:
            row.body = body
        rows.append(_check(row, kinds))
    return rows


# -- export -------------------------------------------------------------------------------------------------


def write_csv(items: Sequence[ExportItem], order: Callable[[str], Any] | None = None) -> str:
    """Items as CSV: the reserved columns, then every body path any item has (in ``order``, else sorted)."""
    flats = [flatten(i.body) for i in items]
    paths = sorted({p for f in flats for p in f}, key=order or (lambda p: p))
    out = io.StringIO(newline="")
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow([*RESERVED, *paths])
    for item, flat in zip(items, flats, strict=True):
        w.writerow([item.source_id, item.kind, item.record_id, *(flat.get(p, "") for p in paths)])
    return out.getvalue()


def write_jsonl(items: Sequence[ExportItem]) -> str:
    return "".join(json.dumps({"source_id": i.source_id, "kind": i.kind, "record_id": i.record_id, "body": i.body},
                              ensure_ascii=False, separators=(",", ":")) + "\n" for i in items)
