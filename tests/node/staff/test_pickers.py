"""The authoring form's pickers (issue 18): the licence picker and the node's preset (node/staff/licences.py), the
recurrence builder, its RRULE and its words in English and Arabic (node/staff/recurrence.py), time zones grouped
by country with the node's first (node/staff/zones.py), and the preview's values in words."""

from __future__ import annotations

import dataclasses
import time
import zoneinfo
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from dateutil.rrule import rrulestr

from federation.protocol.errors import ConfigError
from federation.protocol.schemas import Issue, default_schemas
from federation.server.ui.i18n import Catalog
from federation.server.ui.templates import template_env
from node.config import NodeConfig
from node.staff import licences, recurrence, zones
from node.staff.forms import Field, FormBuilder, Names, plain_message
from node.staff.web import CATALOG, DOMAIN, TEMPLATES, _preview
from tests.support.factories import example_bodies

CC_BY = "https://creativecommons.org/licenses/by/4.0/"
CC_BY_NC = "https://creativecommons.org/licenses/by-nc/4.0/"
NOC_US = "http://rightsstatements.org/vocab/NoC-US/1.0/"
_CATALOG = Catalog(CATALOG, DOMAIN)
ISOLATES = str.maketrans("", "", "\u2066\u2067\u2068\u2069")  # the bidi isolates around an Arabic message's values


def names(lang: str) -> Names:
    return Names(lang, _CATALOG.gettext(lang), _CATALOG.translator(lang).ngettext)


def fields(builder: FormBuilder, body: dict[str, Any], lang: str = "en",
           kind: str = "cultural-event") -> dict[str, Field]:
    form = builder.build(kind, body, [], ["en"], names(lang))
    return {f.path: f for top in form.fields for f in top.walk()}


def render(builder: FormBuilder, body: dict[str, Any], lang: str = "en") -> str:
    form = builder.build("cultural-event", body, [], ["en"], names(lang))
    draft = type("D", (), {"id": "d1", "kind": "cultural-event", "record_id": None, "body": body})()
    return template_env(TEMPLATES, _CATALOG).get_template("form.html").render(
        lang=lang, dir="rtl" if lang == "ar" else "ltr", names=names(lang), user=None, csrf="t", here="/", query={},
        draft=draft, form=form, preview=[], suggested=[], saved=False)


class TestLicencePicker:
    def test_a_new_record_starts_with_the_nodes_preset_and_a_picture_with_none(self) -> None:
        """The operator's preset (node.toml ``default_licence``) is chosen on a new record; a picture's rights
        are not (a blank picture with a licence would be posted as a picture)."""
        builder = FormBuilder(default_schemas(), licences.preset_uri("by-nc"), "QA")
        by_path = fields(builder, {})
        assert by_path["rights"].value == CC_BY_NC
        assert by_path["images.0.rights"].value == ""
        assert fields(FormBuilder(default_schemas()), {})["rights"].value == ""  # no preset: staff choose
        html = render(builder, {})
        assert f'name="rights" value="{CC_BY_NC}" checked' in html
        assert html.count(" checked") == 1

    def test_each_licence_in_plain_words_in_english_and_arabic(self) -> None:
        builder = FormBuilder(default_schemas(), CC_BY, "QA")
        for lang, words in (("en", "Anyone may use and change it, naming us as the source"),
                            ("ar", "يجوز لأي أحد استخدامه وتعديله مع ذكرنا مصدرًا")):
            options = fields(builder, {}, lang)["rights"].extra["choices"]
            assert [uri for uri, _, _ in options] == [lc.uri for lc in licences.LICENCES]
            assert (CC_BY, words, "CC BY 4.0") in options
            assert len({text for _, text, _ in options}) == len(licences.LICENCES)
        assert {lc.key for lc in licences.LICENCES} == {"cc0", "by", "by-sa", "by-nc", "by-nd", "by-nc-sa",
                                                        "by-nc-nd", "all-rights-reserved"}
        issues = default_schemas().validate("cultural-event", {"rights": licences.BY_KEY["all-rights-reserved"].uri})
        assert not [i for i in issues if i.pointer == "/rights"]  # every URI offered is one the schema takes

    def test_the_choice_writes_its_uri_and_another_address_is_kept(self) -> None:
        builder = FormBuilder(default_schemas(), CC_BY, "QA")
        assert builder.parse("cultural-event", [("rights", CC_BY_NC), ("rights._other", "")]) == {"rights": CC_BY_NC}
        assert builder.parse("cultural-event", [("rights", "other"), ("rights._other", NOC_US)]) == {"rights": NOC_US}
        assert builder.parse("cultural-event", [("rights", CC_BY), ("rights._other", NOC_US)]) == {"rights": CC_BY}
        shown = fields(builder, {"rights": NOC_US})["rights"]  # a record under another statement stays editable
        assert (shown.extra["other"], shown.extra["typed"]) == (True, NOC_US)
        html = render(builder, {"rights": NOC_US})
        assert 'value="other" checked' in html and f'name="rights._other" value="{NOC_US}"' in html

    def test_the_operator_names_a_licence_the_picker_has(self, config: NodeConfig) -> None:
        assert config.default_licence == "by"
        assert dataclasses.replace(config, default_licence="").default_licence == ""
        for bad in ("cc-by", "CC BY 4.0", CC_BY):
            with pytest.raises(ConfigError, match="default_licence"):
                dataclasses.replace(config, default_licence=bad)


