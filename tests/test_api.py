"""The ingest API against the running app (``weir serve`` in a subprocess) with the real
local Kinesis-API server and a consumer: every status the API documents, a job followed from
202 to ``committed``, problem details everywhere, the OpenAPI document, and durability when
the API process is killed with SIGKILL under load."""

from __future__ import annotations

import collections
import json
import os
import signal
import struct
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

import weir
from tests.support.servers import free_port, kinesis_client, stop_process
from tests.support.stream_helpers import wait_final
from tests.test_stack import read_stream
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
    assert assert_problem(wrong, 401)["detail"].startswith("the API key is not valid")


def test_every_format_is_accepted_and_a_job_reaches_committed(api, running_consumer, tmp_path):
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
        # where the time went: the contract check, the job ledger, Kinesis (ms)
        steps = dict(p.split(";dur=") for p in response.headers["server-timing"].split(", "))
        assert set(steps) == {"check", "ledger", "kinesis"}, steps
        assert all(float(ms) > 0 for ms in steps.values()), steps
    assert [a["received"] for a in accepted] == [1, 9, 20, 10]
    # The access log line is written once the response is sent: the last one may lag.
    deadline = time.monotonic() + 5
    while True:
        logged = [
            json.loads(line)
            for line in (tmp_path / "api.log").read_text().splitlines()
            if line.startswith("{") and '"path": "/v1/ingest/shop_events"' in line
        ]
        if len(logged) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(logged) == 4 and all(r["status"] == 202 for r in logged), logged
    for r in logged:  # the same steps in the access log, within the request's duration
        steps = r["check_ms"] + r["ledger_ms"] + r["kinesis_ms"]
        assert 0 < steps <= r["duration_ms"], r
    assert api.get(accepted[0]["status_url"]).json()["status"] in ("published", "committed")
    with running_consumer():
        wait_final([a["job_id"] for a in accepted])
    for a in accepted:
        job = api.get(a["status_url"]).json()
        assert job["status"] == "committed", job
        assert job["valid"] == a["received"] and job["snapshot_ids"]
        assert job["contract_versions"] == [weir.processor(a["dataset"]).contract_version]


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
    for not_a_job_id in ("not-a-uuid", uuid.uuid4().hex, f"{{{uuid.uuid4()}}}"):
        assert "not a job id" in assert_problem(api.get(f"/v1/jobs/{not_a_job_id}"), 422)["detail"]
    assert_problem(api.get(f"/v1/jobs/{uuid.uuid4()}"), 404)
    # A time-ordered job id (what Weir makes) from before the jobs' retention (30 days): 410.
    days_ago = int((time.time() - 40 * 86_400) * 1000)
    expired = uuid.UUID(int=days_ago << 80 | 0x7 << 76 | 0x2 << 62 | 12345)
    gone = assert_problem(api.get(f"/v1/jobs/{expired}"), 410)
    assert gone["type"].endswith("job-expired") and "job_retention_days" in gone["detail"]
    recent = uuid.UUID(int=int(time.time() * 1000) << 80 | 0x7 << 76 | 0x2 << 62 | 12345)
    assert_problem(api.get(f"/v1/jobs/{recent}"), 404)
    assert_problem(api.get("/v1/nothing"), 404)
    for mode in ("fast", ""):  # `?mode=` is no mode either
        assert_problem(post(api, ndjson([event]), "application/x-ndjson", mode=mode), 422)
    typo = assert_problem(post(api, ndjson([event]), "application/x-ndjson", mdoe="lenient"), 422)
    assert "query.mdoe: unknown parameter" in typo["detail"]


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


