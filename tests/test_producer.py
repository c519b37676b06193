"""The producer against Kinesis's limits, with a real kinesalite: entries Kinesis refuses in
a PutRecords call (throttling) are sent again until accepted, and only those, so a job is on
the stream once and stored once; a job larger than a record is cut into records that each
fit the 1 MiB Kinesis limit. kinesalite never refuses entries, so the retry test puts a
fault-injecting proxy (``tests/support/kinesis_fault_proxy.py``, a subprocess on loopback)
between the producer and the server. Clear errors for unpublishable input are in
``test_streaming.py``."""

from __future__ import annotations

import collections
import json
import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import datafusion
import pytest

import weir
from tests.support.servers import free_port, stop_process, wait_for_port
from tests.support.stream_helpers import private_streams, wait_final
from weir import samples
from weir.config import KinesisSettings, kinesis_settings

#: Largest Kinesis record, data and partition key together (AWS counts both).
KINESIS_RECORD_LIMIT = 1024 * 1024


@pytest.fixture
def stream_env(tmp_path: Path, kinesis_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    return private_streams(tmp_path, monkeypatch)


def large_job(events: int, seed: int) -> tuple[bytes, list[dict]]:
    """Valid shop events carrying 2,000 random hex digits each (in their free-form
    ``properties``), so they compress about 2:1 only: a few thousand fill several records."""
    rng = random.Random(seed)
    batch = samples.generate_shop_events(events, seed=seed)
    for event in batch:
        event["properties"] = {**(event.get("properties") or {}), "note": rng.randbytes(1000).hex()}
    return samples.to_ndjson(batch), batch


def records_on_stream(job_id: str) -> list[dict]:
    """The Kinesis records of one job on the shop_events stream, read back from the server."""
    ctx = datafusion.SessionContext()
    ctx.register_table("incoming", weir.stream.source_table("shop_events"))
    return ctx.sql(
        "select shard_id, sequence_number, partition_key, data from incoming "
        f"where partition_key like '{job_id}/%'"
    ).to_pylist()


@contextmanager
def throttling_proxy(target: str) -> Iterator[tuple[KinesisSettings, list[dict]]]:
    """Kinesis settings that reach ``target`` through ``kinesis_fault_proxy.py`` (its first
    two PutRecords calls with several entries get their even entries refused), and the list
    its PutRecords lines (sent and refused partition keys) are in once the block ends."""
    port = free_port()
    script = Path(__file__).parent / "support" / "kinesis_fault_proxy.py"
    proxy = subprocess.Popen(
        [sys.executable, str(script), "--port", str(port), "--target", target],
        stdout=subprocess.PIPE,
    )
    calls: list[dict] = []
    try:
        wait_for_port(port, proxy)
        yield kinesis_settings().replace(endpoint=f"http://127.0.0.1:{port}"), calls
    finally:
        stop_process(proxy)
        calls.extend(json.loads(line) for line in proxy.communicate()[0].splitlines())


def test_refused_entries_are_sent_again_and_the_job_is_published_once(
    stream_env, kinesis_endpoint, running_consumer
):
    data, events = large_job(4_000, seed=91)
    with throttling_proxy(kinesis_endpoint) as (through_proxy, calls):
        published = weir.publish("shop_events", data, settings=through_proxy)
    assert len(published.records) >= 4, published.records  # so that a call has several

    # The proxy refused entries in calls where it let others through (a partial failure),
    # each refused entry came back in a later call, and every record went through once.
    refused = [key for call in calls for key in call["refused"]]
    assert refused, calls
    assert all(len(call["sent"]) > len(call["refused"]) for call in calls), calls
    for i, call in enumerate(calls):
        for key in call["refused"]:
            assert any(key in later["sent"] for later in calls[i + 1 :]), (key, calls)
    forwarded = collections.Counter(
        key for call in calls for key in call["sent"] if key not in call["refused"]
    )
    wanted = collections.Counter(f"{published.job_id}/{i}" for i in range(len(published.records)))
    assert forwarded == wanted, calls

    # On the stream once each, where the receipt says; the job published once, stored once.
    on_stream = records_on_stream(published.job_id)
    assert collections.Counter(r["partition_key"] for r in on_stream) == wanted
    assert sorted((r["shard_id"], r["sequence_number"]) for r in on_stream) == sorted(
        (r.shard_id, r.sequence_number) for r in published.records
    )
    job = weir.stream.job(published.job_id)
    assert job is not None and (job.status, job.records) == ("published", len(wanted)), job
    with running_consumer():
        final = wait_final([published.job_id])[published.job_id]
    assert (final.status, final.received, final.valid) == ("committed", len(events), len(events))
    stored = collections.Counter(weir.lake.read("raw.shop_events").column("event_id").to_pylist())
    assert stored == collections.Counter(e["event_id"] for e in events)


def test_a_large_job_is_cut_into_records_within_the_kinesis_limit(stream_env):
    data, events = large_job(4_000, seed=92)
    published = weir.publish("shop_events", data)
    on_stream = records_on_stream(published.job_id)
    assert len(on_stream) == len(published.records) >= 2
    sizes = [len(r["data"]) + len(r["partition_key"].encode()) for r in on_stream]
    assert max(sizes) <= KINESIS_RECORD_LIMIT, sizes
    assert sum(r.events for r in published.records) == len(events) == published.events
    assert sum(len(r["data"]) for r in on_stream) == published.record_bytes
