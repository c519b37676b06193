"""Shared pytest fixtures: sample shop events from weir.samples, in every input format."""

from __future__ import annotations

import pytest

from weir import samples

GOOD_EVENT = {
    "event_id": "0b5e6f5c-3d0c-4c1b-9a47-0d6c6b0e5a11",
    "event_type": "purchase",
    "event_time": "2026-11-27T01:30:00+02:00",
    "user_id": "u_42",
    "user_email": "Ann.Lee@Example.COM",
    "user_country": "GB",
    "user_plan": "pro",
    "session_id": "s-1",
    "product_id": "p_7",
    "product_name": "Mug",
    "product_category": "Kitchen",
    "unit_price": 9.5,
    "quantity": 2,
    "currency": "EUR",
    "properties": {"referrer": "newsletter", "device": "ios"},
}


@pytest.fixture
def good_event() -> dict:
    return dict(GOOD_EVENT)


@pytest.fixture(scope="session")
def sample_events() -> list[dict]:
    return samples.generate_shop_events(2_000, invalid_fraction=0.05, seed=3)


@pytest.fixture(autouse=True, scope="session")
def _private_lake_state(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests that use the default lake settings get a private state folder, never the
    checkout's ``.weir``."""
    import os

    os.environ["WEIR_STATE_DIR"] = str(tmp_path_factory.mktemp("weir-state"))
    os.environ.pop("WEIR_CONFIG", None)
