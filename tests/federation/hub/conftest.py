"""The hub's test fixtures (a hub directory with a genesis registry, its founding members), for every test here."""

from tests.federation.hub.test_hub_app import hub_dir, members

__all__ = ["hub_dir", "members"]
