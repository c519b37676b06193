"""Crash tests for exactly-once streaming: while 200,000 events are produced, consumer
processes (``weir consume``) are killed with SIGKILL at random moments at least 10 times and
restarted; afterwards the lake holds exactly the produced events (each valid one once in
``raw.shop_events``, each invalid one once in ``raw.shop_events_rejected``) and every job is
final. Once with one consumer on 2 shards, once with 2 consumers sharing 4 shards (one of
them killed again and again, so leases move), and once with records of other producers
(JSON, CSV, gzip, KPL aggregated; put with boto3) instead of Weir's jobs. Real kinesalite,
real lake, real processes."""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import BinaryIO

import pytest

import weir
from tests.support import foreign_producers as foreign
from tests.support import stream_helpers
from tests.support.servers import kinesis_client, stop_process
from weir import samples
from weir.config import kinesis_settings

EVENTS = 200_000
JOB_SIZE = 2_000
KILLS = 10


def consume_command(consumer_id: str) -> list[str]:
    return stream_helpers.consume_command(consumer_id, commit_interval_s=0.5, lease_ttl_s=2)


def commits(table: str) -> list[dict[str, str]]:
    """The summaries of ``table``'s snapshots: a consumer's carry ``weir.batch-id`` and
    ``weir.consumer``."""
    return [json.loads(s) for s in weir.lake.snapshots(table).column("summary").to_pylist()]


def batch_ids(table: str) -> set[str]:
    return {c["weir.batch-id"] for c in commits(table) if "weir.batch-id" in c}