# -- the recurrence builder ------------------------------------------------------------------------------------

SAYABLE = ["FREQ=WEEKLY;COUNT=6;BYDAY=TH", "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE", "FREQ=MONTHLY;BYMONTHDAY=15",
           "FREQ=MONTHLY;UNTIL=20270331T205959Z;INTERVAL=3;BYMONTHDAY=1", "FREQ=WEEKLY", "FREQ=MONTHLY;COUNT=12"]
UNSAYABLE = ["FREQ=DAILY;COUNT=10", "FREQ=MONTHLY;BYDAY=2TU", "FREQ=WEEKLY;BYDAY=1MO", "FREQ=YEARLY;BYMONTH=3",
             "FREQ=WEEKLY;WKST=SU;BYDAY=MO", "FREQ=MONTHLY;BYMONTHDAY=-1", "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9"]


def controls(rule: str, zone: str | None = "Asia/Qatar") -> dict[str, list[str]]:
    """The builder's inputs as the form shows ``rule`` and a browser posts them back untouched."""
    r = FormBuilder._recurrence(rule, zone, names("en"))
    posted = {f"_{k}": [r[k]] for k in ("was", "freq", "interval", "monthday", "until", "count", "rule")}
    return {**posted, "_byday": list(r["days"])}


class TestRecurrenceBuilder:
    @pytest.mark.parametrize("rule", SAYABLE)
    def test_a_rule_the_builder_says_comes_back_the_same(self, rule: str) -> None:
        rec = recurrence.read(rule, "Asia/Qatar")
        assert rec is not None
        assert recurrence.write(rec, "Asia/Qatar") == rule  # icalendar's order, which these are written in
        assert recurrence.from_form(controls(rule), "Asia/Qatar") == rule
        assert recurrence.problem(rule, "2026-05-07T19:00:00+03:00", "Asia/Qatar") is None

    def test_a_rule_written_in_another_order_is_kept_as_written(self) -> None:
        rule = "FREQ=WEEKLY;BYDAY=TH;COUNT=6"  # the same as SAYABLE[0], in another order: opening and saving
        assert recurrence.from_form(controls(rule), "Asia/Qatar") == rule  # changes nothing
        changed = {**controls(rule), "_count": ["8"]}
        assert recurrence.from_form(changed, "Asia/Qatar") == "FREQ=WEEKLY;COUNT=8;BYDAY=TH"

    @pytest.mark.parametrize("rule", UNSAYABLE)
    def test_a_rule_the_builder_cannot_say_is_edited_as_text(self, rule: str) -> None:
        assert recurrence.read(rule, "Asia/Qatar") is None
        shown = controls(rule)
        assert shown["_freq"] == ["custom"] and shown["_rule"] == [rule]
        assert recurrence.from_form(shown, "Asia/Qatar") == rule
        assert recurrence.from_form({**shown, "_rule": ["FREQ=DAILY;COUNT=3"]}, "Asia/Qatar") == "FREQ=DAILY;COUNT=3"
        builder = FormBuilder(default_schemas())
        body = {"timezone": "Asia/Qatar", "recurrence": rule}
        posted = [("timezone", "Asia/Qatar")] + [(f"recurrence.{k}", v) for k, vs in shown.items() for v in vs]
        assert builder.parse("cultural-event", posted) == body
        assert f'name="recurrence._rule" value="{rule}"' in render(builder, body)

    def test_the_builder_writes_the_rrule_a_calendar_expands(self) -> None:
        """Weekly on Monday and Thursday until 31 March 2027 in Doha: the last day is the end of that day there, in
        UTC (RFC 5545 beside a start with a zone); python-dateutil expands it to the expected days."""
        form = {"_freq": ["weekly"], "_interval": ["1"], "_byday": ["TH", "MO"], "_until": ["2027-03-31"],
                "_count": [""], "_monthday": ["12"]}
        rule = recurrence.from_form(form, "Asia/Qatar")
        assert rule == "FREQ=WEEKLY;UNTIL=20270331T205959Z;BYDAY=MO,TH"  # the day of the month is for monthly only
        assert recurrence.from_form(form, None) == "FREQ=WEEKLY;UNTIL=20270331;BYDAY=MO,TH"  # no zone yet
        start = datetime(2027, 3, 1, 19, 0, tzinfo=zoneinfo.ZoneInfo("Asia/Qatar"))
        days = [d.date().isoformat() for d in rrulestr(rule, dtstart=start)]
        assert days[:3] == ["2027-03-01", "2027-03-04", "2027-03-08"] and days[-1] == "2027-03-29"
        assert len(days) == 9
        monthly = recurrence.from_form({"_freq": ["monthly"], "_interval": ["2"], "_monthday": ["15"],
                                        "_count": ["6"], "_byday": ["MO"]}, "Asia/Qatar")
        assert monthly == "FREQ=MONTHLY;COUNT=6;INTERVAL=2;BYMONTHDAY=15"
        assert recurrence.from_form({"_freq": [""], "_count": ["6"]}, "Asia/Qatar") == ""  # does not repeat
        assert recurrence.from_form({"_freq": ["weekly"], "_count": ["1.5"]}, None) == "FREQ=WEEKLY;COUNT=1.5"

    @pytest.mark.parametrize(("rule", "en", "ar"), [
        ("FREQ=WEEKLY;COUNT=6;BYDAY=TH", "Every week on Thursday, 6 times in all", "كل أسبوع، أيام الخميس، 6 مرات"),
        ("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE", "Every 2 weeks on Monday and Wednesday",
         "كل أسبوعين، أيام الاثنين والأربعاء"),
        ("FREQ=WEEKLY;INTERVAL=3;BYDAY=SU,MO,TU", "Every 3 weeks on Monday, Tuesday, and Sunday",
         "كل 3 أسابيع، أيام الاثنين والثلاثاء والأحد"),
        ("FREQ=MONTHLY;INTERVAL=3;BYMONTHDAY=15", "Every 3 months on day 15", "كل 3 أشهر، في اليوم 15"),
        ("FREQ=MONTHLY;INTERVAL=11", "Every 11 months", "كل 11 شهرًا"),
        ("FREQ=MONTHLY;COUNT=2", "Every month, 2 times in all", "كل شهر، مرتين"),
        ("FREQ=WEEKLY;COUNT=1", "Every week, 1 time in all", "كل أسبوع، مرة واحدة"),
        ("FREQ=WEEKLY;COUNT=12", "Every week, 12 times in all", "كل أسبوع، 12 مرةً"),
        ("FREQ=WEEKLY;UNTIL=20270331T205959Z", "Every week, until Wednesday, March 31, 2027",
         "كل أسبوع، حتى الأربعاء، 31 مارس 2027"),
    ])
    def test_the_rule_in_words_in_english_and_arabic(self, rule: str, en: str, ar: str) -> None:
        """CLDR plural forms from the catalogue (Arabic: one, two, few, many), day names and dates by CLDR."""
        assert recurrence.words(rule, names("en"), "Asia/Qatar") == en
        assert (recurrence.words(rule, names("ar"), "Asia/Qatar") or "").translate(ISOLATES) == ar
        assert recurrence.words("FREQ=DAILY", names("en"), None) is None  # the builder cannot say it

    def test_the_form_shows_the_saved_rule_in_words(self) -> None:
        body = {"timezone": "Asia/Qatar", "recurrence": "FREQ=WEEKLY;COUNT=6;BYDAY=TH"}
        builder = FormBuilder(default_schemas())
        assert "Every week on Thursday, 6 times in all" in render(builder, body)
        html = render(builder, body, "ar")
        assert "كل أسبوع، أيام" in html and 'value="TH" checked' in html and "الخميس" in html
        assert '<option value="weekly" selected>' in html

    @pytest.mark.parametrize(("rule", "wrong"), [
        ("FREQ=WEEKLY;BYDAY=XX", "unreadable"), ("FREQ=WEEKLY;INTERVAL=0", "unreadable"),
        ("FREQ=WEEKLY;COUNT=0", "unreadable"), ("FREQ=WEEKLY;FOO=1", "unreadable"),
        ("FREQ=WEEKLY;COUNT=1.5", "unreadable"),
        ("FREQ=WEEKLY;UNTIL=20270331T205959Z;COUNT=3", "until-and-count"),
        ("FREQ=MONTHLY;BYMONTHDAY=40", "unreadable"), ("FREQ=YEARLY;BYMONTH=13", "unreadable"),
        ("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=0", "unreadable"),
        ("FREQ=WEEKLY;UNTIL=20250101T000000Z", "never"),  # its last day is before the start
        ("FREQ=WEEKLY;UNTIL=20270331", None), ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", None),
        ("FREQ=MONTHLY;BYMONTHDAY=-1", None), ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", None),
        ("FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30", None),
    ])
    def test_a_rule_is_checked_with_icalendar_and_dateutil_at_once(self, rule: str, wrong: str | None) -> None:
        """Read by both libraries, each number in its range; a rule that never falls on a day (the 30th of
        February) is not searched for: dateutil would step to the year 9999 (seconds for a form)."""
        began = time.monotonic()
        assert recurrence.problem(rule, "2026-05-07T19:00:00+03:00", "Asia/Qatar") == wrong
        assert time.monotonic() - began < 0.5

    def test_the_form_names_a_rule_problem_in_plain_words(self) -> None:
        builder = FormBuilder(default_schemas())
        body = {"start": "2026-05-07T19:00:00+03:00", "timezone": "Asia/Qatar",
                "recurrence": "FREQ=WEEKLY;UNTIL=20270331T205959Z;COUNT=3"}
        issues = builder.rules("cultural-event", body)
        assert [(i.pointer, i.keyword) for i in issues] == [("/recurrence", "rule:recurrence-until-and-count")]
        root = builder.resolver.root("cultural-event")
        assert plain_message(issues[0], names("en"), root, builder.resolver) == (
            "Repeats: give a last day or a number of times, not both.")
        ar = plain_message(Issue("/recurrence", "rule:recurrence-never", "x"), names("ar"), root, builder.resolver)
        assert ar.translate(ISOLATES) == "التكرار: آخر يوم قبل البداية."


