"""Resharding while events flow (issue 18), against a real kinesalite server and a real
lake: boto3 splits a shard and later merges two, as an operator scaling a stream would,
while Weir's producer publishes jobs and a consumer commits every fraction of a second.
Every event is stored exactly once, every job ends final, and each child shard's records
are stored only after its parents were stored to their end (the consumer reads as the
Kinesis Client Library does, so a partition key's records keep their order)."""

from __future__ import annotations

import collections
import json
import threading
import time
from pathlib import Path

import weir
from tests.support.servers import kinesis_client
from tests.support.stream_helpers import private_streams, wait_final
from weir import samples
from weir.config import kinesis_settings


def wait_active(client, stream: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        summary = client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        if summary["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.1)
    raise AssertionError(f"{stream} is not ACTIVE after 30 s")


def open_shards(client, stream: str) -> list[dict]:
    shards = client.list_shards(StreamName=stream)["Shards"]
    return [s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]]


def wait_published(published: list, count: int) -> None:
    deadline = time.monotonic() + 120
    while len(published) < count:
        assert time.monotonic() < deadline, f"only {len(published)} jobs published"
        time.sleep(0.05)


def test_a_split_and_a_merge_while_events_flow_store_every_event_once(
    tmp_path: Path, kinesis_endpoint: str, monkeypatch, running_consumer
):
    private_streams(tmp_path, monkeypatch, shards=2)
    client = kinesis_client(kinesis_endpoint)
    stream = kinesis_settings().stream_name("shop_events")
    events = samples.generate_shop_events(9_000, invalid_fraction=0.02, seed=5)
    jobs = [samples.to_ndjson(events[i : i + 150]) for i in range(0, len(events), 150)]
    weir.stream.producer().ensure_stream("shop_events")
    published: list[weir.stream.Publication] = []

    def produce() -> None:
        for data in jobs:
            published.append(weir.publish("shop_events", data))
            time.sleep(0.04)

    producer = threading.Thread(target=produce)
    with running_consumer(commit_interval_s=0.3):
        producer.start()
        try:
            wait_published(published, 15)
            # Split the first shard at the middle of its hash keys.
            first = open_shards(client, stream)[0]
            low = int(first["HashKeyRange"]["StartingHashKey"])
            high = int(first["HashKeyRange"]["EndingHashKey"])
            client.split_shard(
                StreamName=stream,
                ShardToSplit=first["ShardId"],
                NewStartingHashKey=str((low + high) // 2 + 1),
            )
            wait_active(client, stream)
            wait_published(published, 35)
            # Merge two adjacent open shards: the split's upper child and its neighbour.
            by_range = sorted(
                open_shards(client, stream), key=lambda s: int(s["HashKeyRange"]["StartingHashKey"])
            )
            client.merge_shards(
                StreamName=stream,
                ShardToMerge=by_range[1]["ShardId"],
                AdjacentShardToMerge=by_range[2]["ShardId"],
            )
            wait_active(client, stream)
        finally:
            producer.join()
        final = wait_final([p.job_id for p in published], timeout=120)
    assert len(published) == len(jobs)

    shards = {s["ShardId"]: s for s in client.list_shards(StreamName=stream)["Shards"]}
    children = {i: s for i, s in shards.items() if "ParentShardId" in s}
    assert len(shards) == 5 and len(children) == 3, shards
    landed = collections.Counter(r.shard_id for p in published for r in p.records)
    assert all(landed[c] for c in children), f"no job landed on every child shard: {landed}"

    # Exactly once: every valid event once, every rejected one once, every job final.
    expected = [weir.process(data, "ndjson") for data in jobs]
    want = collections.Counter(
        e for result in expected for e in result.output.column("event_id").to_pylist()
    )
    stored = collections.Counter(weir.lake.read("raw.shop_events").column("event_id").to_pylist())
    assert stored == want, "valid events lost or stored twice across the resharding"
    rejected = weir.lake.read("raw.shop_events_rejected").to_pylist()
    keys = [(r["job_id"], r["record_index"]) for r in rejected]
    want_keys = {
        (p.job_id, i)
        for p, result in zip(published, expected, strict=True)
        for i in result.rejected.column("record_index").to_pylist()
    }
    assert len(keys) == len(set(keys)) and set(keys) == want_keys
    for p, result in zip(published, expected, strict=True):
        job = final[p.job_id]
        assert (job.valid, job.rejected) == (result.stats["valid"], result.stats["rejected"])
    assert weir.lake.read("raw.shop_events_dead_letter").num_rows == 0

    # Parents first: in the valid table's history, a child shard's first checkpoint comes
    # after the snapshot that stored each of its parents to the parent's end.
    checkpoints = [
        json.loads(json.loads(summary).get("weir.checkpoint", "{}")).get(stream, {})
        for summary in weir.lake.snapshots("raw.shop_events").column("summary").to_pylist()
    ]

    def first_snapshot(predicate) -> int:
        return next(i for i, checkpoint in enumerate(checkpoints) if predicate(checkpoint))

    for child_id, child in children.items():
        started = first_snapshot(lambda c, child_id=child_id: child_id in c)
        for parent_id in (child["ParentShardId"], child.get("AdjacentParentShardId")):
            if parent_id is None:
                continue
            end = int(shards[parent_id]["SequenceNumberRange"]["EndingSequenceNumber"])
            finished = first_snapshot(
                lambda c, parent_id=parent_id, end=end: int(c.get(parent_id, 0)) >= end
            )
            assert finished < started, (child_id, parent_id, finished, started)
