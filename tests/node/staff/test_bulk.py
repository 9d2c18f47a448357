"""Bulk import and export (node/staff/bulk.py, node/staff/service.py) on SQLite and PostgreSQL, and through the CLI."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from federation.cli.main import main
from federation.server.ui.i18n import Catalog
from node.records.service import NodeService
from node.staff import bulk
from node.staff.service import ALL_OR_NOTHING, DRY_RUN, VALID_ONLY, StaffService
from node.staff.web import CATALOG, DOMAIN
from tests.support import paths
from tests.support.factories import Member, example_bodies

ROOT = paths.ROOT
SAMPLE = paths.IMPORT_SAMPLE


@pytest.fixture
def staff(service: NodeService) -> StaffService:
    return StaffService(service, Catalog(CATALOG, DOMAIN))


def csv_bytes(rows: list[dict[str, str]]) -> bytes:
    header = list(dict.fromkeys(k for r in rows for k in r))
    out = io.StringIO()
    w = csv.DictWriter(out, header)
    w.writeheader()
    w.writerows(rows)
    return out.getvalue().encode()


class TestReading:
    def test_csv_columns_become_typed_body_fields(self, staff: StaffService) -> None:
        rows = staff.read(csv_bytes([{"source_id": "p1", "kind": "capacity-programme", "title.en": "Course",
                                      "title.ar": "دورة", "seats": "20", "venue.geo.lat": "25.36",
                                      "topics.0": "media", "topics.1": "", "topics.2": "diplomacy"}]), "csv")
        assert rows[0].body == {"title": {"en": "Course", "ar": "دورة"}, "seats": 20, "venue": {"geo": {"lat": 25.36}},
                                "topics": ["media", "diplomacy"]}
        assert (rows[0].number, rows[0].source_id, rows[0].kind, rows[0].errors) == (1, "p1", "capacity-programme", [])

    def test_rows_without_source_id_or_kind_are_errors_by_column(self, staff: StaffService) -> None:
        rows = staff.read(csv_bytes([{"source_id": "", "kind": "cultural-event", "title.en": "x"},
                                     {"source_id": "a", "kind": "concert", "title.en": "x"}]), "csv")
        assert [e.column for e in rows[0].errors] == ["source_id"]
        assert [e.column for e in rows[1].errors] == ["kind"]

    def test_file_level_problems_are_refused_whole(self, staff: StaffService) -> None:
        for data, fmt in ((b"", "csv"), (b"title.en\nx\n", "csv"), (b"\xff\xfe", "csv"), (b"x", "xml")):
            with pytest.raises(bulk.FileFormatError):
                staff.read(data, fmt)

    def test_jsonl_lines_and_their_errors(self, staff: StaffService) -> None:
        body = example_bodies("cultural-event")[0]
        data = (json.dumps({"source_id": "e1", "kind": "cultural-event", "body": body}) + "\n\nnot json\n[1]\n"
                + json.dumps({"source_id": "e2", "kind": "cultural-event", "body": "x", "extra": 1}) + "\n").encode()
        rows = staff.read(data, "jsonl")
        assert [r.number for r in rows] == [1, 2, 3, 4]
        assert rows[0].body == body and rows[0].errors == []
        assert [rows[1].errors[0].key, rows[2].errors[0].key] == ["line-not-json", "line-not-object"]
        assert "Expecting value" in rows[1].errors[0].detail  # the parser's words, behind "Technical details"
        worded = staff.row_error(rows[2].errors[0], staff.names("en"))
        assert worded == "This line must be one JSON object, written between { and }."
        assert {e.column for e in rows[3].errors} == {"extra", "body"}

    def test_format_from_name_or_content(self) -> None:
        assert bulk.detect_format("a.CSV", b"{") == "csv"
        assert bulk.detect_format("a.jsonl", b"x") == "jsonl"
        assert bulk.detect_format("upload", b'\xef\xbb\xbf {"a":1}') == "jsonl"


class TestImport:
    async def test_dry_run_reports_every_row_and_publishes_nothing(self, staff: StaffService) -> None:
        good = {"source_id": "k1", "kind": "cultural-event", **_event_columns()}
        bad = {**good, "source_id": "k2", "organizers.0.name.en": "", "organizers.0.country": "QA",
               "venue.country": "qa"}
        report = await staff.run_import(staff.read(csv_bytes([good, bad]), "csv"), DRY_RUN, "amal")
        assert [p.action for p in report.rows] == ["create", "invalid"]
        errors = {(e.column, staff.row_error(e, staff.names("en"))) for e in report.rows[1].errors}
        assert ("venue.country", "Venue › Country: choose a country from the list.") in errors
        assert ("organizers.0.name", "Organizers 1 › Name is required.") in errors
        assert not report.published and (await staff.node.counts()).own == 0

    async def test_file_with_errors_publishes_nothing_unless_valid_rows_only(self, staff: StaffService) -> None:
        good = {"source_id": "k1", "kind": "cultural-event", **_event_columns()}
        bad = {**good, "source_id": "k2", "title.en": ""}
        bad["title.ar"] = ""
        rows = staff.read(csv_bytes([good, bad]), "csv")
        refused = await staff.run_import(rows, ALL_OR_NOTHING, "amal")
        assert not refused.published and (await staff.node.counts()).own == 0
        done = await staff.run_import(rows, VALID_ONLY, "amal")
        assert [p.action for p in done.rows] == ["created", "skipped"]
        assert (await staff.node.counts()).own == 1
        history = await staff.history(done.rows[0].record_id or "")
        assert (history[0].username, history[0].via) == ("amal", "import")

    async def test_reimporting_the_same_file_changes_nothing_and_a_changed_row_is_an_update(
            self, staff: StaffService) -> None:
        rows = staff.read(SAMPLE.read_bytes(), "csv")
        first = await staff.run_import(rows, ALL_OR_NOTHING, "amal")
        assert [p.action for p in first.rows] == ["created", "created"]
        seq = (await staff.node.store.heads(["QA"]))["QA"].seq
        again = await staff.run_import(staff.read(SAMPLE.read_bytes(), "csv"), ALL_OR_NOTHING, "amal")
        assert [p.action for p in again.rows] == ["unchanged", "unchanged"]
        assert (await staff.node.store.heads(["QA"]))["QA"].seq == seq  # nothing signed
        changed = SAMPLE.read_bytes().replace(b"Korean film week", b"Korean film fortnight")
        third = await staff.run_import(staff.read(changed, "csv"), ALL_OR_NOTHING, "amal")
        assert [p.action for p in third.rows] == ["unchanged", "updated"]
        assert third.rows[1].record_id == first.rows[1].record_id and third.rows[1].version == 2
        assert (await staff.history(first.rows[1].record_id or ""))[0].changed == ["title.en"]

    async def test_duplicate_source_id_in_one_file_is_an_error(self, staff: StaffService) -> None:
        row = {"source_id": "same", "kind": "cultural-event", **_event_columns()}
        report = await staff.run_import(staff.read(csv_bytes([row, row]), "csv"), DRY_RUN, "amal")
        assert [p.action for p in report.rows] == ["create", "invalid"]

    async def test_row_naming_another_members_record_is_refused(self, staff: StaffService) -> None:
        row = {"source_id": "x", "kind": "cultural-event", "record_id": "KR:abc", **_event_columns()}
        report = await staff.run_import(staff.read(csv_bytes([row]), "csv"), VALID_ONLY, "amal")
        assert report.rows[0].action == "skipped" and report.rows[0].errors[0].column == "record_id"

    @pytest.mark.parametrize("fmt", ["csv", "jsonl"])
    async def test_export_then_reimport_changes_nothing(self, staff: StaffService, fmt: str) -> None:
        """Every example of both kinds, published, exported and imported again: every row unchanged."""
        for kind in ("cultural-event", "capacity-programme"):
            for body in example_bodies(kind):
                await staff.node.create(kind, body)
        await staff.run_import(staff.read(SAMPLE.read_bytes(), "csv"), ALL_OR_NOTHING, "amal")
        items = await staff.export()
        assert len(items) == 12 and {i.source_id for i in items} >= {"katara-2026-001", "katara-2026-002"}
        text = bulk.write_csv(items, staff.column_order) if fmt == "csv" else bulk.write_jsonl(items)
        seq = (await staff.node.store.heads(["QA"]))["QA"].seq
        report = await staff.run_import(staff.read(text.encode(), fmt), ALL_OR_NOTHING, "amal")
        assert {p.action for p in report.rows} == {"unchanged"}, [(p.row.number, p.errors) for p in report.rows]
        assert (await staff.node.store.heads(["QA"]))["QA"].seq == seq
        if fmt == "csv":
            assert text.splitlines()[0].startswith("source_id,kind,record_id,title.")

    async def test_progress_is_reported_per_phase(self, staff: StaffService) -> None:
        seen: list[tuple[str, int, int]] = []
        await staff.run_import(staff.read(SAMPLE.read_bytes(), "csv"), ALL_OR_NOTHING, "amal",
                               lambda *a: seen.append(a))
        assert seen == [("checked", 1, 2), ("checked", 2, 2), ("published", 1, 2), ("published", 2, 2)]


def _event_columns() -> dict[str, str]:
    return {"title.en": "Calligraphy evening", "title.ar": "أمسية الخط العربي", "event_type": "workshop",
            "status": "scheduled", "start": "2026-05-01T19:00:00+03:00", "end": "2026-05-01T21:00:00+03:00",
            "timezone": "Asia/Qatar", "attendance_mode": "offline", "venue.name.en": "Katara", "venue.city.en": "Doha",
            "venue.country": "QA", "organizers.0.name.en": "Katara",
            "rights": "https://creativecommons.org/licenses/by/4.0/"}


class TestCli:
    @pytest.fixture
    def node_dir(self, tmp_path: Path, qa: Member, registry: Any) -> Path:
        key, reg = tmp_path / "QA.key.pem", tmp_path / "registry.json"
        qa.key.save(key)
        reg.write_bytes(registry.to_bytes())
        assert main(["node", "init", "--dir", str(tmp_path / "qa"), "--member", "QA", "--key", str(key),
                     "--registry", str(reg)]) == 0
        return tmp_path / "qa"

    def test_user_add_list_disable(self, node_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
        monkeypatch.setattr("sys.stdin", io.StringIO("a long enough passphrase\n"))
        assert main(["node", "user", "add", "--dir", str(node_dir), "amal", "--name", "Amal",
                     "--password-stdin"]) == 0
        monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
        assert main(["node", "user", "add", "--dir", str(node_dir), "omar", "--password-stdin"]) == 2
        assert main(["node", "user", "disable", "--dir", str(node_dir), "amal"]) == 0
        assert main(["node", "user", "disable", "--dir", str(node_dir), "nobody"]) == 2
        capsys.readouterr()
        assert main(["node", "user", "list", "--dir", str(node_dir)]) == 0
        out = capsys.readouterr().out
        assert out.startswith("amal\tdisabled\t") and "omar" not in out
        assert "scrypt" not in out

    def test_user_totp_enrol_prints_the_authenticator_uri_and_remove(self, node_dir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
        monkeypatch.setattr("sys.stdin", io.StringIO("a long enough passphrase\n"))
        assert main(["node", "user", "add", "--dir", str(node_dir), "amal", "--password-stdin"]) == 0
        capsys.readouterr()
        assert main(["node", "user", "totp", "--dir", str(node_dir), "amal"]) == 0
        out = capsys.readouterr().out
        secret = out.split("secret: ", 1)[1].split()[0]
        assert f"uri: otpauth://totp/IPDN%20node%20QA:amal?secret={secret}&issuer=IPDN%20node%20QA" in out
        assert main(["node", "user", "totp", "--dir", str(node_dir), "nobody"]) == 2
        assert main(["node", "user", "totp", "--dir", str(node_dir), "amal", "--remove"]) == 0
        assert "password alone" in capsys.readouterr().out

    def test_import_dry_run_import_reimport_export(self, node_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
        bad = tmp_path / "bad.csv"
        bad.write_text(SAMPLE.read_text(encoding="utf-8").replace("Asia/Qatar,offline", "Asia/Qatar,by-boat"))
        assert main(["node", "import", "--dir", str(node_dir), str(bad), "--dry-run"]) == 1
        out = capsys.readouterr()
        assert "row 1\tcolumn attendance_mode\tHow people attend: choose one of the options." in out.out
        assert "checked 2/2 rows" in out.err
        assert main(["node", "import", "--dir", str(node_dir), str(bad)]) == 1
        assert "nothing was published" in capsys.readouterr().err
        assert main(["node", "import", "--dir", str(node_dir), str(SAMPLE)]) == 0
        assert "2 created" in capsys.readouterr().out
        assert main(["node", "import", "--dir", str(node_dir), str(SAMPLE)]) == 0
        assert "2 unchanged" in capsys.readouterr().out
        for fmt in ("csv", "jsonl"):
            out_file = tmp_path / f"out.{fmt}"
            assert main(["node", "export", "--dir", str(node_dir), "--format", fmt, "--out", str(out_file)]) == 0
            assert main(["node", "import", "--dir", str(node_dir), str(out_file)]) == 0
            assert "2 unchanged" in capsys.readouterr().out
        shutil.rmtree(node_dir)