def test_the_openapi_document_carries_the_contract_and_the_key(api):
    document = api.get("/openapi.json").json()
    contract = document["components"]["schemas"]["shop_events"]
    assert contract["properties"]["event_id"]["format"] == "uuid"
    paths = document["paths"]
    assert set(paths) == {"/v1/ingest/shop_events", "/v1/jobs/{job_id}", "/health", "/health/ready"}
    ingest = paths["/v1/ingest/shop_events"]["post"]
    assert set(ingest["requestBody"]["content"]) == {
        "application/json",
        "application/x-ndjson",
        "text/csv",
    }
    assert {"202", "400", "401", "413", "415", "422", "503"} <= set(ingest["responses"])
    jobs = paths["/v1/jobs/{job_id}"]["get"]
    (job_id,) = jobs["parameters"]
    assert (job_id["in"], job_id["schema"]["format"]) == ("path", "uuid")
    job = jobs["responses"]["200"]["content"]["application/json"]["schema"]
    assert job["properties"]["job_id"]["format"] == "uuid"
    assert {"200", "401", "404", "422"} <= set(jobs["responses"])
    # The API key: a bearer scheme, required everywhere but the health checks.
    schemes = document["components"]["securitySchemes"]
    assert [(s["type"], s["scheme"]) for s in schemes.values()] == [("http", "bearer")]
    assert ingest["security"] == jobs["security"] == [{name: []} for name in schemes]
    assert "security" not in document and not any(
        "security" in paths[path]["get"] for path in ("/health", "/health/ready")
    )


def stream_segments(endpoint: str, stream: str) -> list[tuple[str, int]]:
    """``(job id, event count)`` of every segment of every Weir record on ``stream``, every
    shard read from TRIM_HORIZON with boto3 (the record header: docs/streaming.md, "What
    travels"); empty if the stream does not exist."""
    kinesis = kinesis_client(endpoint)
    try:
        shards = read_stream(kinesis, stream)
    except kinesis.exceptions.ResourceNotFoundException:
        return []
    segments = []
    for record in (r for records in shards.values() for r in records):
        data = record["Data"]
        assert data[:4] == b"WEIR" and data[4] == 2, data[:8]
        at = 12 + 1 + data[12]  # magic, version, flags, format, reserved, CRC32; the dataset
        (count,) = struct.unpack_from("<I", data, at)
        at += 4
        for _ in range(count):
            job_id = data[at + 1 : at + 1 + data[at]].decode()
            at += 1 + data[at]
            _first_index, events = struct.unpack_from("<QI", data, at)
            at += 12
            segments.append((job_id, events))
    return segments


