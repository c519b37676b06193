"""The ingest API against the running app (``weir serve`` in a subprocess) with the real
local Kinesis-API server and a consumer: every status the API documents, a job followed from
202 to ``committed``, problem details everywhere, the OpenAPI document, and durability when
the API process is killed with SIGKILL under load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from servers import free_port, stop_process
from stream_helpers import wait_final
from weir import samples
from weir.api import keys

KEY = keys.new_key()


@contextmanager
def api_server(env: dict[str, str], log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """``weir serve`` on a free port; yields its URL and process, stops it on exit."""
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "weir.cli", "serve", "--port", str(port)],
            env=env,
            stderr=out,
            stdout=out,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"weir serve did not start: {log.read_text()[-2000:]}")
                time.sleep(0.1)
            yield url, process
        finally:
            stop_process(process)


@pytest.fixture
def api_env(tmp_path: Path, kinesis_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("WEIR_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("WEIR_KINESIS_STREAM_PREFIX", f"api{uuid.uuid4().hex[:8]}-")
    monkeypatch.setenv("WEIR_API_KEY_HASHES", keys.key_hash(KEY))
    monkeypatch.setenv("WEIR_API_MAX_BODY_BYTES", str(2 * 1024 * 1024))
    return dict(os.environ)


@pytest.fixture
def api(api_env: dict, tmp_path: Path) -> Iterator[httpx.Client]:
    with (
        api_server(api_env, tmp_path / "api.log") as (url, _),
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
        ) as client,
    ):
        yield client


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    assert "Traceback" not in response.text
    return body


def ndjson(events: list[dict]) -> bytes:
    return samples.to_ndjson(events)


def post(api: httpx.Client, body: bytes, content_type: str, **params: str) -> httpx.Response:
    return api.post(
        "/v1/ingest/shop_events",
        content=body,
        headers={"content-type": content_type},
        params=params,
    )


def test_health_is_open_and_readiness_checks_every_dependency(api):
    assert httpx.get(f"{api.base_url}/health").json()["status"] == "ok"
    ready = httpx.get(f"{api.base_url}/health/ready")
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"]) == {"kinesis", "metastore", "warehouse"}
    assert all(c["status"] == "ok" for c in ready.json()["checks"].values())


def test_keys_are_required_and_checked(api):
    events = ndjson(samples.generate_shop_events(1, seed=1))
    bare = httpx.post(
        f"{api.base_url}/v1/ingest/shop_events",
        content=events,
        headers={"content-type": "application/x-ndjson"},
    )
    assert "Bearer" in assert_problem(bare, 401)["detail"]
    assert bare.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.get(
        f"{api.base_url}/v1/jobs/{uuid.uuid4()}",
        headers={"Authorization": f"Bearer {keys.new_key()}"},
    )
    assert assert_problem(wrong, 401)["detail"] == "the API key is not valid"


def test_every_format_is_accepted_and_a_job_reaches_committed(api, running_consumer):
    events = samples.generate_shop_events(40, seed=2)
    bodies = [
        (json.dumps(events[0]).encode(), "application/json"),
        (samples.to_json_array(events[1:10]), "application/json; charset=utf-8"),
        (ndjson(events[10:30]), "application/x-ndjson"),
        (samples.to_csv(events[30:]), "text/csv"),
    ]
    accepted = []
    for body, content_type in bodies:
        response = post(api, body, content_type)
        assert response.status_code == 202, response.text
        accepted.append(response.json())
        assert response.headers["location"] == accepted[-1]["status_url"]
    assert [a["received"] for a in accepted] == [1, 9, 20, 10]
    assert api.get(accepted[0]["status_url"]).json()["status"] in ("published", "committed")
    with running_consumer():
        wait_final([a["job_id"] for a in accepted])
    for a in accepted:
        job = api.get(a["status_url"]).json()
        assert job["status"] == "committed", job
        assert job["valid"] == a["received"] and job["snapshot_ids"]


def test_strict_rejects_invalid_records_and_lenient_quarantines_them(api, running_consumer):
    events = samples.generate_shop_events(50, invalid_fraction=0.2, seed=3)
    strict = post(api, ndjson(events), "application/x-ndjson")
    body = assert_problem(strict, 422)
    assert body["violations"] and body["violations_total"] >= 10
    assert {"record_index", "field", "rule", "message"} <= set(body["violations"][0])
    lenient = post(api, ndjson(events), "application/x-ndjson", mode="lenient")
    assert lenient.status_code == 202, lenient.text
    counts = lenient.json()
    assert counts["valid"] + counts["rejected"] == 50 and counts["rejected"] == 10
    with running_consumer():
        job = wait_final([counts["job_id"]])[counts["job_id"]]
    assert job.status == "partially_rejected"
    assert (job.valid, job.rejected) == (counts["valid"], counts["rejected"])


def test_errors_are_problem_details(api):
    event = samples.generate_shop_events(1, seed=4)[0]
    broken = assert_problem(post(api, b'[{"event_id": "x",', "application/json"), 400)
    assert "line 1, column" in broken["detail"]
    assert "no records" in assert_problem(post(api, b"  ", "application/json"), 400)["detail"]
    unsupported = assert_problem(post(api, b"<a/>", "application/xml"), 415)
    assert "text/csv" in unsupported["supported"]
    missing = api.post(
        "/v1/ingest/nope", content=b"{}", headers={"content-type": "application/json"}
    )
    assert "shop_events" in assert_problem(missing, 404)["detail"]
    big = ndjson([event]) * (2 * 1024 * 1024 // len(ndjson([event])) + 1)
    assert "limit" in assert_problem(post(api, big, "application/x-ndjson"), 413)["detail"]
    assert_problem(api.get("/v1/jobs/not-a-uuid"), 422)
    assert_problem(api.get(f"/v1/jobs/{uuid.uuid4()}"), 404)
    assert_problem(api.get("/v1/nothing"), 404)
    assert_problem(post(api, ndjson([event]), "application/x-ndjson", mode="fast"), 422)


def test_kinesis_down_is_a_503_with_retry_after(api_env, tmp_path):
    env = {**api_env, "WEIR_KINESIS_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    with api_server(env, tmp_path / "api-down.log") as (url, _):
        headers = {"Authorization": f"Bearer {KEY}", "content-type": "application/x-ndjson"}
        event = ndjson(samples.generate_shop_events(1, seed=5))
        response = httpx.post(
            f"{url}/v1/ingest/shop_events", content=event, headers=headers, timeout=60
        )
        assert_problem(response, 503)
        assert response.headers["retry-after"] == "5"
        ready = httpx.get(f"{url}/health/ready", timeout=30)
        body = assert_problem(ready, 503)
        assert body["checks"]["kinesis"]["status"] == "unavailable"
        assert body["checks"]["metastore"]["status"] == "ok"


def test_the_openapi_document_carries_the_contract(api):
    document = api.get("/openapi.json").json()
    contract = document["components"]["schemas"]["shop_events"]
    assert contract["properties"]["event_id"]["format"] == "uuid"
    body = document["paths"]["/v1/ingest/shop_events"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "application/x-ndjson", "text/csv"}
    responses = document["paths"]["/v1/ingest/shop_events"]["post"]["responses"]
    assert {"202", "400", "401", "413", "415", "422", "503"} <= set(responses)


@pytest.mark.slow
def test_every_accepted_job_survives_a_sigkilled_api(api_env, tmp_path, running_consumer):
    """Clients post while the API process is killed with SIGKILL; every job that got a 202
    is committed with all its records."""
    events = samples.generate_shop_events(4000, seed=6)
    bodies = [ndjson(events[i : i + 20]) for i in range(0, len(events), 20)]
    accepted: list[dict] = []
    lock = threading.Lock()
    next_body = iter(range(len(bodies)))

    def client(url: str, stop: threading.Event) -> None:
        headers = {"Authorization": f"Bearer {KEY}", "content-type": "application/x-ndjson"}
        with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
            while not stop.is_set():
                with lock:
                    i = next(next_body, None)
                if i is None:
                    return
                try:
                    response = http.post("/v1/ingest/shop_events", content=bodies[i])
                except httpx.TransportError:
                    continue  # the server died mid-request: no 202, nothing promised
                if response.status_code == 202:
                    with lock:
                        accepted.append({**response.json(), "body": i})

    with api_server(api_env, tmp_path / "api-killed.log") as (url, process):
        stop = threading.Event()
        clients = [threading.Thread(target=client, args=(url, stop)) for _ in range(8)]
        for c in clients:
            c.start()
        time.sleep(1.5)
        process.send_signal(signal.SIGKILL)
        process.wait()
        stop.set()
        for c in clients:
            c.join()
    assert len(accepted) >= 10, "the load did not reach the API before the kill"
    with running_consumer():
        jobs = wait_final([a["job_id"] for a in accepted], timeout=120)
    assert all(j.status == "committed" and j.valid == 20 for j in jobs.values())
    import weir

    stored = set(weir.lake.read("raw.shop_events").column("event_id").to_pylist())
    for a in accepted:
        for event in events[a["body"] * 20 : a["body"] * 20 + 20]:
            assert event["event_id"] in stored


def test_the_documented_fastapi_route_answers_like_the_fast_path(tmp_path, monkeypatch):
    """The app serves ingest requests before FastAPI's routing (``AccessLog``); the FastAPI
    routes of the same paths (which carry the OpenAPI docs) call the same endpoint. With the
    fast path switched off, requests go through FastAPI and get the same answers."""
    import asyncio
    import copy

    from weir.api import create_app
    from weir.api.app import AccessLog
    from weir.config import ApiSettings

    monkeypatch.setenv("WEIR_STATE_DIR", str(tmp_path))  # a 400 opens the job ledger's lake
    settings = ApiSettings(key_hashes=(keys.key_hash(KEY),))
    fast, routed = create_app(settings), create_app(settings)
    (access_log,) = [m for m in routed.user_middleware if m.cls is AccessLog]
    endpoint = copy.copy(access_log.kwargs["endpoint"])
    endpoint.paths = {}  # nothing served before routing
    access_log.kwargs["endpoint"] = endpoint

    async def post(app, headers: dict[str, str]) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://weir") as client:
            return await client.post("/v1/ingest/shop_events", content=b"a,b", headers=headers)

    for headers, status in (
        ({}, 401),
        ({"Authorization": f"Bearer {KEY}", "Content-Type": "text/plain"}, 415),
        ({"Authorization": f"Bearer {KEY}", "Content-Type": "text/csv"}, 400),
    ):
        answers = [asyncio.run(post(app, headers)) for app in (fast, routed)]
        assert [a.status_code for a in answers] == [status, status]
        bodies = [a.json() for a in answers]
        assert bodies[0] == bodies[1] and bodies[0]["status"] == status
        assert all(a.headers["content-type"] == "application/problem+json" for a in answers)
        assert all("x-request-id" in a.headers for a in answers)
