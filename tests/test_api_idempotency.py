"""Idempotent retries (``Idempotency-Key``) against the running app (``weir serve`` in
subprocesses) and the real local Kinesis-API server: a repeated request gets the first job
back (200, same id and counts) and nothing is published twice, also after SIGKILL and a
restart of the API between the two, and with two API processes racing; the same key with
another body is a 422; a refused request gives its key up; claims expire after the window.
What was published is read from the stream itself; what was stored, from the lake.

    .venv/bin/python -m pytest tests/test_api_idempotency.py
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx

import weir
from tests.support.stream_helpers import wait_final
from tests.test_api import KEY, api_server, assert_problem, ndjson
from tests.test_api import api as api  # fixtures
from tests.test_api import api_env as api_env
from tests.test_api_refusals import stream_jobs
from weir import samples

HEADERS = {"content-type": "application/x-ndjson"}


def send(url_or_client, body: bytes, key: str | None, **params: str) -> httpx.Response:
    headers = dict(HEADERS, **({"Idempotency-Key": key} if key else {}))
    if isinstance(url_or_client, httpx.Client):
        return url_or_client.post(
            "/v1/ingest/shop_events", content=body, headers=headers, params=params
        )
    return httpx.post(
        f"{url_or_client}/v1/ingest/shop_events",
        content=body,
        headers={"Authorization": f"Bearer {KEY}", **headers},
        params=params,
        timeout=30,
    )


def test_a_repeated_request_returns_the_first_job_and_publishes_once(
    api, kinesis_endpoint, running_consumer
) -> None:
    events = samples.generate_shop_events(30, invalid_fraction=0.2, seed=41)
    body = ndjson(events)
    first = send(api, body, "order-1", mode="lenient")
    assert first.status_code == 202, first.text
    again = send(api, body, "order-1", mode="lenient")
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    for field in ("job_id", "dataset", "mode", "received", "valid", "rejected", "status_url"):
        assert again.json()[field] == first.json()[field], field
    assert (first.json()["valid"], first.json()["rejected"]) == (24, 6)
    # the same key with another body (or mode) is refused; nothing of it is published
    other = send(api, ndjson(events[:10]), "order-1", mode="lenient")
    body_problem = assert_problem(other, 422)
    assert body_problem["type"].endswith("idempotency-key-reused")
    assert_problem(send(api, body, "order-1", mode="strict"), 422)
    # another key is another request
    others = samples.generate_shop_events(5, seed=141)
    second = send(api, ndjson(others), "order-2", mode="lenient")
    assert second.status_code == 202 and second.json()["job_id"] != first.json()["job_id"]
    published = stream_jobs(kinesis_endpoint)
    assert published == {first.json()["job_id"]: 30, second.json()["job_id"]: 5}

    with running_consumer():
        wait_final([first.json()["job_id"], second.json()["job_id"]])
    ids = weir.lake.read("raw.shop_events").column("event_id").to_pylist()
    assert len(ids) == len(set(ids)) == 24 + 5
    replay = send(api, body, "order-1", mode="lenient")
    assert replay.status_code == 200 and replay.json()["status"] == "partially_rejected"


def test_a_retry_after_the_api_was_killed_gets_the_same_job(
    api_env, tmp_path: Path, kinesis_endpoint
) -> None:
    body = ndjson(samples.generate_shop_events(12, seed=42))
    with api_server(api_env, tmp_path / "api.log") as (url, process):
        first = send(url, body, "retry-after-crash")
        assert first.status_code == 202, first.text
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    with api_server(api_env, tmp_path / "api.log") as (url, _):
        again = send(url, body, "retry-after-crash")
        assert again.status_code == 200, again.text
        assert again.json()["job_id"] == first.json()["job_id"]
    assert stream_jobs(kinesis_endpoint) == {first.json()["job_id"]: 12}


def test_two_api_processes_racing_on_one_key_publish_once(
    api_env, tmp_path: Path, kinesis_endpoint
) -> None:
    body = ndjson(samples.generate_shop_events(200, seed=43))
    with (
        api_server(api_env, tmp_path / "a.log") as (a, _),
        api_server(api_env, tmp_path / "b.log") as (b, _),
    ):
        answers: dict[str, list[httpx.Response]] = {a: [], b: []}
        start = threading.Barrier(8)

        def client(url: str) -> None:
            start.wait()
            answers[url].append(send(url, body, "race"))

        threads = [threading.Thread(target=client, args=((a, b)[i % 2],)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        every = answers[a] + answers[b]
        statuses = sorted(r.status_code for r in every)
        assert statuses.count(202) == 1, statuses
        assert set(statuses) <= {200, 202, 409}, [r.text for r in every]
        for conflict in (r for r in every if r.status_code == 409):
            assert conflict.headers["retry-after"] == "1"
        job_id = next(r for r in every if r.status_code == 202).json()["job_id"]
        assert all(r.json()["job_id"] == job_id for r in every if r.status_code == 200)
        # once the first is published, both processes answer with its job
        assert send(a, body, "race").json()["job_id"] == job_id
        assert send(b, body, "race").json()["job_id"] == job_id
    assert stream_jobs(kinesis_endpoint) == {job_id: 200}


def test_a_refused_request_gives_its_key_up_and_claims_expire(
    api_env, tmp_path: Path, kinesis_endpoint
) -> None:
    events = samples.generate_shop_events(10, invalid_fraction=0.3, seed=44)
    env = dict(api_env, WEIR_API_IDEMPOTENCY_WINDOW_HOURS=str(1.5 / 3600))  # 1.5 s
    with api_server(env, tmp_path / "api.log") as (url, _):
        # strict refuses the invalid records: no job, the key is free again
        assert_problem(send(url, ndjson(events), "k1"), 422)
        assert_problem(send(url, ndjson(events), "k1"), 422)  # not a replay: checked again
        fixed = send(url, ndjson(events), "k1", mode="lenient")
        assert fixed.status_code == 202, fixed.text
        assert send(url, ndjson(events), "k1", mode="lenient").status_code == 200
        # after the window the key is free: the same body is a new request
        time.sleep(1.6)
        later = send(url, ndjson(events), "k1", mode="lenient")
        assert later.status_code == 202 and later.json()["job_id"] != fixed.json()["job_id"]
        bad = assert_problem(send(url, ndjson(events), "has space"), 422)
        assert "Idempotency-Key" in bad["detail"]
    assert set(stream_jobs(kinesis_endpoint)) == {fixed.json()["job_id"], later.json()["job_id"]}


def test_the_openapi_document_describes_the_header(api) -> None:
    operation = api.get("/openapi.json").json()["paths"]["/v1/ingest/shop_events"]["post"]
    header = next(p for p in operation["parameters"] if p["name"] == "Idempotency-Key")
    assert header["in"] == "header" and "422" in header["description"]
    assert {"200", "202", "409", "429", "403"} <= set(operation["responses"])
