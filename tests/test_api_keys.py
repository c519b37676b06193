"""API keys for operators, against the running app (``weir serve`` in a subprocess) and the
real local Kinesis-API server: keys made, listed and revoked with the ``weir api-key``
command while the API runs (taken within a second, no restart), dataset scopes (403), rate
limits (429 with ``Retry-After``, nothing of a refused request published, every accepted
event in the lake), and the key's name in the access log.

    .venv/bin/python -m pytest tests/test_api_keys.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

import weir
from tests.support.stream_helpers import wait_final
from tests.test_api import api as api  # fixtures
from tests.test_api import api_env as api_env
from tests.test_api import assert_problem, ndjson
from tests.test_api_refusals import stream_jobs
from weir import samples
from weir.api import keys


def weir_cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "weir.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def send(api: httpx.Client, events: list[dict], auth: dict | None = None) -> httpx.Response:
    headers = {"content-type": "application/x-ndjson", **(auth or {})}
    return api.post("/v1/ingest/shop_events", content=ndjson(events), headers=headers)


def within(seconds: float, condition) -> float:
    """How long until ``condition()`` held; fails if it did not within ``seconds``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"not within {seconds} s"
        time.sleep(0.05)
    return time.monotonic() - started


def test_keys_are_made_listed_and_revoked_while_the_api_runs(api, api_env) -> None:
    event = samples.generate_shop_events(1, seed=31)[0]
    made = weir_cli(api_env, "api-key", "create", "--name", "partner-a")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("weir_") and "'partner-a'" in made.stderr
    assert key not in (Path(api_env["WEIR_STATE_DIR"]) / "api-keys").read_text()
    auth = {"Authorization": f"Bearer {key}"}

    def ingest_status() -> int:
        return api.post("/v1/ingest/shop_events", json=event, headers=auth).status_code

    assert within(1.0, lambda: ingest_status() == 202) < 1.0
    # a second key by the same name is refused, and the first stays
    again = weir_cli(api_env, "api-key", "create", "--name", "partner-a")
    assert again.returncode == 2 and "named 'partner-a' exists" in again.stderr

    # listed with its last use, never with the key or its hash
    def listed() -> dict:
        done = weir_cli(api_env, "api-key", "list", "--format", "json")
        assert done.returncode == 0, done.stderr
        assert key not in done.stdout and keys.key_hash(key) not in done.stdout
        return {k["name"]: k for k in json.loads(done.stdout)}

    assert set(listed()) >= {"partner-a"} and listed()["partner-a"]["datasets"] is None

    def used() -> bool:  # the API writes last uses every few seconds, on a request
        ingest_status()
        return listed()["partner-a"]["last_used_ms"] is not None

    within(15.0, used)
    table = weir_cli(api_env, "api-key", "list")
    assert "partner-a" in table.stdout and "last used" in table.stdout

    revoked = weir_cli(api_env, "api-key", "revoke", "partner-a")
    assert revoked.returncode == 0, revoked.stderr
    assert within(1.0, lambda: ingest_status() == 401) < 1.0
    body = assert_problem(api.post("/v1/ingest/shop_events", json=event, headers=auth), 401)
    assert "weir api-key list" in body["detail"]
    assert "partner-a" not in listed()
    unknown = weir_cli(api_env, "api-key", "revoke", "partner-a")
    assert unknown.returncode == 2 and "no API key named 'partner-a'" in unknown.stderr
    # the configured key is untouched
    assert api.post("/v1/ingest/shop_events", json=event).status_code == 202


def test_a_scoped_key_gets_403_on_other_datasets_and_their_jobs(api, api_env) -> None:
    event = samples.generate_shop_events(1, seed=32)[0]
    accepted = api.post("/v1/ingest/shop_events", json=event)
    assert accepted.status_code == 202
    job_url = accepted.json()["status_url"]
    # `weir api-key create` only takes the project's datasets; a key file may name others
    other, _ = keys.create_key("clicks-only", datasets=["clicks"])
    refused = weir_cli(api_env, "api-key", "create", "--datasets", "clicks")
    assert refused.returncode != 0 and "no dataset 'clicks'" in refused.stderr
    auth = {"Authorization": f"Bearer {other}"}
    within(1.0, lambda: api.get(job_url, headers=auth).status_code != 401)
    body = assert_problem(api.post("/v1/ingest/shop_events", json=event, headers=auth), 403)
    assert "'clicks-only'" in body["detail"] and "shop_events" in body["detail"]
    assert_problem(api.get(job_url, headers=auth), 403)
    scoped, _ = keys.create_key("shop-only", datasets=["shop_events"])
    auth = {"Authorization": f"Bearer {scoped}"}
    within(1.0, lambda: api.get(job_url, headers=auth).status_code == 200)
    assert api.post("/v1/ingest/shop_events", json=event, headers=auth).status_code == 202


