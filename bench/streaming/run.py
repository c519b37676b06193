"""Streaming benchmark: Kinesis → Iceberg throughput and freshness, outcomes checked.

A naive Python consumer, measured in the same run and the same way, is the baseline; every
run's jobs and lake tables are checked, and a wrong outcome fails the benchmark.

    .venv/bin/python bench/streaming/run.py [--events 1000000] [--job-size 10000] \\
        [--shards 4] [--rate 20000] [--freshness-seconds 30] [--baseline-events N] \\
        [--json-out bench/results/streaming.json]

Everything runs on this machine: kinesalite (started here, LevelDB in a temporary folder)
and ``weir consume`` processes (commit interval 1 s) as a user would run them. Each run
below gets its own stream and its own lake (SQLite metastore and local warehouse), so its
tables hold exactly what it published.

Events: 100,000 generated shop events (``weir.samples``, 1 % invalid) repeated; in each
repetition after the first, the valid events get new event ids (the last 12 hex digits
changed), so every valid event published by a run is one id. What the contract rejects is
known beforehand (``weir.process`` over the 100,000).

* **throughput**: ``--events`` events published in jobs of ``--job-size`` (the producer
  packs them into zstd Weir records), then drained by 1 ``weir consume`` process, and again
  (new stream, new lake) by 2 processes sharing ``--shards`` shards. Drain rate = events /
  (end of the last batch's commit - start of the first batch's read), from the consumer
  batch metrics. The batches of at least 100,000 events give the time to process and commit
  such a batch.
* **a 100,000-event batch**: that many events waiting, one consumer: the batch's read,
  process (unpack, contract, pipeline SQL) and commit (Parquet + 2 Iceberg commits) times.
* **freshness**: with 1 (then 2) consumers running, jobs of ``--rate``/10 events published
  every 100 ms for ``--freshness-seconds``; per job, put acknowledged → job committed (its
  rows are visible through ``weir.connect()`` by then): p50/p99.
* **baseline**: what one would write without Weir, in one Python process: boto3 GetRecords
  on every shard, ``json.loads`` per event, ``pyarrow`` table, pyiceberg ``append`` per
  batch, no validation. Its batches follow the consumer's rule (read until the commit
  interval ends or 4 MiB per shard, then commit) and it drains ``--baseline-events``
  (default: ``--events``) of the same events, already waiting, timed like the consumer:
  start of the first batch's read → end of the last batch's commit. Reported: one Weir
  consumer / the baseline; the two-consumer run is reported as scaling over one consumer.

Checks, after each run and outside its timed window (any failure exits non-zero with the
reason, and no ``--json-out`` file is written): every job is ``committed``
(``partially_rejected`` if it holds invalid events) with exactly its expected received /
valid / rejected counts; ``raw.shop_events`` holds each expected valid event id exactly as
many times as it was published (``collections.Counter``), ``raw.shop_events_rejected`` each
expected (job id, record index) exactly once, ``raw.shop_events_dead_letter`` nothing; the
baseline's table holds exactly the event lines published to it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

os.environ.setdefault("WEIR_LOG", "error")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.support

import weir  # noqa: E402
from weir import samples  # noqa: E402
from weir.stack import LocalKinesis  # noqa: E402

BASE_EVENTS = 100_000
BATCH_EVENTS = 100_000
# The consumer's defaults (`weir consume`, ConsumerOptions), which the baseline follows too.
COMMIT_INTERVAL_S = 1.0
MAX_BYTES_PER_SHARD = 4 << 20
POLL_INTERVAL_S = 0.2
JOBS_TIMEOUT_S = 600.0


def fail(message: str) -> NoReturn:
    """Stops the benchmark: the figures of a run whose outcome is wrong mean nothing."""
    raise SystemExit(f"bench/streaming FAILED: {message}")


@dataclass(frozen=True)
class SampleEvents:
    """The benchmark's input: NDJSON lines and, per line, the event id the lake must hold
    for it (``None``: the contract rejects the line)."""

    lines: list[bytes]
    valid_ids: list[str | None]


def repeated_event_id(event_id: str, repetition: int) -> str:
    """``event_id`` with its last 12 hex digits XORed with ``repetition`` (same case)."""
    node = f"{int(event_id[24:], 16) ^ repetition:012x}"
    return event_id[:24] + (node.upper() if event_id.isupper() else node)


def sample_events(count: int) -> SampleEvents:
    """``count`` lines: 100,000 generated events (1 % invalid) repeated, valid events with a
    new id in each repetition."""
    base_events = samples.generate_shop_events(BASE_EVENTS, invalid_fraction=0.01, seed=5)
    base_lines = samples.to_ndjson(base_events).splitlines(keepends=True)
    processed = weir.process(b"".join(base_lines), "ndjson")
    rejected = set(processed.rejected.column("record_index").to_pylist())
    base_ids = [None if i in rejected else e["event_id"] for i, e in enumerate(base_events)]
    if Counter(processed.output.column("event_id").to_pylist()) != Counter(
        i for i in base_ids if i is not None
    ):
        fail("the processor's output event ids are not the accepted input events' ids")
    lines: list[bytes] = []
    valid_ids: list[str | None] = []
    for i in range(count):
        repetition, base = divmod(i, BASE_EVENTS)
        line, event_id = base_lines[base], base_ids[base]
        if repetition and event_id is not None:
            new_id = repeated_event_id(event_id, repetition)
            new_line = line.replace(
                f'"event_id":"{event_id}"'.encode(), f'"event_id":"{new_id}"'.encode(), 1
            )
            if new_line == line:
                fail(f"line {base} does not hold its event id {event_id}")
            line, event_id = new_line, new_id
        lines.append(line)
        valid_ids.append(event_id)
    return SampleEvents(lines, valid_ids)


@dataclass(frozen=True)
class PublishedJob:
    """A job the benchmark published: ``events`` lines from ``first_line`` on."""

    job_id: str
    first_line: int
    events: int

    @property
    def line_range(self) -> range:
        return range(self.first_line, self.first_line + self.events)


def publish_job(events: SampleEvents, first_line: int, count: int) -> PublishedJob:
    data = b"".join(events.lines[first_line : first_line + count])
    return PublishedJob(weir.publish("shop_events", data).job_id, first_line, count)


def publish_all(
    events: SampleEvents, count: int, job_size: int, threads: int = 4
) -> tuple[list[PublishedJob], float]:
    """The first ``count`` lines in jobs of ``job_size``, from ``threads`` threads."""
    spans = [(i, min(job_size, count - i)) for i in range(0, count, job_size)]
    published: list[PublishedJob] = []
    lock = threading.Lock()

    def work(part: list[tuple[int, int]]) -> None:
        for first_line, size in part:
            job = publish_job(events, first_line, size)
            with lock:
                published.append(job)

    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(spans[i::threads],)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    seconds = time.perf_counter() - started
    if len(published) != len(spans):
        fail(f"{len(spans) - len(published)} of {len(spans)} jobs were not published")
    return published, seconds


def fresh_run(folder: Path, name: str, shards: int) -> None:
    """A new stream and a new lake (metastore, warehouse) for the next run, so its tables
    hold exactly what it publishes; tables created now, outside any timed window."""
    os.environ["WEIR_KINESIS_STREAM_PREFIX"] = f"bench{uuid.uuid4().hex[:6]}-"
    os.environ["WEIR_KINESIS_SHARDS"] = str(shards)
    os.environ["WEIR_STATE_DIR"] = str(folder / "runs" / name)
    weir.lake.ensure_dataset("shop_events")


def start_consumers(count: int, log: Path) -> list[subprocess.Popen]:
    out = log.open("ab")
    processes = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "weir.cli", "consume", "--dataset", "shop_events"),
                *("--consumer-id", f"bench-{i}", "--lease-ttl", "3"),
            ],
            stderr=out,
            env={**os.environ, "WEIR_LOG": "warn"},
        )
        for i in range(count)
    ]
    out.close()
    return processes


def stop_consumers(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        p.terminate()
    for p in processes:
        p.wait(timeout=60)


def check_jobs(
    jobs: dict[str, weir.stream.Job | None], published: list[PublishedJob], events: SampleEvents
) -> None:
    """Every job final as ``committed`` (``partially_rejected`` when it holds invalid
    events) with exactly the expected received, valid and rejected counts."""
    wrong = []
    for p in published:
        valid = sum(events.valid_ids[i] is not None for i in p.line_range)
        rejected = p.events - valid
        expected = ("partially_rejected" if rejected else "committed", p.events, valid, rejected)
        job = jobs.get(p.job_id)
        found = None if job is None else (job.status, job.received, job.valid, job.rejected)
        if found != expected:
            error = f", error {job.error!r}" if job is not None and job.error else ""
            wrong.append(f"{p.job_id}: expected {expected}, found {found}{error}")
    if wrong:
        fail(
            f"{len(wrong)} of {len(published)} jobs not as expected "
            "(status, received, valid, rejected): " + "; ".join(wrong[:5])
        )


def multiset_difference(table: str, expected: Counter, stored: Counter) -> list[str]:
    """What ``stored`` lacks and what it has beyond ``expected``, with a few examples."""

    def examples(rows: Counter) -> str:
        return ", ".join(repr(row)[:80] for row in list(rows)[:3])

    missing, extra = expected - stored, stored - expected
    problems = []
    if missing:
        problems.append(f"{table}: {missing.total()} expected rows missing ({examples(missing)})")
    if extra:
        problems.append(
            f"{table}: {extra.total()} rows duplicated or not published ({examples(extra)})"
        )
    return problems


def check_lake(published: list[PublishedJob], events: SampleEvents) -> dict:
    """The run's lake holds exactly what it published: each valid event id as many times
    as published, each rejected (job id, record index) once, no dead letter."""
    expected_valid: Counter[str | None] = Counter()
    expected_rejected: Counter[tuple[str, int]] = Counter()
    for p in published:
        for i in p.line_range:
            if events.valid_ids[i] is None:
                expected_rejected[(p.job_id, i - p.first_line)] += 1
            else:
                expected_valid[events.valid_ids[i]] += 1
    ctx = weir.connect()  # kept in a variable: a DataFrame does not keep its context alive

    def column_values(query: str) -> Iterable[Any]:
        table = ctx.sql(query).to_arrow_table()
        return zip(*(c.to_pylist() for c in table.columns), strict=True)

    stored_valid = Counter(v for (v,) in column_values("select event_id from lake.raw.shop_events"))
    stored_rejected = Counter(
        column_values("select job_id, record_index from lake.raw.shop_events_rejected")
    )
    ((dead_letter,),) = column_values("select count(*) from lake.raw.shop_events_dead_letter")
    problems = multiset_difference("raw.shop_events", expected_valid, stored_valid)
    problems += multiset_difference("raw.shop_events_rejected", expected_rejected, stored_rejected)
    if dead_letter:
        problems.append(f"raw.shop_events_dead_letter: {dead_letter} records")
    if problems:
        fail("lake check: " + "; ".join(problems))
    return {
        "valid_rows": stored_valid.total(),
        "rejected_rows": stored_rejected.total(),
        "dead_letter_rows": dead_letter,
    }


def drain_seconds(batches: list[dict]) -> float:
    """Start of the first batch's read → end of the last batch's commit: the window both the
    Weir consumers and the baseline are timed over."""
    first = min(b["started_at_ms"] for b in batches)
    last = max(b["started_at_ms"] + b["batch_ms"] for b in batches)
    return (last - first) / 1000


def throughput(consumers: int, events: SampleEvents, args: argparse.Namespace) -> dict:
    fresh_run(args.folder, f"throughput-{consumers}", args.shards)
    published, put_seconds = publish_all(events, args.events, args.job_size)
    processes = start_consumers(consumers, args.log)
    try:
        jobs = weir.stream.wait_for_jobs([p.job_id for p in published], timeout=JOBS_TIMEOUT_S)
    finally:
        stop_consumers(processes)
    batches = [b for b in weir.stream.batches("shop_events").to_pylist() if b["events"] > 0]
    check_jobs(jobs, published, events)
    lake = check_lake(published, events)
    seconds = drain_seconds(batches)
    big = [b for b in batches if b["events"] >= 100_000]
    result = {
        "consumers": consumers,
        "events": args.events,
        "put_seconds": round(put_seconds, 2),
        "put_events_per_s": round(args.events / put_seconds),
        "batches": len(batches),
        "consume_seconds": round(seconds, 2),
        "events_per_s": round(args.events / seconds),
    }
    if big:
        result["big_batches"] = len(big)
        for key in ("read_ms", "process_ms", "commit_ms", "batch_ms"):
            result[f"big_batch_{key}_p50"] = round(statistics.median(b[key] for b in big), 1)
        result["big_batch_events_p50"] = round(statistics.median(b["events"] for b in big))
    result["lake"] = lake
    print(json.dumps(result), flush=True)
    return result


def batch_100k(events: SampleEvents, args: argparse.Namespace) -> dict:
    """One backlog of 100,000 events taken by one consumer: the batch's timings."""
    fresh_run(args.folder, "batch-100k", args.shards)
    published, _ = publish_all(events, BATCH_EVENTS, args.job_size)
    processes = start_consumers(1, args.log)
    try:
        jobs = weir.stream.wait_for_jobs([p.job_id for p in published], timeout=JOBS_TIMEOUT_S)
    finally:
        stop_consumers(processes)
    batches = weir.stream.batches("shop_events").to_pylist()
    check_jobs(jobs, published, events)
    lake = check_lake(published, events)
    biggest = max(batches, key=lambda b: b["events"])
    result = {
        key: round(biggest[key], 1)
        for key in ("events", "source_records", "read_ms", "process_ms", "commit_ms", "batch_ms")
    }
    result["process_and_commit_ms"] = round(biggest["process_ms"] + biggest["commit_ms"], 1)
    result["lake"] = lake
    print(json.dumps({"batch_100k": result}), flush=True)
    return result


