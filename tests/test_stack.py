"""The local stack: kinesalite as a real Kinesis-API server (boto3 against it), `weir up` /
`weir status` / `weir down` from the command line (with the Streamlit dashboard), and the
Kinesis and dashboard settings.

    .venv/bin/python -m pytest tests/test_stack.py
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

import weir
from tests.support.servers import free_port, kinesis_client, kinesis_server
from weir import config, project, stack
from weir.config import KinesisSettings, dashboard_settings, kinesis_settings

MiB = 1024 * 1024

pytestmark = pytest.mark.integration


# -- kinesalite through boto3 ------------------------------------------------------------------


def read_shard(client, stream: str, shard_id: str) -> list[dict]:
    """Every record of one shard, from TRIM_HORIZON until the shard has nothing more."""
    iterator = client.get_shard_iterator(
        StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records: list[dict] = []
    while iterator:
        page = client.get_records(ShardIterator=iterator, Limit=250)
        records.extend(page["Records"])
        if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
            break
        iterator = page.get("NextShardIterator")
    return records


def read_stream(client, stream: str) -> dict[str, list[dict]]:
    shards = client.list_shards(StreamName=stream)["Shards"]
    return {shard["ShardId"]: read_shard(client, stream, shard["ShardId"]) for shard in shards}


def wait_until_active(client, stream: str) -> dict:
    """The stream's summary once it is ACTIVE: createStreamMs is 0, so a new stream turns
    ACTIVE on kinesalite's next tick (a loaded machine may answer before it, and a put to a
    CREATING stream is refused as not found)."""
    deadline = time.monotonic() + 5
    while True:
        summary = client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        if summary["StreamStatus"] == "ACTIVE":
            return summary
        assert time.monotonic() < deadline, summary
        time.sleep(0.05)


def test_records_round_trip_through_every_shard(kinesis_endpoint: str) -> None:
    client = kinesis_client(kinesis_endpoint)
    client.create_stream(StreamName="weir-roundtrip", ShardCount=4)
    assert wait_until_active(client, "weir-roundtrip")["OpenShardCount"] == 4

    rng = random.Random(11)
    payloads = [f"record {i} ".encode() + rng.randbytes(rng.randrange(0, 2048)) for i in range(600)]
    placed: dict[bytes, tuple[str, str]] = {}  # payload -> (shard, sequence number) from the put
    for first in (0, 300):  # two PutRecords calls of 300 records (the API allows 500)
        batch = payloads[first : first + 300]
        response = client.put_records(
            StreamName="weir-roundtrip",
            Records=[
                {"Data": data, "PartitionKey": f"user-{first + i}"} for i, data in enumerate(batch)
            ],
        )
        assert response["FailedRecordCount"] == 0
        for data, result in zip(batch, response["Records"], strict=True):
            placed[data] = (result["ShardId"], result["SequenceNumber"])

    by_shard = read_stream(client, "weir-roundtrip")
    assert len(by_shard) == 4
    assert all(by_shard.values()), "600 partition keys leave no shard empty"
    seen = []
    for shard_id, records in by_shard.items():
        sequence_numbers = [int(r["SequenceNumber"]) for r in records]
        assert sequence_numbers == sorted(set(sequence_numbers)), f"{shard_id} out of order"
        for record in records:
            assert placed[record["Data"]] == (shard_id, record["SequenceNumber"])
        # Within a shard, records come back in the order they were put.
        put_order = [p for p in payloads if placed[p][0] == shard_id]
        assert [r["Data"] for r in records] == put_order
        seen.extend(r["Data"] for r in records)
    assert sorted(seen) == sorted(payloads)


def test_the_one_mib_record_limit(kinesis_endpoint: str) -> None:
    """AWS caps data + partition key at 1 MiB. kinesalite 3.3.3 checks the data blob alone
    (``Data`` <= 1048576 bytes; validations/putRecords.js), so a 1 MiB blob with a 1-byte key
    is accepted here and would be refused by AWS: Weir's producers must check the sum
    themselves. This test pins what kinesalite really does."""
    client = kinesis_client(kinesis_endpoint)
    client.create_stream(StreamName="weir-limits", ShardCount=1)

    exactly = {"Data": b"a" * (MiB - 3), "PartitionKey": "key"}  # data + key = 1 MiB
    assert client.put_records(StreamName="weir-limits", Records=[exactly])["FailedRecordCount"] == 0

    with pytest.raises(ClientError) as caught:
        client.put_records(
            StreamName="weir-limits", Records=[{"Data": b"b" * (MiB + 1), "PartitionKey": "k"}]
        )
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "less than or equal to 1048576" in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError, match="ValidationException"):
        client.put_record(StreamName="weir-limits", Data=b"b" * (MiB + 1), PartitionKey="k")

    # Not AWS's behaviour (data + key = 1 MiB + 1 byte), but kinesalite's: accepted.
    over_aws = {"Data": b"c" * MiB, "PartitionKey": "k"}
    assert (
        client.put_records(StreamName="weir-limits", Records=[over_aws])["FailedRecordCount"] == 0
    )

    records = read_shard(client, "weir-limits", "shardId-000000000000")
    assert [len(r["Data"]) for r in records] == [MiB - 3, MiB]
    assert records[0]["Data"] == exactly["Data"]


# -- weir up / status / down ---------------------------------------------------------------


def run_weir(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "weir.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def stack_env(tmp_path: Path):
    """The environment of a private stack: its own state folder and free ports, and a
    project home with the checkout's contracts and SQL and a one-line dashboard app (these
    tests are about the stack, not the pages of streamlit_app/).
    Whatever the test leaves running is stopped afterwards."""
    home = tmp_path / "home"
    (home / "streamlit_app").mkdir(parents=True)
    (home / "streamlit_app" / "streamlit_app.py").write_text("import streamlit as st\n")
    for folder in ("contracts", "sql"):
        (home / folder).symlink_to(project.home() / folder)
    env = dict(os.environ)
    env.pop("WEIR_CONFIG", None)
    env["WEIR_HOME"] = str(home)
    env["WEIR_STATE_DIR"] = str(tmp_path / "state")
    env["WEIR_KINESIS_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    env["WEIR_API_PORT"] = str(free_port())
    env["WEIR_DASHBOARD_PORT"] = str(free_port())
    yield env
    pid_file = tmp_path / "state" / "stack" / "kinesis.pid"
    if pid_file.exists():
        run_weir("down", env=env)


def dashboard_health(dashboard_url: str) -> str | None:
    """What Streamlit's health endpoint answers, or None when nothing listens."""
    try:
        return httpx.get(f"{dashboard_url}/_stcore/health", trust_env=False, timeout=2).text
    except httpx.TransportError:
        return None


