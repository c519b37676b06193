"""Kinesis → Iceberg, end to end, against a real kinesalite server and a real lake (SQLite
metastore, local warehouse) in a temporary folder: exact round trips in every format,
rejected records with their jobs, transient and permanent storage failures, latency, the
Kinesis table provider in DataFusion, and producer errors. The crash tests are in
``test_streaming_crash.py``."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from pathlib import Path

import datafusion
import pyarrow as pa
import pytest

import weir
from stream_helpers import wait_final
from weir import samples
from weir.config import lake_settings


@pytest.fixture
def stream_env(tmp_path: Path, kinesis_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private lake and private streams (unique prefix) on the session's kinesalite."""
    monkeypatch.setenv("WEIR_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("WEIR_KINESIS_STREAM_PREFIX", f"t{uuid.uuid4().hex[:10]}-")
    monkeypatch.setenv("WEIR_KINESIS_SHARDS", "2")
    return tmp_path


def rows(table: str) -> pa.Table:
    return weir.lake.read(table)


def sorted_rows(table: pa.Table, key: str) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: (r[key] is None, r[key]))


def test_events_come_out_exactly_with_rejected_records_and_final_jobs(stream_env, running_consumer):
    mixed = samples.generate_shop_events(1500, invalid_fraction=0.06, seed=11)
    clean = samples.generate_shop_events(400, seed=12)
    inputs = [
        (samples.to_ndjson(mixed[:900]), "ndjson"),
        (samples.to_json_array(mixed[900:]), "json"),
        (samples.to_csv(clean), "csv"),
    ]
    with running_consumer():
        published = [weir.publish("shop_events", data, fmt) for data, fmt in inputs]
        jobs = wait_final([p.job_id for p in published])

    expected = [weir.process(data, fmt) for data, fmt in inputs]
    # Every valid event, every value, exactly once (types as the lake stores them).
    stored = rows("raw.shop_events").drop_columns(["ingested_at"])
    want = pa.concat_tables([r.output.cast(stored.schema) for r in expected])
    assert stored.num_rows == want.num_rows == sum(r.stats["valid"] for r in expected)
    assert sorted_rows(stored, "event_id") == sorted_rows(want, "event_id")

    # Every rejected record, named by its job and its index in that job's input.
    rejected = rows("raw.shop_events_rejected")
    got = {(r["job_id"], r["record_index"]): r for r in rejected.to_pylist()}
    want_rejected = {
        (p.job_id, r["record_index"]): r
        for p, result in zip(published, expected, strict=True)
        for r in result.rejected.to_pylist()
    }
    assert got.keys() == want_rejected.keys() and len(got) == rejected.num_rows > 0
    for key, row in got.items():
        assert row["raw"] == want_rejected[key]["raw"]
        assert row["violations"] == want_rejected[key]["violations"]

    for p, result in zip(published, expected, strict=True):
        job = jobs[p.job_id]
        assert (job.received, job.valid, job.rejected) == (
            result.stats["records"],
            result.stats["valid"],
            result.stats["rejected"],
        )
        assert job.status == ("partially_rejected" if result.stats["rejected"] else "committed")
        assert job.snapshot_ids and job.records == len(p.records)
    # The checkpoint rides in the snapshot summary of the valid table.
    summary = weir.lake.snapshots("raw.shop_events").column("summary").to_pylist()[-1]
    assert "weir.checkpoint" in summary and "shardId-" in summary


def _break(path: Path) -> Path:
    """Makes ``path`` (a table's data folder) unusable: a file where the folder must be."""
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not a folder: writes under it fail")
    return path


def _data_folder(table: str) -> Path:
    namespace, name = table.split(".")
    return Path(lake_settings().warehouse) / namespace / name / "data"


@pytest.mark.slow
def test_a_storage_failure_is_retried_and_recovered(stream_env, running_consumer):
    weir.lake.ensure_dataset("shop_events")
    broken = _break(_data_folder("raw.shop_events"))
    # The object store comes back after OpenDAL's own retries (1 + 2 + 4 s) gave up once.
    threading.Timer(9.0, broken.unlink).start()
    events = samples.generate_shop_events(600, invalid_fraction=0.05, seed=21)
    with running_consumer(retries=3, retry_backoff_s=0.5) as consumer:
        published = weir.publish("shop_events", samples.to_ndjson(events))
        jobs = wait_final([published.job_id])
    assert jobs[published.job_id].status == "partially_rejected"
    retried = [b for b in consumer.batches if b["attempts"] > 1]
    assert retried and retried[0]["status"] == "committed", consumer.batches
    expected = weir.process(samples.to_ndjson(events), "ndjson")
    # The rejected rows were committed by the first attempt; the retries did not add them again.
    assert rows("raw.shop_events_rejected").num_rows == expected.stats["rejected"]
    assert rows("raw.shop_events").num_rows == expected.stats["valid"]
    assert rows("raw.shop_events_dead_letter").num_rows == 0