def freshness(consumers: int, events: SampleEvents, args: argparse.Namespace) -> dict:
    fresh_run(args.folder, f"freshness-{consumers}", args.shards)
    processes = start_consumers(consumers, args.log)
    per_job = max(1, args.rate // 10)
    published: list[PublishedJob] = []
    acks: dict[str, float] = {}
    try:
        # Let the consumers start and take their leases before measuring.
        warmup = publish_job(events, 0, 10)
        weir.stream.wait_for_jobs([warmup.job_id], timeout=60)
        published.append(warmup)
        started = time.monotonic()
        i = 0
        while time.monotonic() - started < args.freshness_seconds:
            tick = started + i * 0.1
            time.sleep(max(0.0, tick - time.monotonic()))
            job = publish_job(events, (i * per_job) % (len(events.lines) - per_job), per_job)
            acks[job.job_id] = time.time() * 1000
            published.append(job)
            i += 1
        jobs = weir.stream.wait_for_jobs([p.job_id for p in published], timeout=JOBS_TIMEOUT_S)
    finally:
        stop_consumers(processes)
    check_jobs(jobs, published, events)
    lake = check_lake(published, events)
    delays = sorted((jobs[job_id].updated_at_ms - acked) / 1000 for job_id, acked in acks.items())
    result = {
        "consumers": consumers,
        "rate_events_per_s": per_job * 10,
        "jobs": len(delays),
        "freshness_p50_s": round(statistics.median(delays), 3),
        "freshness_p99_s": round(delays[int(len(delays) * 0.99) - 1], 3),
        "freshness_max_s": round(delays[-1], 3),
        "lake": lake,
    }
    print(json.dumps(result), flush=True)
    return result


def weir_payload(data: bytes) -> bytes:
    """The compressed events of a Weir record (version 2 header, see docs/streaming.md):
    magic, version, flags, format, reserved, CRC32, dataset, segments (job id, first index,
    event count each)."""
    magic, version, _flags, _format, _reserved, _crc = struct.unpack_from("<4s4BI", data)
    if magic != b"WEIR" or version != 2:
        raise ValueError(f"not a version 2 Weir record: {data[:8]!r}")
    at = 12
    at += 1 + data[at]  # dataset
    (segments,) = struct.unpack_from("<I", data, at)
    at += 4
    for _ in range(segments):
        at += 1 + data[at] + 12  # job id, first event index (u64), event count (u32)
    return data[at:]


def naive_read(client: Any, iterators: dict[str, str]) -> list[bytes]:
    """One batch's Kinesis records, by the consumer's rule: every shard is read until the
    commit interval ends (polling when caught up) or it gave 4 MiB, one GetRecords call per
    shard in turn, sized by the mean record so a shard overshoots by one record at most."""
    deadline = time.monotonic() + COMMIT_INTERVAL_S
    taken = dict.fromkeys(iterators, 0)
    mean_record_bytes = 0
    records: list[bytes] = []
    while open_shards := [s for s in iterators if taken[s] < MAX_BYTES_PER_SHARD]:
        got = behind = 0
        for shard in open_shards:
            limit = (
                (MAX_BYTES_PER_SHARD - taken[shard]) // mean_record_bytes
                if mean_record_bytes
                else 4  # Weir records reach 1 MiB: a first, small call finds out their size
            )
            out = client.get_records(ShardIterator=iterators[shard], Limit=max(1, limit))
            iterators[shard] = out["NextShardIterator"]
            behind = max(behind, out.get("MillisBehindLatest", 0))
            for record in out["Records"]:
                records.append(record["Data"])
                taken[shard] += len(record["Data"])
                got += 1
            if records:
                mean_record_bytes = sum(map(len, records)) // len(records)
        if got == 0 and behind == 0:
            if time.monotonic() + POLL_INTERVAL_S > deadline:
                break
            time.sleep(POLL_INTERVAL_S)
        elif time.monotonic() >= deadline and records:
            break
    return records


def naive_baseline(events: SampleEvents, args: argparse.Namespace) -> dict:
    """boto3 + json + pyarrow + pyiceberg, draining the same Weir records."""
    import pyarrow as pa
    import zstandard
    from pyiceberg.catalog.sql import SqlCatalog

    from tests.support.servers import kinesis_client

    fresh_run(args.folder, "baseline", args.shards)
    published, _ = publish_all(events, args.baseline_events, args.job_size)
    # Its own catalog file: two SQLite libraries in one process must not share a database.
    folder = args.folder / "runs" / "baseline"
    catalog = SqlCatalog(
        "naive",
        uri=f"sqlite:///{folder / 'naive.db'}",
        warehouse=f"file://{folder / 'naive-warehouse'}",
    )
    catalog.create_namespace("bench")
    schema = pa.schema(
        [
            ("event_id", pa.string()),
            ("event_type", pa.string()),
            ("event_time", pa.string()),
            ("user_id", pa.string()),
            ("unit_price", pa.float64()),
            ("quantity", pa.int64()),
            ("raw", pa.string()),
        ]
    )
    table = catalog.create_table("bench.naive", schema=schema)
    client = kinesis_client(os.environ["WEIR_KINESIS_ENDPOINT"])
    stream = f"{os.environ['WEIR_KINESIS_STREAM_PREFIX']}shop_events"
    shards = [s["ShardId"] for s in client.list_shards(StreamName=stream)["Shards"]]
    iterators = {
        s: client.get_shard_iterator(
            StreamName=stream, ShardId=s, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for s in shards
    }
    decompressor = zstandard.ZstdDecompressor()
    batches: list[dict] = []
    drained = 0
    give_up = time.monotonic() + JOBS_TIMEOUT_S
    while drained < args.baseline_events:
        if time.monotonic() > give_up:
            fail(f"baseline: drained {drained} of {args.baseline_events} events")
        started_at_ms = time.time() * 1000
        started = time.perf_counter()
        records = naive_read(client, iterators)
        read_done = time.perf_counter()
        rows = []
        for data in records:
            for line in decompressor.decompressobj().decompress(weir_payload(data)).splitlines():
                drained += 1
                event = json.loads(line)
                if not isinstance(event, dict):
                    continue  # not an event: left out, which the check below reports
                price, quantity = event.get("unit_price"), event.get("quantity")
                rows.append(
                    {
                        "event_id": str(event.get("event_id")),
                        "event_type": str(event.get("event_type")),
                        "event_time": str(event.get("event_time")),
                        "user_id": str(event.get("user_id")),
                        "unit_price": float(price) if isinstance(price, int | float) else None,
                        "quantity": quantity if isinstance(quantity, int) else None,
                        "raw": line.decode(),
                    }
                )
        processed = time.perf_counter()
        if rows:
            table.append(pa.Table.from_pylist(rows, schema))
        if records:
            done = time.perf_counter()
            batches.append(
                {
                    "started_at_ms": started_at_ms,
                    "events": len(rows),
                    "read_ms": (read_done - started) * 1000,
                    "process_ms": (processed - read_done) * 1000,
                    "commit_ms": (done - processed) * 1000,
                    "batch_ms": (done - started) * 1000,
                }
            )
    seconds = drain_seconds(batches)
    # It must hold exactly what it drained: every published line, once per publication.
    expected = Counter(events.lines[i][:-1].decode() for p in published for i in p.line_range)
    stored = Counter(table.refresh().scan(selected_fields=("raw",)).to_arrow()["raw"].to_pylist())
    problems = multiset_difference("bench.naive", expected, stored)
    if problems:
        fail("baseline lake check: " + "; ".join(problems))
    result = {
        "events": drained,
        "batches": len(batches),
        "seconds": round(seconds, 2),
        "events_per_s": round(drained / seconds),
        "jobs": len(published),
        "lake": {"rows": stored.total()},
    }
    print(json.dumps({"baseline": result}), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--job-size", type=int, default=10_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--freshness-seconds", type=float, default=30.0)
    parser.add_argument(
        "--baseline-events", type=int, help="events the baseline drains (default: --events)"
    )
    parser.add_argument("--json-out")
    args = parser.parse_args()
    args.baseline_events = args.baseline_events or args.events

    load_at_start = os.getloadavg()[0]
    args.folder = Path(tempfile.mkdtemp(prefix="weir-bench-streaming-"))
    args.log = args.folder / "consumers.log"
    from tests.support.servers import free_port

    server = LocalKinesis(free_port(), args.folder / "kinesis", args.folder / "kinesis.log")
    server.start()
    os.environ["WEIR_KINESIS_ENDPOINT"] = server.endpoint
    try:
        events = sample_events(max(args.events, args.baseline_events, BATCH_EVENTS))
        results: dict[str, Any] = {
            "machine": f"{os.cpu_count()} cores",
            "load_average_at_start": round(load_at_start, 2),
            "events": args.events,
            "job_size": args.job_size,
            "shards": args.shards,
            "throughput": [throughput(n, events, args) for n in (1, 2)],
            "batch_100k": batch_100k(events, args),
            "freshness": [freshness(n, events, args) for n in (1, 2)],
            "baseline": naive_baseline(events, args),
        }
        one, two = (r["events_per_s"] for r in results["throughput"])
        results["one_consumer_vs_baseline"] = round(one / results["baseline"]["events_per_s"], 2)
        results["two_consumers_vs_one"] = round(two / one, 2)
        print(json.dumps(results, indent=2))
        if args.json_out:
            Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
    finally:
        server.stop()
        # Each run's lake is kept on failure, for a look at what went wrong.
        if sys.exc_info()[0] is None:
            shutil.rmtree(args.folder, ignore_errors=True)
        else:
            print(f"runs kept in {args.folder}", file=sys.stderr)


if __name__ == "__main__":
    main()
