"""What every server-rendered page shares: the strict security headers, and the browser helper the pages'
accessibility tests use."""

from aiohttp import web

from federation.server.ui.templates import PAGE_CSP, secure_headers


def test_pages_refuse_inline_script_and_framing() -> None:
    resp = secure_headers(web.Response(text="<p>x</p>"))
    assert resp.headers["Content-Security-Policy"] == PAGE_CSP and "script-src 'self'" in PAGE_CSP
    assert "'unsafe-inline'" not in PAGE_CSP and "frame-ancestors 'none'" in PAGE_CSP
    assert resp.headers["X-Frame-Options"] == "DENY" and resp.headers["Cache-Control"] == "no-store"


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
