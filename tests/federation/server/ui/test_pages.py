import json
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

from federation.server.ui.pages import (
    Catalog,
    SessionCodec,
    SignInThrottle,
    check_csrf,
    choose_language,
    direction,
    hash_password,
    verify_password,
)
from federation.server.web import Problem

FAST = {"n": 2**10, "r": 8, "p": 1}  # the production cost is for stored accounts, not for tests


def test_password_hash_verifies_only_the_right_password_and_carries_parameters() -> None:
    encoded = hash_password("correct horse", **FAST)
    assert encoded.startswith("scrypt$1024$8$1$") and "correct horse" not in encoded
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct hors", encoded)
    assert hash_password("correct horse", **FAST) != encoded  # salted


def test_default_password_cost_is_memory_hard() -> None:
    assert hash_password("x").split("$")[1:4] == ["32768", "8", "1"]


@pytest.mark.parametrize("garbage", ["", "plain", "bcrypt$1$2$3$4$5", "scrypt$x$8$1$AA$AA"])
def test_malformed_stored_hash_never_verifies(garbage: str) -> None:
    assert not verify_password("anything", garbage)


def test_session_round_trip_and_expiry() -> None:
    codec = SessionCodec(b"k" * 32, ttl=60)
    value, session = codec.issue("amal", now=1000.0)
    assert codec.open(value, now=1059.0) == session
    assert codec.open(value, now=1061.0) is None


def test_forged_session_cookie_is_refused() -> None:
    codec = SessionCodec(b"k" * 32)
    value, _ = codec.issue("staff", now=0.0)
    claims, mac = value.split(".")
    forged = json.dumps({"sub": "admin", "csrf": "x", "exp": 1e12}).encode()
    import base64
    forged_claims = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    assert codec.open(f"{forged_claims}.{mac}", now=1.0) is None
    assert SessionCodec(b"other" * 8).open(value, now=1.0) is None
    for junk in (None, "", "a.b.c", "nodot", f"{claims}.AAAA"):
        assert codec.open(junk, now=1.0) is None


def _request(headers: dict[str, str], path: str = "/x") -> object:
    return make_mocked_request("POST", path, headers={"Host": "node.example", **headers})


def test_cross_site_request_forgery_without_token_is_refused() -> None:
    _, session = SessionCodec(b"k" * 32).issue("s", now=0.0)
    with pytest.raises(Problem) as e:
        check_csrf(_request({}), session, {})  # type: ignore[arg-type]
    assert e.value.status == 403
    with pytest.raises(Problem):
        check_csrf(_request({}), session, {"csrf_token": "wrong"})  # type: ignore[arg-type]
    check_csrf(_request({}), session, {"csrf_token": session.csrf})  # type: ignore[arg-type]
    check_csrf(_request({"X-CSRF-Token": session.csrf}), session)  # type: ignore[arg-type]


def test_cross_site_request_forgery_from_other_origin_is_refused_even_with_token() -> None:
    _, session = SessionCodec(b"k" * 32).issue("s", now=0.0)
    with pytest.raises(Problem):
        check_csrf(_request({"Origin": "https://evil.example"}), session,  # type: ignore[arg-type]
                   {"csrf_token": session.csrf})
    check_csrf(_request({"Origin": "http://node.example"}), session, {"csrf_token": session.csrf})  # type: ignore[arg-type]


def test_password_guessing_locks_the_account_then_success_unlocks() -> None:
    t = SignInThrottle(max_failures=3, window=60, lock_for=300)
    for i in range(2):
        t.failed("amal", now=float(i))
    assert t.locked_until("amal", now=2.0) is None
    t.failed("amal", now=2.0)
    assert t.locked_until("amal", now=3.0) == 302.0
    assert t.locked_until("other", now=3.0) is None
    assert t.locked_until("amal", now=303.0) is None
    t.succeeded("amal")
    assert t.locked_until("amal", now=3.0) is None


def test_failures_outside_the_window_do_not_count() -> None:
    t = SignInThrottle(max_failures=2, window=10, lock_for=100)
    t.failed("a", now=0.0)
    t.failed("a", now=20.0)
    assert t.locked_until("a", now=21.0) is None


@pytest.mark.parametrize(("headers", "query", "expected"), [
    ({"Accept-Language": "ar-QA,ar;q=0.9,en;q=0.5"}, "", "ar"),
    ({"Accept-Language": "ko-KR, en;q=0.4, ar;q=0.3"}, "", "en"),
    ({"Accept-Language": "fr"}, "", "en"),
    ({"Accept-Language": "en;q=0.2, ar;q=0.8"}, "", "ar"),
    ({"Accept-Language": "ar"}, "?lang=en", "en"),
    ({"Cookie": "lang=ar"}, "", "ar"),
    ({"Accept-Language": "ar;q=0"}, "", "en"),
])
def test_choose_language(headers: dict[str, str], query: str, expected: str) -> None:
    req = make_mocked_request("GET", "/" + query, headers=headers)
    assert choose_language(req, ["en", "ar"]) == expected


@pytest.mark.parametrize(("tag", "expected"), [("ar", "rtl"), ("ar-QA", "rtl"), ("en", "ltr"), ("fa_IR", "rtl"),
                                               ("az-Arab", "rtl"), ("ku-Latn", "ltr"), ("he", "rtl"), ("ko", "ltr")])
def test_direction(tag: str, expected: str) -> None:
    assert direction(tag) == expected


def test_catalog_falls_back_to_english_and_names_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"hello": {"en": "Hello {name}", "ar": "مرحبا {name}"}, "only": {"en": "Only"}}))
    cat = Catalog(path)
    assert cat.gettext("ar")("hello", name="أمل") == "مرحبا أمل"
    assert cat.gettext("ar")("only") == "Only"
    with pytest.raises(KeyError, match="nope"):
        cat.gettext("en")("nope")


def test_browser_helper_drives_debian_chromium_and_axe_finds_a_serious_violation() -> None:
    from tests.support.browser import axe_serious, chromium

    with chromium() as browser:
        page = browser.new_page()
        page.set_content('<html lang="en"><head><title>t</title></head><body><main>'
                         '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="></main></body></html>')
        names = {v["id"] for v in axe_serious(page)}
        page.set_content('<html lang="en"><head><title>t</title></head><body><main><h1>fine</h1></main></body></html>')
        assert axe_serious(page) == []
    assert "image-alt" in names