@pytest.mark.slow
def test_every_accepted_job_survives_a_sigkilled_api(
    api_env, tmp_path, kinesis_endpoint, running_consumer
):
    """Eight clients post bodies of unique events, each body once (a body that got no answer
    is not sent again). Once the 40th 202 has arrived, the API process is killed with SIGKILL
    the moment the next request has been sent in full (from the client's trace hook, so the
    API cannot have answered it), with other requests in flight too. It is restarted on the
    same state and takes more requests; then the consumer runs. Every event of every 202'd
    body is stored exactly once, an event of a body that got no answer at most once, nothing
    else, and every 202'd job is committed with its counts."""
    import weir
    from weir import config

    kill_after, size = 40, 20
    events = samples.generate_shop_events(200 * size, seed=6)
    bodies = [ndjson(events[i : i + size]) for i in range(0, len(events), size)]
    event_ids = [[e["event_id"] for e in events[i : i + size]] for i in range(0, len(events), size)]
    assert len({e for ids in event_ids for e in ids}) == len(events)
    next_body = iter(range(len(bodies)))
    lock = threading.Lock()
    accepted: dict[int, dict] = {}  # body → its 202 answer
    sent: set[int] = set()  # bodies written in full to the API's socket
    answered: set[int] = set()  # bodies whose answer arrived (any status)
    unanswered: set[int] = set()  # bodies sent in full that got a transport error instead
    in_flight_at_kill: set[int] = set()  # sent in full, not answered when the kill came
    refused: list[str] = []
    killed = threading.Event()

    def client(url: str, pid: int) -> None:
        headers = {"Authorization": f"Bearer {KEY}", "content-type": "application/x-ndjson"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            while not killed.is_set():
                with lock:
                    i = next(next_body, None)
                if i is None:
                    return

                def trace(event: str, info: dict, i: int = i) -> None:
                    if event != "http11.send_request_body.complete":
                        return
                    with lock:
                        sent.add(i)
                        if len(accepted) >= kill_after and not killed.is_set():
                            in_flight_at_kill.update(sent - answered - unanswered)
                            os.kill(pid, signal.SIGKILL)
                            killed.set()

                try:
                    response = http.post(
                        "/v1/ingest/shop_events", content=bodies[i], extensions={"trace": trace}
                    )
                except httpx.TransportError:
                    with lock:
                        if i in sent:
                            unanswered.add(i)
                    continue
                with lock:
                    answered.add(i)
                    if response.status_code == 202:
                        accepted[i] = response.json()
                    else:
                        refused.append(response.text)

    with api_server(api_env, tmp_path / "api-killed.log") as (url, process):
        clients = [threading.Thread(target=client, args=(url, process.pid)) for _ in range(8)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        assert process.wait() == -signal.SIGKILL
    assert not refused, refused[:3]
    assert killed.is_set() and len(accepted) >= kill_after
    cut_off = in_flight_at_kill & unanswered
    assert cut_off, f"no request was in flight at the kill: {len(in_flight_at_kill)} sent"

    with api_server(api_env, tmp_path / "api-restarted.log") as (url, _):
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        with http:
            first = next(iter(accepted.values()))
            assert http.get(first["status_url"]).json()["status"] in ("published", "committed")
            for _ in range(10):
                i = next(next_body)
                response = post(http, bodies[i], "application/x-ndjson")
                assert response.status_code == 202, response.text
                accepted[i] = response.json()

    stream = config.kinesis_settings().stream_name("shop_events")
    on_stream = collections.Counter()
    for job_id, count in stream_segments(kinesis_endpoint, stream):
        on_stream[job_id] += count
    acknowledged = {a["job_id"] for a in accepted.values()}
    assert all(on_stream[job_id] == size for job_id in acknowledged)
    unacknowledged = set(on_stream) - acknowledged  # published, but their answer was lost
    assert len(unacknowledged) <= len(unanswered)
    assert all(on_stream[job_id] == size for job_id in unacknowledged)
    with running_consumer() as consumer:
        jobs = wait_final(sorted(acknowledged), timeout=120)
        deadline = time.monotonic() + 60
        while sum(b.events for b in consumer.batches) < on_stream.total():
            assert time.monotonic() < deadline, "the consumer did not store the whole stream"
            time.sleep(0.1)
    for job in jobs.values():
        assert (job.status, job.received, job.valid, job.rejected) == ("committed", size, size, 0)
        assert job.records and job.snapshot_ids, job

    stored = collections.Counter(weir.lake.read("raw.shop_events").column("event_id").to_pylist())
    for i in accepted:
        assert [stored[e] for e in event_ids[i]] == [1] * size, f"202'd body {i}"
    for i in unanswered:
        assert {stored[e] for e in event_ids[i]} in ({0}, {1}), f"unanswered body {i}"
    posted = {e for i in {*accepted, *unanswered} for e in event_ids[i]}
    assert set(stored) <= posted, set(stored) - posted
    assert stored.total() == on_stream.total()
    lost_answers = collections.Counter(weir.stream.job(j).status for j in unacknowledged)
    print(
        f"killed after the {kill_after}th 202 with {len(in_flight_at_kill)} requests in flight; "
        f"{len(cut_off)} of them and {len(unanswered) - len(cut_off)} later ones unanswered, "
        f"{len(unacknowledged)} of the unanswered published (their jobs: {dict(lost_answers)}); "
        f"{len(accepted)} bodies acknowledged in all"
    )


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


def test_a_key_made_while_the_api_runs_works_at_once_and_a_deleted_one_stops(
    api: httpx.Client, tmp_path: Path, good_event: dict
) -> None:
    """`weir api-key create` while `weir serve` runs (the README's order: `weir up`, then
    the key): the new key is accepted on both the ingest and the jobs route without a
    restart; deleting its line from the key file revokes it; the configured key stays."""
    new, _ = keys.create_key()  # <state>/api-keys, the state folder the API runs on
    with_new = {"Authorization": f"Bearer {new}"}
    assert api.get(f"/v1/jobs/{uuid.uuid4()}", headers=with_new).status_code == 404
    accepted = api.post("/v1/ingest/shop_events", json=good_event, headers=with_new)
    assert accepted.status_code == 202, accepted.text
    (tmp_path / "api-keys").write_text("")
    time.sleep(keys.RELOAD_EVERY + 0.1)  # the API looks at the file every 200 ms at most
    assert_problem(api.get(f"/v1/jobs/{uuid.uuid4()}", headers=with_new), 401)
    assert_problem(api.post("/v1/ingest/shop_events", json=good_event, headers=with_new), 401)
    assert api.get(f"/v1/jobs/{uuid.uuid4()}").status_code == 404  # the configured key