def test_a_rate_limited_key_gets_429_and_publishes_only_what_was_accepted(
    api, api_env, kinesis_endpoint, running_consumer
) -> None:
    made = weir_cli(
        api_env, "api-key", "create", "--name", "slow", "--rate", "40", "--request-rate", "5"
    )
    assert made.returncode == 0, made.stderr
    auth = {"Authorization": f"Bearer {made.stdout.strip()}"}
    events = samples.generate_shop_events(200, seed=33)
    within(1.0, lambda: api.get(f"/v1/jobs/{uuid.uuid4()}", headers=auth).status_code == 404)

    # requests/s: a burst of single events, as fast as the client can send them
    answers = [send(api, [e], auth) for e in events[:20]]
    statuses = [a.status_code for a in answers]
    assert 202 in statuses and 429 in statuses, statuses
    assert statuses.count(202) <= 8, statuses  # 5 in the bucket, plus what refilled meanwhile
    limited = assert_problem(next(a for a in answers if a.status_code == 429), 429)
    assert int(next(a for a in answers if a.status_code == 429).headers["retry-after"]) >= 1
    assert (
        "'slow'" in limited["detail"]
        and "nothing of this request was published" in (limited["detail"])
    )

    # events/s: a 100-event request is let in, then the key waits until its debt is paid
    time.sleep(1.2)
    big = send(api, events[20:120], auth)
    assert big.status_code == 202, big.text
    after = send(api, events[120:121], auth)
    assert_problem(after, 429)
    assert int(after.headers["retry-after"]) >= 1  # ~60 events over: 1-2 s at 40/s

    # the configured key has no limit
    assert all(send(api, [e]).status_code == 202 for e in events[121:131])

    accepted = [a.json() for a in [*answers, big] if a.status_code == 202]
    published = stream_jobs(kinesis_endpoint)
    assert {a["job_id"] for a in accepted} <= set(published)
    assert len(published) == len(accepted) + 10, (len(published), len(accepted))
    with running_consumer():
        jobs = wait_final([a["job_id"] for a in accepted])
    assert all(job.status == weir.stream.COMMITTED for job in jobs.values())
    ids = set(weir.lake.read("raw.shop_events").column("event_id").to_pylist())
    accepted_ids = {
        e["event_id"] for a, e in zip(answers, events[:20], strict=True) if a.status_code == 202
    } | {e["event_id"] for e in events[20:120]}
    assert accepted_ids <= ids
    refused_ids = {
        e["event_id"] for a, e in zip(answers, events[:20], strict=True) if a.status_code == 429
    } | {events[120]["event_id"]}
    assert not refused_ids & ids


def test_the_access_log_names_the_key_and_counts_429s(api, api_env, tmp_path) -> None:
    key, _ = keys.create_key("logged", requests_per_second=1)
    auth = {"Authorization": f"Bearer {key}"}
    event = samples.generate_shop_events(1, seed=34)[0]
    within(1.0, lambda: api.get(f"/v1/jobs/{uuid.uuid4()}", headers=auth).status_code == 404)
    statuses = [
        api.post("/v1/ingest/shop_events", json=event, headers=auth).status_code for _ in range(3)
    ]
    assert 429 in statuses

    def logged_statuses() -> list[int]:
        lines = []
        for line in (tmp_path / "api.log").read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return [
            r["status"]
            for r in lines
            if r.get("event") == "request"
            and r.get("api_key") == "logged"
            and r["path"] == "/v1/ingest/shop_events"
        ]

    # The API process writes its access line after the response has gone out, so the last
    # line can land a moment after the client has its answer: wait for it, then compare.
    within(5.0, lambda: len(logged_statuses()) >= len(statuses))
    assert logged_statuses() == statuses
    assert key not in (tmp_path / "api.log").read_text()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"name": "x"}', "expected sha256"),
        ('{"hash": "sha256:' + "0" * 64 + '"}', "needs a name"),
        ("not a digest", "expected sha256"),
        ('{"name": "x", "hash": "sha256:' + "0" * 64 + '", "events_per_second": -1}', "0 or more"),
    ],
)
def test_a_broken_key_file_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "api-keys"
    path.write_text("sha256:" + "1" * 64 + "\n" + line + "\n")
    with pytest.raises(weir.ConfigError, match=message) as error:
        keys.read_keys(path)
    assert f"{path}:2" in str(error.value)


def test_rate_limits_from_settings_apply_to_keys_without_their_own(monkeypatch) -> None:
    from weir.api.limits import RateLimiter
    from weir.api.problems import ProblemError
    from weir.config import api_settings

    monkeypatch.setenv("WEIR_API_RATE_REQUESTS_PER_SECOND", "2")
    monkeypatch.setenv("WEIR_API_WORKERS", "2")  # each of 2 processes allows half
    limiter = RateLimiter(api_settings())
    default = keys.ApiKey(name="a", hash="sha256:" + "0" * 64)
    free = keys.ApiKey(name="b", hash="sha256:" + "1" * 64, requests_per_second=0)
    limiter.admit(default)
    with pytest.raises(ProblemError) as refused:
        limiter.admit(default)
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "1"
    assert "2 requests/s" in refused.value.detail
    for _ in range(50):
        limiter.admit(free)
    monkeypatch.setenv("WEIR_API_RATE_EVENTS_PER_SECOND", "fast")
    with pytest.raises(weir.ConfigError, match="WEIR_API_RATE_EVENTS_PER_SECOND"):
        api_settings()
