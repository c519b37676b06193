"""Property-based tests of the running ingest API, generated from its own OpenAPI document by
schemathesis: for every route, hundreds of generated requests, both schema-valid (bodies
from the contract's JSON Schema, arbitrary NDJSON and CSV text) and schema-breaking (wrong
types, odd parameters and headers), must never get a
5xx, and every response must match the documented status codes, content types and schemas.
At least 1,000 requests in all (counted and asserted)."""

from __future__ import annotations

import collections
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from test_api import KEY, api_server
from weir.api import keys

MIN_REQUESTS = 1000
# Not applicable by design, so not checked: the contract's SQL rules (e.g. product events need
# product fields) are beyond what its JSON Schema says, so a schema-valid body can rightly get
# 422; and ``?mode=lenient`` accepts records that break the schema (they are quarantined).
EXCLUDED_CHECKS = [
    schemathesis.checks.positive_data_acceptance,
    schemathesis.checks.negative_data_rejection,
]


@schemathesis.serializer("application/x-ndjson", "text/csv")
def _text(ctx: object, value: object) -> bytes:
    return value.encode() if isinstance(value, str) else str(value).encode()


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory, kinesis_endpoint: str) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("api-properties")
    env = {
        **os.environ,
        "WEIR_STATE_DIR": str(folder),
        "WEIR_KINESIS_STREAM_PREFIX": f"prop{uuid.uuid4().hex[:8]}-",
        "WEIR_API_KEY_HASHES": keys.key_hash(KEY),
        "WEIR_LOG": "error",
    }
    with api_server(env, Path(folder) / "api.log") as (url, _):
        yield url


@pytest.fixture(scope="module")
def api_schema(api_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{api_url}/openapi.json")


@pytest.mark.slow
def test_no_5xx_and_every_response_as_documented(api_schema: schemathesis.BaseSchema) -> None:
    requests: collections.Counter[str] = collections.Counter()
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 5, [op.label for op in operations]
    runs = [
        (operation, mode)
        for operation in operations
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    ]
    for operation, mode in runs:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=300,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def call(case: schemathesis.Case) -> None:
            response = case.call_and_validate(
                headers={"Authorization": f"Bearer {KEY}"}, excluded_checks=EXCLUDED_CHECKS
            )
            requests[case.operation.label] += 1
            assert response.status_code < 500, response.text

        try:
            call()
        except Unsatisfiable:
            # Nothing schema-breaking can be sent to a route without parameters or body.
            assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
    print(f"schemathesis requests: {sum(requests.values())} {dict(requests)}")
    assert sum(requests.values()) >= MIN_REQUESTS, dict(requests)
