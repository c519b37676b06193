"""Dead-letter replay (issue 18), against a real kinesalite server and a real lake: the
records a simulated storage outage dead-lettered (the valid table's data folder made
unusable until the consumer gives up) are stored by a replay once the storage is back,
while a consumer keeps committing; their job becomes final with its counts; a second
replay (and ``weir replay`` after it) stores nothing more; ``--dry-run`` writes nothing;
and a record that still cannot be read is reported and stays in the dead-letter table."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import weir
from tests.support import foreign_producers as foreign
from tests.support.servers import kinesis_client
from tests.support.stream_helpers import break_folder, data_folder, private_streams, wait_final
from weir import samples
from weir.config import kinesis_settings


@pytest.fixture
def stream_env(tmp_path: Path, kinesis_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One shard: the records are read in the order they were put."""
    return private_streams(tmp_path, monkeypatch, shards=1)


def event_ids(table: str) -> collections.Counter[str]:
    return collections.Counter(weir.lake.read(table).column("event_id").to_pylist())


@pytest.mark.slow
def test_replay_stores_what_an_outage_dead_lettered_exactly_once(
    stream_env, running_consumer, kinesis_endpoint
):
    weir.lake.ensure_dataset("shop_events")
    broken = break_folder(data_folder("raw.shop_events"))
    lost = samples.generate_shop_events(400, invalid_fraction=0.05, seed=51)
    later = samples.generate_shop_events(100, seed=52)
    unreadable = b"\x1f\x8b\x08\x00 not gzip at all"
    stream = kinesis_settings().stream_name("shop_events")
    with running_consumer(retries=1, retry_backoff_s=0.1) as consumer:
        failed = weir.publish("shop_events", samples.to_ndjson(lost))
        [gzip_position] = foreign.put_records(
            kinesis_client(kinesis_endpoint), stream, [unreadable]
        )
        assert wait_final([failed.job_id])[failed.job_id].status == "failed"
        broken.unlink()  # the storage is back
        ok = weir.publish("shop_events", samples.to_ndjson(later))
        assert wait_final([ok.job_id])[ok.job_id].status == "committed"
        dead = weir.lake.read("raw.shop_events_dead_letter").to_pylist()
        positions = {(r.shard_id, r.sequence_number) for r in failed.records}
        assert {(d["shard_id"], d["sequence_number"]) for d in dead} == positions | {gzip_position}
        before = event_ids("raw.shop_events")
        snapshots_before = weir.lake.snapshots("raw.shop_events").num_rows

        dry = weir.stream.replay("shop_events", dry_run=True)
        expected = weir.process(samples.to_ndjson(lost), "ndjson")
        assert (dry["dead_letters"], dry["replayed"], dry["already_replayed"]) == (
            len(dead),
            len(dead),
            0,
        )
        assert (dry["valid"], dry["rejected"]) == (
            expected.stats["valid"],
            expected.stats["rejected"],
        )
        assert event_ids("raw.shop_events") == before, "a dry run wrote rows"
        assert weir.lake.snapshots("raw.shop_events").num_rows == snapshots_before

        # The replay, while the consumer keeps committing new jobs.
        during = weir.publish(
            "shop_events", samples.to_ndjson(samples.generate_shop_events(50, seed=53))
        )
        report = weir.stream.replay("shop_events")
        second = weir.stream.replay("shop_events")
        assert wait_final([during.job_id])[during.job_id].status == "committed"
    assert consumer.error is None

    assert (report["replayed"], report["valid"], report["rejected"]) == (
        len(dead),
        expected.stats["valid"],
        expected.stats["rejected"],
    )
    assert [tuple(f[:2]) for f in report["still_failing"]] == [gzip_position]
    assert "gzip" in report["still_failing"][0][2]
    assert (second["replayed"], second["already_replayed"], second["valid"]) == (0, len(dead), 0)
    # A third, from the command line, in another process: nothing more.
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "weir.cli",
            "replay",
            "--dataset",
            "shop_events",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert cli.returncode == 0, cli.stderr
    third = json.loads(cli.stdout)
    assert (third["replayed"], third["already_replayed"]) == (0, len(dead))

    # Every valid event once: the lost job's (replayed) and the others'.
    want = collections.Counter(expected.output.column("event_id").to_pylist())
    want.update(e["event_id"] for e in later)
    want.update(e["event_id"] for e in samples.generate_shop_events(50, seed=53))
    assert event_ids("raw.shop_events") == want
    rejected = weir.lake.read("raw.shop_events_rejected").to_pylist()
    keys = [(r["job_id"], r["record_index"]) for r in rejected]
    want_keys = {(failed.job_id, i) for i in expected.rejected.column("record_index").to_pylist()}
    assert len(keys) == len(set(keys)) and set(keys) == want_keys
    # The job the outage failed is final again, with the replay's counts.
    job = weir.stream.job(failed.job_id)
    assert job.status == "partially_rejected" and job.error is None, job
    assert (job.valid, job.rejected) == (expected.stats["valid"], expected.stats["rejected"])
    assert report["job_records"] == len(failed.records)
    # The replayed snapshots are marked; the unreadable record is still a dead letter.
    marked = [
        row["snapshot_id"]
        for row in weir.lake.snapshots("raw.shop_events").to_pylist()
        if json.loads(row["summary"]).get("weir.replay-id") == report["replay_id"]
    ]
    assert marked == report["snapshot_ids"] and marked
    assert weir.lake.read("raw.shop_events_dead_letter").num_rows == len(dead)


def test_a_failing_batch_with_an_unreadable_record_keeps_every_record_for_replay(
    stream_env, running_consumer, kinesis_endpoint
):
    """An unreadable record and a job in one batch while the storage is down: the attempt
    stores the unreadable record's dead-letter row (moving that table's checkpoint past the
    whole batch), then fails; the batch's dead-lettering must still keep the job's records
    (once each), so the replay after the outage stores them."""
    weir.lake.ensure_dataset("shop_events")
    broken = break_folder(data_folder("raw.shop_events"))
    weir.stream.producer().ensure_stream("shop_events")
    stream = kinesis_settings().stream_name("shop_events")
    client = kinesis_client(kinesis_endpoint)
    [unreadable] = foreign.put_records(client, stream, [b"\x1f\x8b\x08\x00 not gzip"])
    events = samples.generate_shop_events(200, seed=61)
    failed = weir.publish("shop_events", samples.to_ndjson(events))  # the same first batch
    with running_consumer(retries=1, retry_backoff_s=0.1):
        job = wait_final([failed.job_id])[failed.job_id]
    assert job.status == "failed", job
    dead = weir.lake.read("raw.shop_events_dead_letter").to_pylist()
    keys = [(d["shard_id"], d["sequence_number"]) for d in dead]
    positions = {(r.shard_id, r.sequence_number) for r in failed.records}
    assert len(keys) == len(set(keys)) and set(keys) == positions | {unreadable}
    broken.unlink()
    report = weir.stream.replay("shop_events")
    assert (report["replayed"], report["valid"]) == (len(keys), 200)
    assert event_ids("raw.shop_events") == collections.Counter(e["event_id"] for e in events)
    assert weir.stream.job(failed.job_id).status == "committed"