@pytest.mark.slow
def test_a_permanent_failure_fails_the_jobs_and_keeps_the_records(stream_env, running_consumer):
    weir.lake.ensure_dataset("shop_events")
    broken = _break(_data_folder("raw.shop_events"))
    lost = samples.generate_shop_events(300, seed=31)
    later = samples.generate_shop_events(200, seed=32)
    with running_consumer(retries=1, retry_backoff_s=0.1) as consumer:
        failed = weir.publish("shop_events", samples.to_ndjson(lost))
        job = wait_final([failed.job_id])[failed.job_id]
        assert job.status == "failed" and "shop_events" in (job.error or ""), job
        assert (job.valid, job.rejected) == (0, 0)
        broken.unlink()
        ok = weir.publish("shop_events", samples.to_ndjson(later))
        assert wait_final([ok.job_id])[ok.job_id].status == "committed"
    assert any(b["status"] == "dead_lettered" for b in consumer.batches)
    dead = rows("raw.shop_events_dead_letter").to_pylist()
    assert {(d["shard_id"], d["sequence_number"]) for d in dead} == {
        (r.shard_id, r.sequence_number) for r in failed.records
    }
    assert all(d["job_id"] == failed.job_id and d["data"][:4] == b"WEIR" for d in dead)
    assert all("shop_events" in d["error"] for d in dead)
    # The checkpoint moved past the dead-lettered records: only the later job is stored.
    stored = rows("raw.shop_events").column("event_id").to_pylist()
    assert sorted(stored) == sorted(e["event_id"] for e in later)


def test_new_data_is_queryable_within_seconds(stream_env, running_consumer):
    event = samples.generate_shop_events(1, seed=41)[0]
    with running_consumer(commit_interval_s=1.0, poll_interval_s=0.2):
        time.sleep(1.0)  # the consumer is idle and polling
        started = time.monotonic()
        published = weir.publish("shop_events", samples.to_ndjson([event]))
        wait_final([published.job_id], timeout=10.0)  # requirement 4.1: within 10 s
        elapsed = time.monotonic() - started
        ctx = weir.connect()
        found = ctx.sql(
            f"select count(*) as n from lake.raw.shop_events where event_id = '{event['event_id']}'"
        ).to_pydict()
    assert found["n"] == [1]
    assert elapsed < 10.0


def test_the_kinesis_table_provider_reads_the_stream_with_sql(stream_env):
    a = weir.publish("shop_events", samples.to_ndjson(samples.generate_shop_events(50, seed=51)))
    b = weir.publish("shop_events", samples.to_ndjson(samples.generate_shop_events(70, seed=52)))
    ctx = datafusion.SessionContext()
    ctx.register_table("incoming", weir.stream.source_table("shop_events"))
    result = ctx.sql(
        "select shard_id, sequence_number, data from incoming where partition_key like '%/0'"
    ).to_pydict()
    assert sorted(zip(result["shard_id"], result["sequence_number"], strict=True)) == sorted(
        (r.shard_id, r.sequence_number) for r in a.records + b.records
    )
    assert sum(len(d) for d in result["data"]) == a.record_bytes + b.record_bytes
    assert all(d[:4] == b"WEIR" for d in result["data"])


def test_producer_errors_are_clear(stream_env):
    huge = {"event_id": "x", "blob": "".join(uuid.uuid4().hex for _ in range(80_000))}
    with pytest.raises(weir.UnpublishableError, match="event 1 of job"):
        weir.publish("shop_events", samples.to_ndjson([{"a": 1}, huge]))
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        weir.publish("nope", b"{}")
    with pytest.raises(weir.UnpublishableError, match="no events"):
        weir.publish("shop_events", b"\n\n")
    with pytest.raises(weir.UnpublishableError, match="invalid JSON"):
        weir.publish("shop_events", b"[{", "json")


def test_consumers_share_shards_fairly_and_take_over_a_dead_ones(stream_env, monkeypatch):
    monkeypatch.setenv("WEIR_KINESIS_SHARDS", "4")
    first = weir.stream.consumer("shop_events", consumer_id="first", lease_ttl_s=1.0)
    assert len(first.balance()) == 4  # alone: every shard
    second = weir.stream.consumer("shop_events", consumer_id="second", lease_ttl_s=1.0)
    assert second.balance() == []  # nothing free yet
    assert len(first.balance()) == 2  # someone is waiting: gives back its extra share
    assert len(second.balance()) == 2
    assert set(first.shard_ids()).isdisjoint(second.shard_ids())
    # `second` dies (stops renewing): its shards are free once the lease expires.
    time.sleep(1.2)
    assert len(first.balance()) == 4
    second.release()
    first.release()
    assert first.shard_ids() == []


@pytest.mark.slow
def test_halt_stops_without_moving_past_the_failed_records(stream_env, running_consumer):
    weir.lake.ensure_dataset("shop_events")
    broken = _break(_data_folder("raw.shop_events"))
    events = samples.generate_shop_events(200, seed=61)
    published = weir.publish("shop_events", samples.to_ndjson(events))
    with running_consumer(retries=0, on_failure="halt") as consumer:
        consumer.thread.join(timeout=60)
    assert isinstance(consumer.error, weir.LakeError), consumer.error
    assert weir.stream.job(published.job_id).status == "published"
    assert rows("raw.shop_events_dead_letter").num_rows == 0
    broken.unlink()
    with running_consumer():
        assert wait_final([published.job_id])[published.job_id].status == "committed"
    assert sorted(rows("raw.shop_events").column("event_id").to_pylist()) == sorted(
        e["event_id"] for e in events
    )
