"""Forms from the JSON Schemas (node/staff/forms.py): widgets, the way back to a body, errors in plain words, and a
new schema version rendered by the same templates."""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from typing import Any

import pytest

from federation.protocol.schemas import SCHEMA_ROOT, SchemaSet, default_schemas
from federation.server.ui.i18n import Catalog
from federation.server.ui.templates import template_env
from node.staff.forms import FormBuilder, Names, flatten, from_local, label, plain_message, to_local
from node.staff.web import CATALOG, DOMAIN, TEMPLATES
from tests.support.factories import example_bodies

KINDS = ["cultural-event", "capacity-programme"]


@pytest.fixture(scope="module")
def builder() -> FormBuilder:
    return FormBuilder(default_schemas())


@cache
def catalog() -> Catalog:
    return Catalog(CATALOG, DOMAIN)


def names(lang: str = "en") -> Names:
    return Names(lang, catalog().gettext(lang), catalog().translator(lang).ngettext)


def as_post(builder: FormBuilder, kind: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    """What a browser posts for a body shown in the form: date-times as local times in the record's zone,
    multiple choices as repeated names, a licence as the radio chosen (or "other" and the address typed), a
    recurrence as the builder's inputs."""
    form = builder.build(kind, body, [], builder.langs_of(kind, body), names())
    pairs: list[tuple[str, str]] = []
    for top in form.fields:
        for f in top.walk():
            if f.widget == "langmap":
                pairs += [(i["name"], i["value"]) for i in f.inputs]
            elif f.widget in ("checkboxes", "countries"):
                pairs += [(f.path, v) for v in f.value]
            elif f.widget == "checkbox":
                pairs += [(f.path, "true")] if f.value else []
            elif f.widget == "licence":
                pairs += [(f.path, "other" if f.extra["other"] else f.value)] if f.value else []
                pairs.append((f.path + "._other", f.extra["typed"]))
            elif f.widget == "recurrence":
                r = f.extra
                pairs += [(f"{f.path}.{k}", r[k.lstrip("_")]) for k in
                          ("_was", "_freq", "_interval", "_monthday", "_until", "_count", "_rule")]
                pairs += [(f.path + "._byday", d) for d in r["days"]]
            elif f.widget not in ("group", "repeat", "list"):
                pairs.append((f.path, f.value))
    return pairs


class TestRoundTrip:
    @pytest.mark.parametrize("kind", KINDS)
    def test_every_example_survives_the_form(self, builder: FormBuilder, kind: str) -> None:
        """Each valid example, shown in the form and posted back unchanged, is the same body (dates, numbers,
        booleans, language maps, repeated groups, multiple choices)."""
        for body in example_bodies(kind):
            assert builder.parse(kind, as_post(builder, kind, body)) == body

    @pytest.mark.parametrize("kind", KINDS)
    def test_flatten_then_unflatten_is_identity(self, builder: FormBuilder, kind: str) -> None:
        root = builder.resolver.root(kind)
        from node.staff.forms import unflatten

        for body in example_bodies(kind):
            assert unflatten(flatten(body), builder.resolver, root) == body

    def test_removed_and_blank_items_are_left_out(self, builder: FormBuilder) -> None:
        post = [("organizers.0.name.en", "A"), ("organizers.1.name.en", "B"), ("organizers.1._remove", "1"),
                ("organizers.2.name.en", ""), ("tags.0", ""), ("tags.1", "music"), ("csrf_token", "x"),
                ("_action", "save")]
        assert builder.parse("cultural-event", post) == {"organizers": [{"name": {"en": "A"}}], "tags": ["music"]}

    def test_text_that_is_not_a_number_stays_text_for_the_schema_to_name(self, builder: FormBuilder) -> None:
        body = builder.parse("capacity-programme", [("seats", "twenty"), ("venue.geo.lat", "25.36"),
                                                    ("venue.geo.lon", "nan")])
        assert body == {"seats": "twenty", "venue": {"geo": {"lat": 25.36, "lon": "nan"}}}
        assert builder.parse("capacity-programme", [("venue.geo.lon", "1e999")]) == {"venue": {"geo": {"lon": "1e999"}}}
        issue = next(i for i in default_schemas().validate("capacity-programme", body) if i.pointer == "/seats")
        assert plain_message(issue, names(), builder.resolver.root("capacity-programme"),
                             builder.resolver) == "Seats has the wrong kind of value."


class TestTimes:
    @pytest.mark.parametrize(("local", "zone", "rfc3339"), [
        ("2026-07-01T19:00", "Europe/Budapest", "2026-07-01T19:00:00+02:00"),  # summer time
        ("2026-01-10T19:00", "Europe/Budapest", "2026-01-10T19:00:00+01:00"),
        ("2026-05-01T19:00", "Asia/Qatar", "2026-05-01T19:00:00+03:00"),
        ("2026-05-01T19:00:30", "Asia/Seoul", "2026-05-01T19:00:30+09:00"),
        ("2026-05-01T19:00", "UTC", "2026-05-01T19:00:00Z"),
    ])
    def test_local_time_in_the_records_zone(self, local: str, zone: str, rfc3339: str) -> None:
        assert from_local(local, zone) == rfc3339
        assert to_local(rfc3339, zone) == local

    def test_without_a_known_zone_the_text_is_left_for_the_schema(self) -> None:
        assert from_local("2026-05-01T19:00", None) == "2026-05-01T19:00"
        assert from_local("2026-05-01T19:00", "Mars/Olympus") == "2026-05-01T19:00"

    def test_stored_time_shown_in_the_events_zone(self) -> None:
        assert to_local("2026-05-01T16:00:00Z", "Asia/Qatar") == "2026-05-01T19:00"


class TestWidgets:
    def test_widgets_follow_the_schema(self, builder: FormBuilder) -> None:
        body = example_bodies("cultural-event")[0]
        form = builder.build("cultural-event", body, [], ["en", "ar"], names())
        by_path = {f.path: f for top in form.fields for f in top.walk()}
        assert by_path["title"].widget == "langmap" and not by_path["title"].long
        assert by_path["description"].widget == "langmap" and by_path["description"].long
        ar = next(i for i in by_path["title"].inputs if i["lang"] == "ar")
        assert (ar["dir"], ar["name"], ar["value"]) == ("rtl", "title.ar", body["title"]["ar"])
        assert by_path["event_type"].widget == "select"
        assert by_path["start"].widget == "datetime" and by_path["start"].value == "2020-01-20T09:00"
        assert by_path["timezone"].widget == "timezone" and ("Asia/Qatar", "Qatar") in by_path["timezone"].options
        assert by_path["venue"].widget == "group" and by_path["venue.country"].widget == "country"
        assert ("QA", "Qatar") in by_path["venue.country"].options
        assert by_path["organizers"].widget == "repeat"
        assert len(by_path["organizers"].children) == len(body["organizers"]) + 1  # one blank to add another
        assert by_path["participating_countries"].widget == "countries"
        assert by_path["audience"].widget == "checkboxes"
        assert by_path["tags"].widget == "list"
        assert by_path["rights"].widget == "licence" and by_path["recurrence"].widget == "recurrence"

    def test_country_and_language_names_in_arabic(self, builder: FormBuilder) -> None:
        form = builder.build("cultural-event", {}, [], ["ar"], names("ar"))
        country = next(f for top in form.fields for f in top.walk() if f.path == "venue.country")
        assert ("QA", "قطر") in country.options
        assert form.fields[0].inputs[0]["language"] == "العربية (ar)"
        assert form.fields[0].label == "العنوان"

    def test_new_schema_version_needs_no_template_change(self, builder: FormBuilder) -> None:
        """A v2 of the event schema with new fields of every shape gets a form from the same templates:
        a new language map with tabs, a new enum, a new repeated group, a new boolean; field names in words."""
        docs = {sid: copy.deepcopy(doc) for sid, doc in default_schemas().documents.items()}
        v2 = copy.deepcopy(docs["https://schemas.ipdn.network/cultural-event/v1"])
        v2["$id"] = "https://schemas.ipdn.network/cultural-event/v2"
        common = "https://schemas.ipdn.network/common/v1#/$defs/"
        v2["properties"].update({
            "accessibility_notes": {"description": "Access for disabled visitors.", "$ref": common + "langMap"},
            "dress_code": {"enum": ["casual", "formal"]},
            "speakers": {"type": "array", "items": {"type": "object", "additionalProperties": False,
                                                      "properties": {"name": {"$ref": common + "langMapShort"},
                                                                     "country": {"$ref": common + "countryCode"}}}},
            "free_entry": {"type": "boolean"},
        })
        schemas = SchemaSet({**docs, v2["$id"]: v2})
        b2 = FormBuilder(schemas)
        body = {"accessibility_notes": {"ar": "مدخل للكراسي المتحركة"}, "dress_code": "formal",
                "speakers": [{"name": {"en": "Kim"}, "country": "KR"}], "free_entry": True}
        form = b2.build("cultural-event", body, schemas.validate("cultural-event", body), ["en", "ar"], names())
        assert form.schema_id.endswith("/v2")
        html = template_env(TEMPLATES, Catalog(CATALOG, DOMAIN)).get_template("form.html").render(
            lang="en", dir="ltr", names=names(), user=None, csrf="t", here="/", query={},
            draft=type("D", (), {"id": "d1", "kind": "cultural-event", "record_id": None, "body": body})(),
            form=form, preview=[], suggested=["ar"], saved=False)
        assert re.search(r'name="accessibility_notes.ar"[^>]*lang="ar" dir="rtl"[^>]*>مدخل', html)
        assert '<option value="formal" selected>Formal</option>' in html
        assert 'name="speakers.0.name.en" value="Kim"' in html and 'name="speakers.1.name.en"' in html
        assert '<option value="KR" selected>' in html
        assert 'name="free_entry" value="true" checked' in html
        assert "Accessibility notes" in html and "Speakers 1" in html
        assert b2.parse("cultural-event", as_post(b2, "cultural-event", body)) == body


class TestPlainWords:
    @pytest.mark.parametrize("kind", KINDS)
    def test_every_invalid_example_names_its_field(self, builder: FormBuilder, kind: str) -> None:
        """Every issue of every invalid example becomes a sentence naming a field in words (no pointer, no
        schema jargon), in English and in Arabic."""
        folder = SCHEMA_ROOT / "examples" / kind / "invalid"
        root = builder.resolver.root(kind)
        for path in sorted(folder.glob("*.json")):
            if path.name == "expected.json":
                continue
            body = json.loads(path.read_text(encoding="utf-8"))
            issues = default_schemas().validate(kind, body)
            assert issues, path.name
            for issue in issues:
                for lang in ("en", "ar"):
                    text = plain_message(issue, names(lang), root, builder.resolver)
                    assert "/" not in text.split(" ")[0] and "{" not in text, (path.name, text)
                    assert "is not valid under" not in text and "required property" not in text, (path.name, text)

    @pytest.mark.parametrize(("pointer", "keyword", "message", "expected"), [
        ("", "required", "'title' is a required property", "Title is required."),
        ("/organizers/0", "required", "'name' is a required property", "Organizers 1 › Name is required."),
        ("/organizers/0/name/ar", "pattern", "x", "Organizers 1 › Name (Arabic) must be one line and not blank."),
        ("/title", "minProperties", "x", "Title: write it in at least one language."),
        ("/venue/country", "pattern", "x", "Venue › Country: choose a country from the list."),
        ("/end", "rule:end-before-start", "x", "End is before the start."),
        ("/timezone", "rule:unknown-timezone", "x", "Time zone: choose a time zone from the list."),
        ("/contact", "anyOf", "x", "Contact: give an e-mail address, a telephone number or a web address."),
        ("/online_url", "pattern", "x", "Online address must be a web address starting with http:// or https://."),
    ])
    def test_messages(self, builder: FormBuilder, pointer: str, keyword: str, message: str, expected: str) -> None:
        from federation.protocol.schemas import Issue

        root = builder.resolver.root("cultural-event")
        assert plain_message(Issue(pointer, keyword, message), names(), root, builder.resolver) == expected

    def test_label_in_arabic(self, builder: FormBuilder) -> None:
        root = builder.resolver.root("cultural-event")
        expected = "الجهات المنظمة 2 › الاسم (الإنجليزية)"
        assert label("organizers.1.name.en", names("ar"), builder.resolver, root) == expected

