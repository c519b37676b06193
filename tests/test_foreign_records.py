"""Records other producers put on a dataset's stream (issue 18), against a real kinesalite
server and a real lake: boto3 puts one JSON event, a pretty-printed one, a JSON array,
NDJSON, CSV lines with and without a header, gzip, and KPL-aggregated records (built by
``aws-kinesis-agg``) between two of Weir's own jobs; the consumer stores each valid event
once with its Kinesis position, quarantines each rejected one with its position (no job),
and dead-letters a record it cannot read with its position, moving on past it. The SIGKILL
crash test with foreign records is in ``test_streaming_crash.py``."""

from __future__ import annotations

import collections
import json
import time
from pathlib import Path

import pytest

import weir
from tests.support import foreign_producers as foreign
from tests.support.servers import kinesis_client
from tests.support.stream_helpers import private_streams, wait_final
from weir import project, samples
from weir.config import kinesis_settings


@pytest.fixture
def one_shard(tmp_path: Path, kinesis_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private lake and streams of one shard: records are read in the order they were put."""
    return private_streams(tmp_path, monkeypatch, shards=1)


def test_records_of_other_producers_are_stored_once_with_their_position(
    one_shard, running_consumer, kinesis_endpoint
):
    events = samples.generate_shop_events(140, invalid_fraction=0.15, seed=81)
    first = weir.publish("shop_events", samples.to_ndjson(events[:10]))
    records = foreign.records_of(events[10:130], list(foreign.KINDS), per_record=12)
    assert {r.kind for r in records} == set(foreign.KINDS)
    # A broken JSON event (the processor rejects it) and gzip that does not decompress (the
    # consumer cannot read the record: dead letter).
    broken_json = b'{"event_id": "x", "event_type": '
    broken_gzip = b"\x1f\x8b\x08\x00" + b"not deflate data" * 4
    client = kinesis_client(kinesis_endpoint)
    stream = kinesis_settings().stream_name("shop_events")
    positions = foreign.put_records(
        client, stream, [r.data for r in records] + [broken_json, broken_gzip]
    )
    last = weir.publish("shop_events", samples.to_ndjson(events[130:]))
    with running_consumer() as consumer:
        jobs = wait_final([first.job_id, last.job_id])

    want = foreign.expected(records, positions[: len(records)])
    jobs_results = [
        weir.process(samples.to_ndjson(part), "ndjson") for part in (events[:10], events[130:])
    ]
    for result in jobs_results:
        want.valid.update(result.output.column("event_id").to_pylist())
    rows = weir.lake.read("raw.shop_events").to_pylist()
    stored = collections.Counter(row["event_id"] for row in rows)
    assert stored == want.valid, "valid events lost or stored twice"
    assert sum(want.valid.values()) > 60 and want.rejected
    # Each stored event keeps the Kinesis record (and KPL user record) it came in.
    publications = {p.job_id: p for p in (first, last)}
    weir_positions = {
        (x.shard_id, x.sequence_number, None) for p in publications.values() for x in p.records
    }
    for row in rows:
        at = (row["kinesis_shard_id"], row["kinesis_sequence_number"])
        at += (row["kinesis_sub_sequence_number"],)
        allowed = want.positions.get(row["event_id"], set())
        assert at in allowed or (not allowed and at in weir_positions), (row["event_id"], at)
        assert row["kinesis_arrival_time"] is not None
    assert sum(row["kinesis_sub_sequence_number"] is not None for row in rows) > 5

    rejected = weir.lake.read("raw.shop_events_rejected").to_pylist()
    got = foreign.stored_rejected(rejected)
    broken_key = (*positions[-2], None, 0)
    assert len(got) == len(set(got)) and set(got) == want.rejected | {broken_key}
    [broken] = [r for r in rejected if r["sequence_number"] == positions[-2][1]]
    assert broken["raw"] == broken_json.decode() and broken["violations"][0]["rule"] == "syntax"
    assert all(r["arrival_time"] is not None for r in rejected)
    # Weir's own jobs' rejected rows carry their Kinesis record too.
    weir_rows = [r for r in rejected if r["job_id"] is not None]
    for row in weir_rows:
        record_positions = {
            (x.shard_id, x.sequence_number) for x in publications[row["job_id"]].records
        }
        assert (row["shard_id"], row["sequence_number"]) in record_positions
        assert row["sub_sequence_number"] is None
    assert len(weir_rows) == sum(r.stats["rejected"] for r in jobs_results)
    assert [(jobs[p.job_id].valid) for p in (first, last)] == [
        r.stats["valid"] for r in jobs_results
    ]

    dead = weir.lake.read("raw.shop_events_dead_letter").to_pylist()
    assert [(d["shard_id"], d["sequence_number"], d["job_id"], d["data"]) for d in dead] == [
        (*positions[-1], None, broken_gzip)
    ]
    assert "gzip" in dead[0]["error"] and "another producer" in dead[0]["error"], dead[0]["error"]
    # The batches count foreign events like any others.
    assert sum(b.dead_lettered for b in consumer.batches) == 1
    assert sum(b.events for b in consumer.batches) == sum(want.valid.values()) + len(rejected)
    # The checkpoints moved past the dead letter: it is not read again.
    for table in ("raw.shop_events", "raw.shop_events_dead_letter"):
        summary = json.loads(weir.lake.snapshots(table).column("summary").to_pylist()[-1])
        checkpoint = json.loads(summary["weir.checkpoint"])[stream]
        assert int(checkpoint[positions[-1][0]]) >= int(positions[-1][1]), (table, checkpoint)


def test_a_contract_that_reads_weir_records_only_dead_letters_other_records(
    one_shard, running_consumer, kinesis_endpoint, tmp_path, monkeypatch
):
    """``"x-weir-record-format": "weir"``: another producer's record is not read as events
    but kept whole in the dead-letter table, and the stream goes on past it."""
    home = tmp_path / "home"
    (home / "contracts").mkdir(parents=True)
    (home / "sql" / "pipeline").mkdir(parents=True)
    document = json.loads(project.contract_path("shop_events").read_text())
    document["x-weir-record-format"] = "weir"
    (home / "contracts" / "shop_events.json").write_text(json.dumps(document))
    sql = project.pipeline_sql_path("shop_events")
    (home / "sql" / "pipeline" / "shop_events.sql").write_text(sql.read_text())
    monkeypatch.setenv("WEIR_HOME", str(home))
    event = samples.generate_shop_events(1, seed=91)[0]
    first = weir.publish("shop_events", samples.to_ndjson([event]))
    stream = kinesis_settings().stream_name("shop_events")
    [position] = foreign.put_records(
        kinesis_client(kinesis_endpoint), stream, [foreign.json_event(event)]
    )
    last = weir.publish("shop_events", samples.to_ndjson(samples.generate_shop_events(3, seed=92)))
    with running_consumer():
        wait_final([first.job_id, last.job_id])
    dead = weir.lake.read("raw.shop_events_dead_letter").to_pylist()
    assert [(d["shard_id"], d["sequence_number"]) for d in dead] == [position]
    assert "not a Weir record" in dead[0]["error"], dead[0]["error"]
    assert weir.lake.read("raw.shop_events").num_rows == 4


def test_a_stream_written_by_other_producers_only_is_stored(
    one_shard, running_consumer, kinesis_endpoint
):
    """Batches without a single Weir record (so without jobs) commit like any other."""
    events = samples.generate_shop_events(30, seed=93)
    records = foreign.records_of(events, ["ndjson", "kpl", "csv"], per_record=10)
    weir.lake.ensure_dataset("shop_events")
    weir.stream.producer().ensure_stream("shop_events")
    stream = kinesis_settings().stream_name("shop_events")
    positions = foreign.put_records(
        kinesis_client(kinesis_endpoint), stream, [r.data for r in records]
    )
    deadline = time.monotonic() + 60
    with running_consumer() as consumer:
        while weir.lake.read("raw.shop_events").num_rows < 30:
            assert time.monotonic() < deadline, "nothing stored within 60 s"
            assert consumer.error is None, consumer.error
            time.sleep(0.2)
    stored = collections.Counter(weir.lake.read("raw.shop_events").column("event_id").to_pylist())
    assert stored == foreign.expected(records, positions).valid
    assert sum(stored.values()) == 30
    assert weir.lake.read("raw.shop_events_dead_letter").num_rows == 0
    assert all(b.status == "committed" for b in consumer.batches) and consumer.batches
