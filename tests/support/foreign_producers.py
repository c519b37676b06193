"""Kinesis records as other producers write them, for the foreign-record tests: what boto3's
``put_record(s)``, the AWS CLI or a Lambda put on a stream (one JSON event, a pretty-printed
one, a JSON array, NDJSON lines, CSV lines with or without a header, any of them gzipped),
and KPL-aggregated records built with the ``aws-kinesis-agg`` library from PyPI (the
Kinesis Producer Library's own aggregation format). ``put_records`` puts them with boto3
and returns where each landed; ``expected`` says what Weir must store for them, from
``weir.process`` on the same events."""

from __future__ import annotations

import collections
import gzip
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aws_kinesis_agg.aggregator import RecordAggregator

import weir
from weir import samples

Event = dict[str, Any]


@dataclass(frozen=True)
class ForeignRecord:
    """One Kinesis record of another producer: its bytes and the events in it, in order.
    ``aggregated``: a KPL record whose user records hold one event each; ``csv``: the
    events are CSV lines (processed with a header)."""

    kind: str
    data: bytes
    events: tuple[Event, ...]
    aggregated: bool = False
    csv: bool = False


def csv_lines(events: Sequence[Event]) -> bytes:
    """CSV lines of ``events`` without the header line (columns in the contract's order)."""
    return samples.to_csv(events).split(b"\r\n", 1)[1]


def kpl_record(payloads: Sequence[bytes]) -> bytes:
    """A KPL aggregated record of ``payloads`` (one user record each), by aws-kinesis-agg."""
    aggregator = RecordAggregator()
    for i, payload in enumerate(payloads):
        assert aggregator.add_user_record(f"user-{i % 3}", payload) is None, "record full"
    _, _, data = aggregator.clear_and_get().get_contents()
    assert data[:4] == b"\xf3\x89\x9a\xc2"
    return data


def json_event(event: Event) -> bytes:
    return json.dumps(event).encode()


#: The kinds of record, each built from a few events.
KINDS: dict[str, Callable[[Sequence[Event]], ForeignRecord]] = {
    "json": lambda e: ForeignRecord("json", json_event(e[0]), tuple(e[:1])),
    "pretty": lambda e: ForeignRecord("pretty", json.dumps(e[0], indent=2).encode(), tuple(e[:1])),
    "array": lambda e: ForeignRecord("array", samples.to_json_array(e), tuple(e)),
    "ndjson": lambda e: ForeignRecord("ndjson", samples.to_ndjson(e), tuple(e)),
    "csv": lambda e: ForeignRecord("csv", csv_lines(e), tuple(e), csv=True),
    "csv-header": lambda e: ForeignRecord("csv-header", samples.to_csv(e), tuple(e), csv=True),
    "gzip": lambda e: ForeignRecord("gzip", gzip.compress(samples.to_ndjson(e)), tuple(e)),
    "kpl": lambda e: ForeignRecord(
        "kpl", kpl_record([json_event(x) for x in e]), tuple(e), aggregated=True
    ),
    "kpl-gzip": lambda e: ForeignRecord(
        "kpl-gzip",
        kpl_record([gzip.compress(json_event(x)) for x in e]),
        tuple(e),
        aggregated=True,
    ),
}


def records_of(
    events: Sequence[Event], kinds: Sequence[str], per_record: int
) -> list[ForeignRecord]:
    """``events`` cut into records of ``per_record`` events, the kinds taken in turn."""
    records = []
    for n, start in enumerate(range(0, len(events), per_record)):
        records.append(KINDS[kinds[n % len(kinds)]](events[start : start + per_record]))
    return records


def put_records(client: Any, stream: str, datas: Sequence[bytes]) -> list[tuple[str, str]]:
    """Puts ``datas`` with boto3's PutRecords (up to 100 a call, refused entries again),
    as another service would; returns each record's (shard id, sequence number)."""
    positions: list[tuple[str, str] | None] = [None] * len(datas)
    for start in range(0, len(datas), 100):
        pending = list(range(start, min(start + 100, len(datas))))
        for attempt in range(20):
            entries = [{"Data": datas[i], "PartitionKey": f"svc-{i}"} for i in pending]
            response = client.put_records(StreamName=stream, Records=entries)
            refused = []
            for i, result in zip(pending, response["Records"], strict=True):
                if "SequenceNumber" in result:
                    positions[i] = (result["ShardId"], result["SequenceNumber"])
                else:
                    refused.append(i)
            if not refused:
                break
            pending = refused
            time.sleep(0.05 * (attempt + 1))
        else:
            raise AssertionError(f"Kinesis kept refusing {len(pending)} records")
    return positions  # type: ignore[return-value]


@dataclass
class Expected:
    """What the lake must hold for some foreign records: valid event ids (with counts), the
    Kinesis positions (shard id, sequence number, sub-sequence number) each valid event id
    may be stored with, and rejected rows keyed by (shard id, sequence number, sub-sequence
    number, record index)."""

    valid: collections.Counter[str]
    rejected: set[tuple[str, str, int | None, int]]
    positions: dict[str, set[tuple[str, str, int | None]]]


def expected(records: Sequence[ForeignRecord], positions: Sequence[tuple[str, str]]) -> Expected:
    valid: collections.Counter[str] = collections.Counter()
    rejected: set[tuple[str, str, int | None, int]] = set()
    stored_at: dict[str, set[tuple[str, str, int | None]]] = collections.defaultdict(set)
    for record, (shard, sequence) in zip(records, positions, strict=True):
        if record.csv:
            result = weir.process(samples.to_csv(record.events), "csv")
        else:
            result = weir.process(samples.to_ndjson(record.events), "ndjson")
        valid_ids = result.output.column("event_id").to_pylist()
        valid.update(valid_ids)
        for event_id in valid_ids:
            # A KPL user record holds one event: its index is its sub-sequence number.
            subs = [i for i, e in enumerate(record.events) if e.get("event_id") == event_id]
            for sub in subs if record.aggregated else [None]:
                stored_at[event_id].add((shard, sequence, sub))
        for index in result.rejected.column("record_index").to_pylist():
            # A KPL user record holds one event: it is the event's sub-sequence number.
            key = (
                (shard, sequence, index, 0) if record.aggregated else (shard, sequence, None, index)
            )
            rejected.add(key)
    return Expected(valid, rejected, dict(stored_at))


def stored_rejected(rejected_rows: list[dict]) -> list[tuple[str, str, int | None, int]]:
    """The keys of rejected rows of foreign records (no job), as in ``Expected``."""
    return [
        (r["shard_id"], r["sequence_number"], r["sub_sequence_number"], r["record_index"])
        for r in rejected_rows
        if r["job_id"] is None
    ]
