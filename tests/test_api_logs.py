"""API keys and request bodies never reach the ingest API's logs, even at the most verbose
setting (``WEIR_LOG=trace`` for the Rust side; the API's own JSON access and error logs are
always on). The app runs as ``weir serve`` with everything it prints going to one file;
requests carry a valid key, a wrong key, and bodies with a unique marker in accepted records,
in invalid values and field names (whose violations the 422 answer rightly returns), in an
unparseable body, and in a request that ends in 503 (the metastore cannot be opened: a 500
with a logged stack trace until the ingest route mapped that failure to 503)."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.test_api import KEY, api_server, assert_problem, ndjson
from tests.test_api import api_env as api_env  # the fixture
from weir import samples
from weir.api import keys


@pytest.mark.slow
def test_keys_and_bodies_never_reach_the_logs(api_env, tmp_path, kinesis_endpoint):
    marker = f"mark{uuid.uuid4().hex}"
    wrong_key = keys.new_key()
    event = samples.generate_shop_events(1, seed=21)[0]
    marked = {**event, "user_email": f"{marker}@example.com", "session_id": marker}
    bad_value = {**event, "event_id": str(uuid.uuid4()), "user_country": marker}
    bad_name = {**event, "event_id": str(uuid.uuid4()), marker: "x"}
    log = tmp_path / "api.log"
    env = {**api_env, "WEIR_LOG": "trace"}
    requests = [  # (key, content type, body, mode, status)
        (KEY, "application/x-ndjson", ndjson([marked]), "strict", 202),
        (KEY, "application/json", json.dumps([marked, bad_value]).encode(), "lenient", 202),
        (KEY, "application/x-ndjson", ndjson([bad_value, bad_name]), "strict", 422),
        (KEY, "text/csv", samples.to_csv([bad_value]), "strict", 422),
        (KEY, "application/x-ndjson", f'{{"user_email": "{marker}@x.org",'.encode(), "strict", 400),
        (wrong_key, "application/x-ndjson", ndjson([marked]), "strict", 401),
    ]

    def send(url: str, key: str, content_type: str, body: bytes, mode: str) -> httpx.Response:
        return httpx.post(
            f"{url}/v1/ingest/shop_events",
            params={"mode": mode},
            content=body,
            headers={"Authorization": f"Bearer {key}", "content-type": content_type},
            timeout=60,
        )

    answers = []
    with api_server(env, log) as (url, _):
        for key, content_type, body, mode, status in requests:
            response = send(url, key, content_type, body, mode)
            assert response.status_code == status, response.text
            answers.append(response)
        job = answers[0].json()["status_url"]
        assert httpx.get(f"{url}{job}", headers={"Authorization": f"Bearer {KEY}"}).is_success
        wrong = httpx.get(f"{url}{job}", headers={"Authorization": f"Bearer {wrong_key}"})
        assert wrong.status_code == 401
    # The violations go back to the client, marker and all: the log is what must not have it.
    assert marker in answers[2].text and marker in answers[3].text
    assert answers[1].json()["rejected"] == 1

    # The metastore cannot be opened (its folder is a file): 503, and the error is logged.
    broken_folder = tmp_path / "not-a-folder"
    broken_folder.write_text("")
    broken = {**env, "WEIR_METASTORE": str(broken_folder / "metastore.db")}
    with api_server(broken, log) as (url, _):
        assert_problem(send(url, KEY, "application/x-ndjson", ndjson([marked]), "strict"), 503)

    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    # The log is the verbose one: Rust trace lines, an access line per request, the errors.
    assert any(line.get("level") == "TRACE" for line in lines), text[-2000:]
    statuses = [
        line["status"]
        for line in lines
        if line.get("event") == "request" and line["path"].startswith("/v1/")
    ]
    assert statuses == [202, 202, 422, 422, 400, 401, 200, 401, 503]
    assert any(line.get("event") == "publish_failed" for line in lines), text[-2000:]
    for secret in (
        KEY,
        wrong_key,
        KEY.removeprefix(keys.PREFIX),
        keys.key_hash(KEY).removeprefix("sha256:"),
        keys.key_hash(wrong_key).removeprefix("sha256:"),
        marker,
    ):
        assert secret not in text, f"{secret!r} is in the API's log"
