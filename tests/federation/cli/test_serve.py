"""``ipdn hub serve`` and ``ipdn node serve``: the application each hands aiohttp (``web.run_app`` captured, nothing
served)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from federation.hub.app import create_app as hub_app
from federation.hub.config import HubConfig
from federation.server.aio import keep_for_life
from node.app import create_app as node_app
from node.config import load_config
from tests.support.cli import ipdn, run


def _made(role: str, tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> web.Application:
    """``ipdn ROLE init`` in tmp_path/ROLE; the application ``create_app`` alone makes of it."""
    key, reg = files
    if role == "hub":
        assert run(capsys, "keygen", "--member", "QA", "--out", str(tmp_path / "keys"))[0] == 0
        assert run(capsys, "hub", "init", "--dir", str(tmp_path / "hub"), "--url", "http://127.0.0.1:8440",
                   "--founder", str(tmp_path / "keys" / "QA.pub.jwk.json"))[0] == 0
        return hub_app(HubConfig.load(tmp_path / "hub"))
    assert ipdn("node", "init", "--dir", str(tmp_path / "node"), "--member", "QA", "--key", str(key),
                "--registry", str(reg)) == 0
    return node_app(load_config(tmp_path / "node", env={}))


@pytest.mark.parametrize("role", ["hub", "node"])
def test_serve_freezes_the_heap_once_its_services_started(role: str, tmp_path: Path, files: tuple[Path, Path],
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The served application freezes the heap (keep_for_life) at startup, after its cleanup context started the
    store and the services; an application made by ``create_app`` alone (a test's) does not."""
    alone = _made(role, tmp_path, files, capsys)
    served: list[web.Application] = []

    def capture(app: web.Application, **_: Any) -> None:
        served.append(app)

    monkeypatch.setattr(web, "run_app", capture)
    assert ipdn(role, "serve", "--dir", str(tmp_path / role)) == 0
    handlers = list(served[0].on_startup)
    assert handlers.index(keep_for_life) > handlers.index(served[0].cleanup_ctx._on_startup)
    assert keep_for_life not in alone.on_startup