class Victim:
    """The consumer killed with SIGKILL and restarted again and again: at random moments by
    the test, and, to hit the window between the commits of one batch, right after it logs
    its first commit to the rejected table (before the valid table's commit), and sometimes
    after later ones."""

    def __init__(self, env: dict[str, str], out: BinaryIO) -> None:
        self.env, self.out = env, out
        self.rng = random.Random(7)
        self.random_kills = 0
        self.mid_batch_kills = 0
        self.lock = threading.Lock()  # one killer and restarter at a time
        self.stopped = False
        self.mid_batch_killed = threading.Event()
        self.process = self._start()

    def _start(self) -> subprocess.Popen:
        process = subprocess.Popen(
            consume_command("victim"), env=self.env, stderr=subprocess.PIPE, start_new_session=True
        )
        threading.Thread(target=self._watch, args=(process,), daemon=True).start()
        return process

    def _watch(self, process: subprocess.Popen) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self.out.write(line)
            rejected_commit = b'"event":"commit"' in line and b"shop_events_rejected" in line
            first = self.mid_batch_kills == 0
            if rejected_commit and self.mid_batch_kills < 5 and (first or self.rng.random() < 0.3):
                with self.lock:
                    # Restarted at once: the last life may end here, after the test's kills.
                    if process is self.process and not self.stopped:
                        self._restart()
                        self.mid_batch_kills += 1
                        self.mid_batch_killed.set()
        process.stderr.close()

    def _restart(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = self._start()

    def kill_and_restart(self) -> None:
        with self.lock:
            self._restart()
            self.random_kills += 1

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            stop_process(self.process)


@pytest.mark.slow
@pytest.mark.parametrize(("consumers", "shards"), [(1, 2), (2, 4)])
def test_sigkilled_consumers_store_every_event_exactly_once(
    consumers: int, shards: int, tmp_path: Path, kinesis_endpoint: str, monkeypatch
):
    monkeypatch.setenv("WEIR_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("WEIR_KINESIS_STREAM_PREFIX", f"crash{uuid.uuid4().hex[:8]}-")
    monkeypatch.setenv("WEIR_KINESIS_SHARDS", str(shards))
    monkeypatch.setenv("WEIR_LOG", stream_helpers.CONSUMER_LOG)
    env = dict(os.environ)
    events = samples.generate_shop_events(EVENTS, invalid_fraction=0.01, seed=1234)
    jobs = [samples.to_ndjson(events[i : i + JOB_SIZE]) for i in range(0, EVENTS, JOB_SIZE)]
    weir.lake.ensure_dataset("shop_events")
    log = tmp_path / "consumers.log"
    out = log.open("ab")

    published: list[str] = []

    def produce() -> None:
        for data in jobs:
            published.append(weir.publish("shop_events", data).job_id)
            time.sleep(0.12)  # a steady stream over the kills, not one burst

    producer = threading.Thread(target=produce)
    # The steady consumer (if any) and the victim, killed with SIGKILL and restarted.
    steady = [
        subprocess.Popen(
            consume_command(f"steady-{i}"), env=env, stderr=out, start_new_session=True
        )
        for i in range(consumers - 1)
    ]
    victim = Victim(env, out)
    producer.start()
    try:
        kill_until_done(victim, producer)
        producer.join()
        assert len(published) == len(jobs)
        final = weir.stream.wait_for_jobs(published, timeout=180)
    finally:
        producer.join()
        victim.stop()
        for process in steady:
            stop_process(process)
        out.close()
    assert victim.random_kills >= KILLS and victim.mid_batch_kills >= 1
    not_final = [j for j in published if not (final[j] and final[j].final)]
    assert not not_final, f"{len(not_final)} jobs not final; log: {log.read_text()[-3000:]}"
    # A kill landed between a batch's rejected and valid commits: a rejected commit whose
    # batch neither committed the valid table nor lived to record its metrics. Its restart
    # committed those records' valid rows and skipped their rejected ones (counted below).
    recorded = set(weir.stream.batches("shop_events").column("batch_id").to_pylist())
    half_done = batch_ids("raw.shop_events_rejected") - batch_ids("raw.shop_events") - recorded
    assert half_done, "no kill landed between the rejected and the valid commit of a batch"

    expected = [weir.process(data, "ndjson") for data in jobs]
    want_valid = collections.Counter(
        event_id for result in expected for event_id in result.output.column("event_id").to_pylist()
    )
    stored = weir.lake.read("raw.shop_events").column("event_id").to_pylist()
    got_valid = collections.Counter(stored)
    assert sum(got_valid.values()) == sum(want_valid.values())
    assert got_valid == want_valid, "valid events lost or stored twice"
    rejected = weir.lake.read("raw.shop_events_rejected")
    keys = list(
        zip(rejected["job_id"].to_pylist(), rejected["record_index"].to_pylist(), strict=True)
    )
    want_keys = {
        (job_id, index)
        for job_id, result in zip(published, expected, strict=True)
        for index in result.rejected.column("record_index").to_pylist()
    }
    assert len(keys) == len(set(keys)) == len(want_keys) and set(keys) == want_keys
    assert weir.lake.read("raw.shop_events_dead_letter").num_rows == 0
    for job_id, result in zip(published, expected, strict=True):
        job = final[job_id]
        assert (job.valid, job.rejected) == (result.stats["valid"], result.stats["rejected"])
    if consumers > 1:  # both stored rows (the victim may not live to finish a whole batch)
        tables = ("raw.shop_events", "raw.shop_events_rejected")
        committers = {c.get("weir.consumer") for table in tables for c in commits(table)}
        assert {"steady-0", "victim"} <= committers


def kill_until_done(victim: Victim, producer: threading.Thread) -> None:
    """Kills the victim at random moments, at least ``KILLS`` times, until ``producer`` ends;
    the first kill comes right after a rejected commit (the victim lives until then): on a
    loaded machine most lives are too short to commit before a random kill."""
    rng = random.Random(99)
    assert victim.mid_batch_killed.wait(timeout=120), "the victim committed no rejected rows"
    while victim.random_kills < KILLS or producer.is_alive():
        time.sleep(rng.uniform(0.4, 2.5))
        victim.kill_and_restart()


def wait_stored(stream: str, positions: list[tuple[str, str]], timeout: float = 180) -> None:
    """Waits until the valid table's checkpoint covers every one of ``positions``."""
    last: dict[str, int] = {}
    for shard, sequence in positions:
        last[shard] = max(last.get(shard, 0), int(sequence))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reached: dict[str, int] = collections.defaultdict(int)
        for summary in commits("raw.shop_events"):
            for shard, sequence in (
                json.loads(summary.get("weir.checkpoint", "{}")).get(stream, {}).items()
            ):
                reached[shard] = max(reached[shard], int(sequence))
        if all(reached[shard] >= sequence for shard, sequence in last.items()):
            return
        time.sleep(0.5)
    raise AssertionError(f"records not stored within {timeout} s: {dict(reached)} < {last}")


@pytest.mark.slow
def test_a_sigkilled_consumer_stores_other_producers_records_exactly_once(
    tmp_path: Path, kinesis_endpoint: str, monkeypatch
):
    """Records as other services write them (every kind of tests/support/foreign_producers.py:
    JSON, NDJSON, CSV, gzip, KPL aggregated, put with boto3) through the same kills: each
    valid event stored once, each rejected one quarantined once with its Kinesis position."""
    monkeypatch.setenv("WEIR_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("WEIR_KINESIS_STREAM_PREFIX", f"crashf{uuid.uuid4().hex[:8]}-")
    monkeypatch.setenv("WEIR_KINESIS_SHARDS", "2")
    monkeypatch.setenv("WEIR_LOG", stream_helpers.CONSUMER_LOG)
    env = dict(os.environ)
    events = samples.generate_shop_events(40_000, invalid_fraction=0.01, seed=4321)
    records = foreign.records_of(events, list(foreign.KINDS), per_record=25)
    weir.lake.ensure_dataset("shop_events")
    stream = kinesis_settings().stream_name("shop_events")
    weir.stream.producer().ensure_stream("shop_events")
    client = kinesis_client(kinesis_endpoint)
    log = tmp_path / "consumers.log"
    out = log.open("ab")
    positions: list[tuple[str, str]] = []

    def produce() -> None:
        for start in range(0, len(records), 20):
            chunk = records[start : start + 20]
            positions.extend(foreign.put_records(client, stream, [r.data for r in chunk]))
            time.sleep(0.15)  # a steady stream over the kills, not one burst

    producer = threading.Thread(target=produce)
    victim = Victim(env, out)
    producer.start()
    try:
        kill_until_done(victim, producer)
        producer.join()
        assert len(positions) == len(records)
        wait_stored(stream, positions)
    finally:
        producer.join()
        victim.stop()
        out.close()
    assert victim.random_kills >= KILLS and victim.mid_batch_kills >= 1
    recorded = set(weir.stream.batches("shop_events").column("batch_id").to_pylist())
    half_done = batch_ids("raw.shop_events_rejected") - batch_ids("raw.shop_events") - recorded
    assert half_done, "no kill landed between the rejected and the valid commit of a batch"

    want = foreign.expected(records, positions)
    stored = collections.Counter(weir.lake.read("raw.shop_events").column("event_id").to_pylist())
    assert sum(stored.values()) == sum(want.valid.values())
    assert stored == want.valid, "valid events lost or stored twice"
    got = foreign.stored_rejected(weir.lake.read("raw.shop_events_rejected").to_pylist())
    assert len(got) == len(set(got)) == len(want.rejected) and set(got) == want.rejected
    assert weir.lake.read("raw.shop_events_dead_letter").num_rows == 0