def dashboard_processes(port: str) -> list[int]:
    """Pids of `weir dashboard` processes on ``port``."""
    wanted = f"weir.cli\x00dashboard\x00--host\x00127.0.0.1\x00--port\x00{port}\x00".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if wanted in (proc / "cmdline").read_bytes():  # a zombie's is empty
                found.append(int(proc.name))
        except OSError:
            pass
    return found


def test_up_status_down_keep_records_across_restarts(stack_env: dict[str, str]) -> None:
    endpoint = stack_env["WEIR_KINESIS_ENDPOINT"]
    state = Path(stack_env["WEIR_STATE_DIR"])
    dashboard_url = f"http://127.0.0.1:{stack_env['WEIR_DASHBOARD_PORT']}"

    first = run_weir("up", "--no-airflow", env=stack_env)
    assert first.returncode == 0, first.stderr
    assert "kinesis: started (pid" in first.stdout
    assert endpoint in first.stdout and str(state / "kinesis") in first.stdout
    assert str(state / "stack" / "kinesis.log") in first.stdout
    assert "dashboard: started (pid" in first.stdout and dashboard_url in first.stdout
    assert dashboard_health(dashboard_url) == "ok"
    again = run_weir("up", "--no-airflow", env=stack_env)
    assert again.returncode == 0 and "kinesis: already running" in again.stdout
    assert "dashboard: already running" in again.stdout
    pid = int((state / "stack" / "kinesis.pid").read_text())
    dashboard_pid = int((state / "stack" / "dashboard.pid").read_text())
    assert dashboard_processes(stack_env["WEIR_DASHBOARD_PORT"]) == [dashboard_pid]

    client = kinesis_client(endpoint)
    client.create_stream(StreamName="weir-durable", ShardCount=2)
    wait_until_active(client, "weir-durable")
    records = [{"Data": f"event {i}".encode(), "PartitionKey": str(i)} for i in range(50)]
    assert client.put_records(StreamName="weir-durable", Records=records)["FailedRecordCount"] == 0

    shown = run_weir("status", env=stack_env)
    assert shown.returncode == 0 and f"kinesis: running (pid {pid})" in shown.stdout
    assert "weir-durable" in shown.stdout
    assert f"dashboard: running (pid {dashboard_pid})" in shown.stdout
    assert f"url       {dashboard_url}\n" in shown.stdout

    stopped = run_weir("down", env=stack_env)
    assert stopped.returncode == 0 and "kinesis: stopped" in stopped.stdout
    assert "dashboard: stopped" in stopped.stdout
    assert not (state / "stack" / "kinesis.pid").exists()
    assert not (state / "stack" / "dashboard.pid").exists()
    assert exited(pid) and exited(dashboard_pid)
    assert dashboard_health(dashboard_url) is None
    assert dashboard_processes(stack_env["WEIR_DASHBOARD_PORT"]) == []
    assert run_weir("status", env=stack_env).returncode == 3

    # Without the dashboard this time: not started, and not missed by `weir status`.
    without = run_weir("up", "--no-airflow", "--no-dashboard", env=stack_env)
    assert without.returncode == 0 and "dashboard" not in without.stdout
    assert dashboard_health(dashboard_url) is None
    client = kinesis_client(endpoint)
    stored = read_stream(client, "weir-durable")
    assert sorted(r["Data"] for rs in stored.values() for r in rs) == sorted(
        r["Data"] for r in records
    )

    # A server killed outright keeps every acknowledged record too, and its pid file is stale.
    client.put_record(StreamName="weir-durable", Data=b"last words", PartitionKey="x")
    pid = int((state / "stack" / "kinesis.pid").read_text())
    os.killpg(pid, signal.SIGKILL)
    assert exited(pid)
    assert "kinesis: not running" in run_weir("status", env=stack_env).stdout
    restarted = run_weir("up", "--no-airflow", env=stack_env)
    assert restarted.returncode == 0 and "dashboard: started" in restarted.stdout
    stored = read_stream(kinesis_client(endpoint), "weir-durable")
    assert sum(len(rs) for rs in stored.values()) == 51

    last = run_weir("down", env=stack_env)
    assert "kinesis: stopped" in last.stdout and "dashboard: stopped" in last.stdout
    assert dashboard_health(dashboard_url) is None
    assert dashboard_processes(stack_env["WEIR_DASHBOARD_PORT"]) == []
    twice = run_weir("down", env=stack_env)
    assert twice.returncode == 0 and "kinesis: not running" in twice.stdout


