"""Shared pytest fixtures: sample shop events from weir.samples, in every input format, a
local Kinesis-API server (`kinesis_endpoint`), the alert receivers of
tests/support/receivers.py (`receiver`, `mailbox`, `closed_port`), and the dashboard's
lake of tests/support/dashboard.py (`dashboard_lake`)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from weir import samples

pytest_plugins = ["tests.support.receivers", "tests.support.dashboard"]

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
    os.environ["WEIR_STATE_DIR"] = str(tmp_path_factory.mktemp("weir-state"))
    os.environ.pop("WEIR_CONFIG", None)


@pytest.fixture(scope="session")
def kinesis_endpoint() -> Iterator[str]:
    """One kinesalite server for the session (free port, throwaway data); its URL, also set
    as ``WEIR_KINESIS_ENDPOINT`` while it runs so ``weir.config.kinesis_settings()`` finds it.
    The variable's previous value comes back afterwards."""
    from tests.support.servers import kinesis_server

    previous = os.environ.get("WEIR_KINESIS_ENDPOINT")
    with kinesis_server() as endpoint:
        os.environ["WEIR_KINESIS_ENDPOINT"] = endpoint
        try:
            yield endpoint
        finally:
            if previous is None:
                os.environ.pop("WEIR_KINESIS_ENDPOINT", None)
            else:
                os.environ["WEIR_KINESIS_ENDPOINT"] = previous


@pytest.fixture
def running_consumer() -> type:
    """``RunningConsumer`` (tests/support/stream_helpers.py): ``with running_consumer(**options):``
    runs ``weir.stream.consume`` in a thread for the block."""
    from tests.support.stream_helpers import RunningConsumer

    return RunningConsumer
