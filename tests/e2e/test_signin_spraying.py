"""Password spraying at a real node process's ``/author/signin`` (issue 16 item 6): the node throttles the
sprayer's address, a person elsewhere still signs in, and ``/healthz`` stays responsive even when the spray
comes from a new address each time (only the bounded password pool stands then).

The bound here is generous, for a noisy 2-core CI; the benchmark (``python -m tests.bench signin``) measures the
figures docs/BENCHMARKS.md gives.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bench.common import percentile
from tests.support.harness import IPDN, Federation
from tests.support.spray import measure

PASSWORD = "correct horse battery staple"
PROXIED = {"IPDN_NODE_TRUSTED_PROXIES": "127.0.0.1, ::1"}  # the sprayer says its address in X-Forwarded-For


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Federation]:
    f = Federation(tmp_path, ["QA"]).init()
    subprocess.run([IPDN, "node", "user", "add", "--dir", str(tmp_path / "QA"), "amal", "--password-stdin"],
                   input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    try:
        f.start("hub")
        f.start("QA", env=PROXIED)
        yield f
    finally:
        f.close()


async def test_password_spraying_from_one_address_throttled_and_user_elsewhere_signs_in(node: Federation) -> None:
    got = await measure(node.url("QA"), 4.0, sprayers=8, user=("amal", PASSWORD))
    # The address's budget of failures, then refused before any hashing.
    assert got.statuses[401] <= 20 < got.statuses[429], got.statuses  # checks in flight count as spent
    assert got.user_sign_ins and all(status == 303 for status, _ in got.user_sign_ins)
    assert percentile(got.healthz, 99) < 0.25


async def test_password_spraying_from_many_addresses_leaves_the_node_responsive(node: Federation) -> None:
    got = await measure(node.url("QA"), 6.0, sprayers=8, spread=True)
    assert got.statuses[401] > 0 and set(got.statuses) <= {401, 503}  # no address limit; the pool refuses fast
    assert percentile(got.healthz, 99) < 0.25, sorted(got.healthz)[-5:]