# -- time zones --------------------------------------------------------------------------------------------------


class TestTimeZones:
    def test_grouped_by_country_with_the_nodes_first(self) -> None:
        groups = zones.grouped("en", "QA")
        assert (groups[0].country, groups[0].name, groups[0].zones) == ("QA", "Qatar", (("Asia/Qatar", "Qatar"),))
        by_code = {g.country: g for g in groups}
        assert ("America/Los_Angeles", "Los Angeles") in by_code["US"].zones and by_code["US"].name == "United States"
        assert by_code["TR"].zones == (("Europe/Istanbul", "Istanbul"),)
        assert by_code["KW"].zones == (("Asia/Kuwait", "Kuwait"),)  # a small country's alias is its own entry
        rest = [g.name for g in groups[1:]]
        assert rest.index("Åland Islands") < rest.index("Albania")  # alphabetical, marks aside
        assert zones.grouped("en", "KR")[0].name == "South Korea"
        offered = [z for g in groups for z, _ in g.zones]
        assert len(offered) == len(set(offered)) > 300
        for zone in offered:
            zoneinfo.ZoneInfo(zone)  # every zone offered loads
        assert "US/Eastern" not in offered and "Etc/GMT+3" not in offered  # no aliases or zones of no country

    def test_country_and_city_names_in_arabic(self) -> None:
        groups = zones.grouped("ar", "QA")
        assert (groups[0].name, groups[0].zones) == ("قطر", (("Asia/Qatar", "قطر"),))
        by_code = {g.country: g for g in groups}
        assert by_code["TR"].zones == (("Europe/Istanbul", "إسطنبول"),) and by_code["KR"].name == "كوريا الجنوبية"

    def test_the_picker_groups_the_nodes_country_first_and_keeps_a_zone_it_does_not_offer(self) -> None:
        builder = FormBuilder(default_schemas(), None, "QA")
        tz = fields(builder, {})["timezone"]
        assert [name for name, _ in tz.extra["groups"]][:2] == ["Qatar", "Afghanistan"]
        assert tz.extra["groups"][-1] == ("Other", [("UTC", "UTC")])
        html = render(builder, {"timezone": "US/Eastern"})
        first = html.index("<optgroup")
        assert html.index('<optgroup label="Qatar">', first) == first
        assert '<option value="US/Eastern" selected>US/Eastern</option>' in html  # an old record stays as it was
        assert 'data-filter="Find a time zone (country or city)"' in html
        assert html.count("<optgroup") == len(tz.extra["groups"])


