"""What a refused ingest request leaves behind, against the running app (``weir serve``) and
real local Kinesis-API servers: no record on the stream (every shard read from TRIM_HORIZON
with boto3) and no job in the metastore's jobs table (``weir_jobs``, read with sqlite3 from
the SQLite file ``weir.config.lake_settings()`` names). One accepted request in each test
shows that the stream and the table are read where the API writes."""

from __future__ import annotations

import collections
import shutil
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.support.servers import free_port
from tests.test_api import KEY, api_server, assert_problem, ndjson, post, stream_segments
from tests.test_api import api as api  # fixtures
from tests.test_api import api_env as api_env
from weir import config, samples
from weir.api import keys
from weir.stack import LocalKinesis


def jobs_table() -> list[dict]:
    """Every row of the jobs table, oldest first (no Python API lists jobs: ``weir.stream.job``
    needs an id, and a refused request has none)."""
    path = config.lake_settings().sqlite_path()
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM weir_jobs ORDER BY created_at_ms, job_id").fetchall()
    return [dict(row) for row in rows]


def stream_jobs(endpoint: str) -> dict[str, int]:
    """Events on the shop_events stream, by job id."""
    stream = config.kinesis_settings().stream_name("shop_events")
    events: collections.Counter[str] = collections.Counter()
    for job_id, count in stream_segments(endpoint, stream):
        events[job_id] += count
    return dict(events)


def test_refused_requests_publish_and_register_nothing(api, kinesis_endpoint):
    """400, 401, 413, 415 and 422 (strict mode, invalid records, in every format; a bad
    ``mode`` with valid records): nothing on the stream, no job; the accepted request sent
    after them (so anything they had queued would be out before its 202) is all there is."""
    valid = samples.generate_shop_events(3, seed=11)
    invalid = samples.generate_shop_events(12, invalid_fraction=0.5, seed=12)
    too_big = ndjson(valid) * (2 * 1024 * 1024 // len(ndjson(valid)) + 1)
    wrong_key = {"Authorization": f"Bearer {keys.new_key()}"}
    refused = [
        (422, ndjson(invalid), "application/x-ndjson", {}, {}),
        (422, samples.to_json_array(invalid), "application/json", {}, {}),
        (422, samples.to_csv(invalid), "text/csv", {"mode": "strict"}, {}),
        (422, ndjson(valid), "application/x-ndjson", {"mode": "fast"}, {}),
        (400, ndjson(valid) + b'{"event_id": \n', "application/x-ndjson", {}, {}),
        (401, ndjson(valid), "application/x-ndjson", {}, wrong_key),
        (413, too_big, "application/x-ndjson", {}, {}),
        (415, ndjson(valid), "text/plain", {}, {}),
    ]
    for status, body, content_type, params, headers in refused:
        response = api.post(
            "/v1/ingest/shop_events",
            content=body,
            params=params,
            headers={"content-type": content_type, **headers},
        )
        assert_problem(response, status)
    control = post(api, ndjson(valid), "application/x-ndjson")
    assert control.status_code == 202, control.text
    job_id = control.json()["job_id"]

    assert stream_jobs(kinesis_endpoint) == {job_id: 3}
    assert [(j["job_id"], j["status"], j["received"]) for j in jobs_table()] == [
        (job_id, "published", 3)
    ]


@pytest.mark.slow
def test_kinesis_down_publishes_nothing_and_registers_only_failed_jobs(api_env, tmp_path):
    """Requests while Kinesis is down get 503; once it is up, the API publishes again without
    a restart, and the stream holds only the jobs accepted then (nothing of the refused ones
    was kept back and sent later). The jobs table holds a ``failed`` row for each refused
    request: the Rust ingest path registers a job before publishing it and marks it failed
    when publishing fails. No client ever got those ids."""
    folder = Path(tempfile.mkdtemp(prefix="weir-kinesis-down-"))
    kinesis = LocalKinesis(free_port(), folder / "data", folder / "kinesis.log")
    env = {**api_env, "WEIR_KINESIS_ENDPOINT": kinesis.endpoint}
    events = samples.generate_shop_events(5, seed=13)
    headers = {"Authorization": f"Bearer {KEY}"}
    try:
        with (
            api_server(env, tmp_path / "api.log") as (url, _),
            httpx.Client(base_url=url, headers=headers, timeout=60) as http,
        ):
            for body, content_type in (
                (ndjson(events[:2]), "application/x-ndjson"),
                (samples.to_csv(events[2:4]), "text/csv"),
            ):
                response = post(http, body, content_type)
                assert_problem(response, 503)
                assert response.headers["retry-after"] == "5"
            kinesis.start()
            accepted = post(http, ndjson(events[4:]), "application/x-ndjson")
            assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        assert stream_jobs(kinesis.endpoint) == {job_id: 1}
    finally:
        kinesis.stop()
        shutil.rmtree(folder, ignore_errors=True)
    *refused, last = jobs_table()
    assert (last["job_id"], last["status"], last["received"]) == (job_id, "published", 1)
    assert [(j["status"], j["received"], j["records"]) for j in refused] == [
        ("failed", 0, None)
    ] * 2
    assert all("Kinesis" in j["error"] for j in refused), refused