def exited(pid: int, timeout: float = 10.0) -> bool:
    """Whether ``pid`` is gone (or a zombie: init reaps it soon) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (ProcessLookupError, FileNotFoundError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_a_pid_file_of_another_program_counts_as_stopped(stack_env: dict[str, str]) -> None:
    pid_file = Path(stack_env["WEIR_STATE_DIR"]) / "stack" / "kinesis.pid"
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(f"{os.getpid()}\n")  # alive, but not kinesalite
    shown = run_weir("status", env=stack_env)
    assert shown.returncode == 3 and "kinesis: not running" in shown.stdout
    assert not pid_file.exists()  # and this process was not signalled


def test_up_refuses_an_endpoint_that_is_not_local(stack_env: dict[str, str]) -> None:
    for endpoint, shown in (
        ("", "AWS"),
        ("https://kinesis.eu-west-1.amazonaws.com", "only runs a local server"),
        ("https://127.0.0.1:4567", "speaks plain http"),
    ):
        refused = run_weir(
            "up", "--no-airflow", env={**stack_env, "WEIR_KINESIS_ENDPOINT": endpoint}
        )
        assert refused.returncode == 2
        assert "StackError" in refused.stderr and shown in refused.stderr


def test_clear_errors_when_kinesalite_cannot_start(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WEIR_KINESALITE", str(tmp_path / "nope" / "cli.js"))
    with pytest.raises(weir.StackError, match="WEIR_KINESALITE"):
        stack.LocalKinesis(free_port(), tmp_path / "data", tmp_path / "log").start()
    monkeypatch.delenv("WEIR_KINESALITE")
    monkeypatch.setattr(project, "checkout", lambda: tmp_path)
    with pytest.raises(weir.StackError, match=r"run `make setup` \(npm ci\)"):
        stack.kinesalite_cli()


def test_a_busy_port_or_a_locked_store_is_a_stack_error(tmp_path: Path) -> None:
    with stack.LocalKinesis(free_port(), tmp_path / "data", tmp_path / "a.log") as first:
        assert first.running
        with pytest.raises(weir.StackError, match="already in use"):
            stack.LocalKinesis(first.port, tmp_path / "other", tmp_path / "b.log").start()
        # Two servers on one LevelDB folder: the second dies, and the log says why.
        second = stack.LocalKinesis(free_port(), tmp_path / "data", tmp_path / "c.log")
        with pytest.raises(weir.StackError, match="LOCK") as caught:
            second.start()
        assert "exited while starting" in str(caught.value) and caught.value.service == "kinesis"
        assert not second.running
    assert not first.running


def test_kinesis_server_stops_its_process_group() -> None:
    with kinesis_server() as endpoint:
        assert stack.kinesis_request(endpoint, "ListStreams")["StreamNames"] == []
    with pytest.raises(urllib.error.URLError, match="refused"):
        stack.kinesis_request(endpoint, "ListStreams", timeout=0.5)


# -- settings ----------------------------------------------------------------------------------


def write_config(tmp_path: Path, monkeypatch, text: str) -> Path:
    path = tmp_path / "weir.toml"
    path.write_text(text)
    monkeypatch.setenv("WEIR_CONFIG", str(path))
    return path


def test_kinesis_defaults_are_the_local_server(monkeypatch) -> None:
    monkeypatch.delenv("WEIR_CONFIG", raising=False)
    settings = kinesis_settings({})
    assert settings == KinesisSettings()
    assert settings.is_local() and settings.local_port() == 4567
    assert settings.stream_name("shop_events") == "weir-shop_events"
    assert settings.properties() == {
        "kinesis.endpoint": "http://127.0.0.1:4567",
        "kinesis.region": "us-east-1",
        "kinesis.access-key-id": "weir",
        "kinesis.secret-access-key": "weir",
        "kinesis.stream-prefix": "weir-",
        "kinesis.shards": "2",
    }
    assert "secret" not in repr(settings).replace("secret_access_key", "")


def test_kinesis_toml_then_environment(tmp_path: Path, monkeypatch) -> None:
    path = write_config(
        tmp_path,
        monkeypatch,
        '[lake]\nwarehouse = "/tmp/w"\n\n[kinesis]\nendpoint = "http://localhost:4999/"\n'
        'region = "eu-west-1"\nshards = 4\nstream_prefix = "dev."\naccess_key_id = "toml"\n',
    )
    settings = kinesis_settings({})
    assert settings.endpoint == "http://localhost:4999" and settings.local_port() == 4999
    assert settings.is_local() and settings.region == "eu-west-1" and settings.shards == 4
    assert settings.stream_name("clicks") == "dev.clicks"
    assert settings.access_key_id == "toml" and settings.secret_access_key == "weir"
    assert settings.source == f"defaults < {path}"

    settings = kinesis_settings(
        {
            "WEIR_KINESIS_SHARDS": " 8 ",
            "WEIR_KINESIS_REGION": "ap-south-1",
            "WEIR_KINESIS_SESSION_TOKEN": "",  # empty variables count as unset
            "WEIR_KINESIS_ENDPOINT": "http://10.0.0.5:4567",
            "AWS_ACCESS_KEY_ID": "ignored for a non-AWS endpoint",
        }
    )
    assert (settings.shards, settings.region, settings.stream_prefix) == (8, "ap-south-1", "dev.")
    assert settings.access_key_id == "toml" and not settings.is_local()
    assert settings.properties()["kinesis.shards"] == "8"
    assert "WEIR_KINESIS_SHARDS" in settings.source


def test_kinesis_on_aws_uses_the_aws_variables(tmp_path: Path, monkeypatch) -> None:
    write_config(tmp_path, monkeypatch, '[kinesis]\nendpoint = ""\n')
    aws = {
        "AWS_ACCESS_KEY_ID": "AKIA",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t",
        "AWS_DEFAULT_REGION": "eu-central-1",
    }
    settings = kinesis_settings(aws)
    assert settings.endpoint is None and settings.is_aws and not settings.is_local()
    assert settings.properties() == {
        "kinesis.endpoint": "",
        "kinesis.region": "eu-central-1",
        "kinesis.access-key-id": "AKIA",
        "kinesis.secret-access-key": "s3cr3t",
        "kinesis.stream-prefix": "weir-",
        "kinesis.shards": "2",
    }
    both = kinesis_settings({**aws, "AWS_REGION": "us-west-2", "WEIR_KINESIS_ACCESS_KEY_ID": "W"})
    assert (both.region, both.access_key_id) == ("us-west-2", "W")
    # No keys anywhere: left to AWS's credential chain, not Weir's local "weir".
    bare = kinesis_settings({})
    assert bare.access_key_id is None and "kinesis.access-key-id" not in bare.properties()
    assert bare.region == "us-east-1"
    # An empty endpoint variable also means AWS, overriding the file.
    write_config(tmp_path, monkeypatch, '[kinesis]\nendpoint = "http://127.0.0.1:1"\n')
    assert kinesis_settings({"WEIR_KINESIS_ENDPOINT": ""}).is_aws
    # An empty stream prefix variable names a stream exactly like its dataset (an existing
    # stream on AWS), overriding the file; unset, the file's or the default prefix holds.
    write_config(tmp_path, monkeypatch, '[kinesis]\nstream_prefix = "prod-"\n')
    assert kinesis_settings({"WEIR_KINESIS_STREAM_PREFIX": ""}).stream_name("orders") == "orders"
    assert kinesis_settings({}).stream_name("orders") == "prod-orders"


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        (
            "",
            {"WEIR_KINESIS_SHARDS": "two"},
            r'WEIR_KINESIS_SHARDS: expected a whole number of shards from 1 to 1000, got "two"',
        ),
        ("", {"WEIR_KINESIS_SHARDS": "0"}, r'WEIR_KINESIS_SHARDS: .* from 1 to 1000, got "0"'),
        ("shards = 1001", {}, r"weir\.toml: kinesis\.shards: .* from 1 to 1000, got 1001"),
        ("shards = 2.5", {}, r"weir\.toml: kinesis\.shards: expected a whole number.*2\.5"),
        ("shards = true", {}, r"kinesis\.shards: expected a whole number"),
        ("shard = 2", {}, r"kinesis\.shard: unknown setting \(known: endpoint, "),
        ("endpoint = 'localhost:4567'", {}, r"kinesis\.endpoint: expected http://host:port"),
        ("", {"WEIR_KINESIS_ENDPOINT": "http://x:port"}, r"WEIR_KINESIS_ENDPOINT: bad port"),
        ("stream_prefix = 'a b'", {}, r'kinesis\.stream_prefix: "a b" cannot start a Kinesis'),
        ("access_key_id = 'a'\nendpoint = ''", {}, r"kinesis\.access_key_id: give both"),
        ("region = 5", {}, r"kinesis\.region: expected a string"),
    ],
)
def test_bad_kinesis_settings_name_the_setting_and_its_source(
    tmp_path: Path, monkeypatch, toml: str, env: dict[str, str], message: str
) -> None:
    write_config(tmp_path, monkeypatch, f"[kinesis]\n{toml}\n")
    with pytest.raises(weir.ConfigError, match=message) as caught:
        kinesis_settings(env)
    assert caught.value.setting in str(caught.value)


def test_dashboard_port_from_defaults_then_toml_then_environment(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("WEIR_CONFIG", raising=False)
    assert dashboard_settings({}) == config.DashboardSettings(port=8501, source="defaults")
    assert dashboard_settings({}).url == "http://127.0.0.1:8501"
    path = write_config(tmp_path, monkeypatch, "[dashboard]\nport = 8600\n")
    assert dashboard_settings({}).port == 8600
    shown = dashboard_settings({"WEIR_DASHBOARD_PORT": "8700"})
    assert shown.port == 8700 and shown.source == f"defaults < {path} < WEIR_DASHBOARD_PORT"
    # The stack's service listens where the settings say, on 127.0.0.1 only.
    monkeypatch.setenv("WEIR_DASHBOARD_PORT", "8701")
    service = stack.dashboard_service()
    assert service.port == 8701 and service.details == {"url": "http://127.0.0.1:8701"}
    assert service.command[-4:] == ["--host", "127.0.0.1", "--port", "8701"]


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("port = 70000", {}, r"weir\.toml: dashboard\.port: expected a port from 1 to 65535"),
        ("port = 'x'", {}, r"dashboard\.port: expected a whole number, got 'x'"),
        ("address = '0.0.0.0'", {}, r"dashboard\.address: unknown setting \(known: port\)"),
        ("", {"WEIR_DASHBOARD_PORT": "0"}, r"WEIR_DASHBOARD_PORT: expected at least 1"),
    ],
)
def test_bad_dashboard_settings_name_their_origin(
    tmp_path: Path, monkeypatch, toml: str, env: dict[str, str], message: str
) -> None:
    write_config(tmp_path, monkeypatch, f"[dashboard]\n{toml}\n")
    with pytest.raises(weir.ConfigError, match=message):
        dashboard_settings(env)


def test_stream_names_are_checked() -> None:
    settings = KinesisSettings(stream_prefix="weir-")
    with pytest.raises(weir.ConfigError, match="not a Kinesis stream name"):
        settings.stream_name("shop events")
    with pytest.raises(weir.ConfigError, match="no local port"):
        KinesisSettings(endpoint=None).local_port()
    assert config.KinesisSettings(endpoint="https://example.com").local_port() == 443