# -- the preview ---------------------------------------------------------------------------------------------------


def test_preview_says_every_value_in_the_pages_language() -> None:
    """The preview (and the record and confirmation pages) shows choices, countries, languages, the time zone, the
    licence and the recurrence in words, times in the event's zone with the zone named and the machine value kept
    for <time datetime>, a venue's texts with their own language and direction: no raw value, no ISO string."""
    body = {**example_bodies("cultural-event")[0], "recurrence": "FREQ=WEEKLY;COUNT=6;BYDAY=TH"}
    staff: Any = SimpleNamespace(forms=FormBuilder(default_schemas()))
    for lang, expected in (
        ("en", {"Type of event": "General assembly", "Start": "Monday, January 20, 2020",
                "Time zone": "Qatar Time (Asia/Qatar)", "Repeats": "Every week on Thursday, 6 times in all",
                "Rights statement": "Anyone may use and change it, naming us as the source (CC BY 4.0)"}),
        ("ar", {"نوع الفعالية": "جمعية عامة", "البداية": "الاثنين، 20 يناير 2020",
                "المنطقة الزمنية": "توقيت قطر (Asia/Qatar)", "التكرار": "كل أسبوع، أيام الخميس، 6 مرات",
                "بيان الحقوق": "يجوز لأي أحد استخدامه وتعديله مع ذكرنا مصدرًا (CC BY 4.0)"})):
        shown = {item["label"]: item for item in _preview(staff, "cultural-event", body, names(lang))}
        for label, words in expected.items():
            assert words in shown[label]["values"][0]["text"].translate(ISOLATES), (lang, label, shown[label])
        start = shown[list(expected)[1]]["values"][0]
        assert start["machine"] == "2020-01-20T09:00:00+03:00" and "(" in start["text"] and "T09" not in start["text"]
        texts = [v["text"] for item in shown.values() for v in item["values"]]
        assert not [t for t in texts if t in ("QA", "ar", "general-assembly", "diplomats", "Asia/Qatar")], texts
        venue = {v["label"]: v for v in shown[names(lang).field("venue")]["values"]}
        assert any(v.get("lang") == "ar" and v.get("dir") == "rtl" for v in venue.values())
    countries = {v["text"] for v in shown["الدول المشاركة"]["values"]}
    assert {"قطر", "تركيا", "كوريا الجنوبية"} <= countries
    assert {v["text"] for v in shown["لغات الفعالية"]["values"]} == {"العربية (ar)", "الإنجليزية (en)"}
