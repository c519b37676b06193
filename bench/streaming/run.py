"""Streaming benchmark: Kinesis → Iceberg throughput and freshness, with a naive Python
consumer measured in the same run as the baseline.

    .venv/bin/python bench/streaming/run.py [--events 1000000] [--job-size 10000] \\
        [--shards 4] [--rate 20000] [--freshness-seconds 30] [--baseline-events 300000] \\
        [--json-out bench/results/streaming.json]

Everything runs on this machine: kinesalite (started here, LevelDB in a temporary folder),
a fresh SQLite metastore and local warehouse, and ``weir consume`` processes (commit
interval 1 s) as a user would run them.

* **throughput**: ``--events`` shop events (``weir.samples``, 1 % invalid) published in
  jobs of ``--job-size`` (the producer packs them into zstd Weir records), then consumed by
  1 and by 2 ``weir consume`` processes sharing ``--shards`` shards. Sustained rate =
  events / (end of the last batch - start of the first), from the consumer batch metrics.
  The batches of at least 100,000 events give the time to process and commit such a batch.
* **a 100,000-event batch**: that many events waiting, one consumer: the batch's read,
  process (unpack, contract, pipeline SQL) and commit (Parquet + 2 Iceberg commits) times.
* **freshness**: with the consumers running, jobs of ``--rate``/10 events published every
  100 ms for ``--freshness-seconds``; per job, put acknowledged → job committed (its rows are
  visible through ``weir.connect()`` by then): p50/p99.
* **baseline**: what one would write without Weir: boto3 GetRecords on every shard,
  ``json.loads`` per event, ``pyarrow`` table, pyiceberg ``append`` per 1 s batch, no
  validation, draining ``--baseline-events`` of the same records → events/s and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

os.environ.setdefault("WEIR_LOG", "error")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import weir  # noqa: E402
from weir import samples  # noqa: E402
from weir.stack import LocalKinesis  # noqa: E402

BASE_EVENTS = 100_000


def event_lines(n: int) -> list[bytes]:
    """``n`` NDJSON lines: 100,000 generated events (1 % invalid), repeated."""
    base = samples.to_ndjson(
        samples.generate_shop_events(BASE_EVENTS, invalid_fraction=0.01, seed=5)
    ).splitlines(keepends=True)
    return [base[i % len(base)] for i in range(n)]


def publish_all(lines: list[bytes], job_size: int, threads: int = 4) -> tuple[list[str], float]:
    jobs = [b"".join(lines[i : i + job_size]) for i in range(0, len(lines), job_size)]
    ids: list[str] = []
    lock = threading.Lock()

    def work(part: list[bytes]) -> None:
        for data in part:
            job_id = weir.publish("shop_events", data).job_id
            with lock:
                ids.append(job_id)

    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(jobs[i::threads],)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return ids, time.perf_counter() - started


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


def fresh_streams(shards: int) -> None:
    os.environ["WEIR_KINESIS_STREAM_PREFIX"] = f"bench{uuid.uuid4().hex[:6]}-"
    os.environ["WEIR_KINESIS_SHARDS"] = str(shards)


def throughput(consumers: int, lines: list[bytes], args: argparse.Namespace, log: Path) -> dict:
    fresh_streams(args.shards)
    since = int(time.time() * 1000)
    ids, put_seconds = publish_all(lines, args.job_size)
    processes = start_consumers(consumers, log)
    try:
        jobs = weir.stream.wait_for_jobs(ids, timeout=600)
    finally:
        stop_consumers(processes)
    assert all(j is not None and j.final for j in jobs.values()), "jobs not final"
    events = sum(j.received for j in jobs.values() if j)
    batches = weir.stream.batches("shop_events", since_ms=since).to_pylist()
    batches = [b for b in batches if b["events"] > 0]
    first = min(b["started_at_ms"] for b in batches)
    last = max(b["started_at_ms"] + b["batch_ms"] for b in batches)
    big = [b for b in batches if b["events"] >= 100_000]
    result = {
        "consumers": consumers,
        "events": events,
        "put_seconds": round(put_seconds, 2),
        "put_events_per_s": round(events / put_seconds),
        "batches": len(batches),
        "consume_seconds": round((last - first) / 1000, 2),
        "events_per_s": round(events / ((last - first) / 1000)),
    }
    if big:
        result["big_batches"] = len(big)
        for key in ("read_ms", "process_ms", "commit_ms", "batch_ms"):
            result[f"big_batch_{key}_p50"] = round(statistics.median(b[key] for b in big), 1)
        result["big_batch_events_p50"] = round(statistics.median(b["events"] for b in big))
    print(json.dumps(result), flush=True)
    return result


def batch_100k(lines: list[bytes], args: argparse.Namespace, log: Path) -> dict:
    """One backlog of 100,000 events taken by one consumer: the batch's timings."""
    fresh_streams(args.shards)
    since = int(time.time() * 1000)
    ids, _ = publish_all(lines[:100_000], args.job_size)
    processes = start_consumers(1, log)
    try:
        weir.stream.wait_for_jobs(ids, timeout=120)
    finally:
        stop_consumers(processes)
    batches = weir.stream.batches("shop_events", since_ms=since).to_pylist()
    biggest = max(batches, key=lambda b: b["events"])
    result = {
        key: round(biggest[key], 1)
        for key in ("events", "source_records", "read_ms", "process_ms", "commit_ms", "batch_ms")
    }
    result["process_and_commit_ms"] = round(biggest["process_ms"] + biggest["commit_ms"], 1)
    print(json.dumps({"batch_100k": result}), flush=True)
    return result


def freshness(consumers: int, lines: list[bytes], args: argparse.Namespace, log: Path) -> dict:
    fresh_streams(args.shards)
    processes = start_consumers(consumers, log)
    per_job = max(1, args.rate // 10)
    acks: dict[str, float] = {}
    try:
        # Let the consumers start and take their leases before measuring.
        warmup = weir.publish("shop_events", b"".join(lines[:10])).job_id
        weir.stream.wait_for_jobs([warmup], timeout=60)
        started = time.monotonic()
        i = 0
        while time.monotonic() - started < args.freshness_seconds:
            tick = started + i * 0.1
            time.sleep(max(0.0, tick - time.monotonic()))
            offset = (i * per_job) % (len(lines) - per_job)
            publication = weir.publish("shop_events", b"".join(lines[offset : offset + per_job]))
            acks[publication.job_id] = time.time() * 1000
            i += 1
        jobs = weir.stream.wait_for_jobs(list(acks), timeout=120)
    finally:
        stop_consumers(processes)
    delays = sorted(
        (j.updated_at_ms - acks[job_id]) / 1000 for job_id, j in jobs.items() if j and j.final
    )
    assert len(delays) == len(acks), "jobs not final"
    result = {
        "consumers": consumers,
        "rate_events_per_s": per_job * 10,
        "jobs": len(delays),
        "freshness_p50_s": round(statistics.median(delays), 3),
        "freshness_p99_s": round(delays[int(len(delays) * 0.99) - 1], 3),
        "freshness_max_s": round(delays[-1], 3),
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


def naive_baseline(lines: list[bytes], args: argparse.Namespace, folder: Path) -> dict:
    """boto3 + json + pyarrow + pyiceberg, draining the same Weir records."""
    import pyarrow as pa
    import zstandard
    from pyiceberg.catalog.sql import SqlCatalog

    from servers import kinesis_client

    fresh_streams(args.shards)
    ids, _ = publish_all(lines[: args.baseline_events], args.job_size)
    # Its own catalog file: two SQLite libraries in one process must not share a database.
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
    stored = 0
    started = time.perf_counter()
    while stored < args.baseline_events:
        rows = []
        window = time.monotonic()
        while time.monotonic() - window < 1.0:
            got = 0
            for shard in shards:
                out = client.get_records(ShardIterator=iterators[shard], Limit=10_000)
                iterators[shard] = out["NextShardIterator"]
                for record in out["Records"]:
                    payload = weir_payload(record["Data"])
                    for line in decompressor.decompressobj().decompress(payload).splitlines():
                        event = json.loads(line)
                        if not isinstance(event, dict):
                            continue
                        price, quantity = event.get("unit_price"), event.get("quantity")
                        rows.append(
                            {
                                "event_id": str(event.get("event_id")),
                                "event_type": str(event.get("event_type")),
                                "event_time": str(event.get("event_time")),
                                "user_id": str(event.get("user_id")),
                                "unit_price": float(price)
                                if isinstance(price, int | float)
                                else None,
                                "quantity": quantity if isinstance(quantity, int) else None,
                                "raw": line.decode(),
                            }
                        )
                    got += 1
            if got == 0:
                if stored + len(rows) >= args.baseline_events:
                    break
                time.sleep(0.2)
        if rows:
            table.append(pa.Table.from_pylist(rows, schema))
            stored += len(rows)
    seconds = time.perf_counter() - started
    result = {
        "events": stored,
        "seconds": round(seconds, 2),
        "events_per_s": round(stored / seconds),
        "jobs": len(ids),
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
    parser.add_argument("--baseline-events", type=int, default=300_000)
    parser.add_argument("--json-out")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="weir-bench-streaming-"))
    os.environ["WEIR_STATE_DIR"] = str(folder / "state")
    from servers import free_port

    server = LocalKinesis(free_port(), folder / "kinesis", folder / "kinesis.log")
    server.start()
    os.environ["WEIR_KINESIS_ENDPOINT"] = server.endpoint
    log = folder / "consumers.log"
    try:
        lines = event_lines(max(args.events, args.baseline_events))
        weir.lake.ensure_dataset("shop_events")
        results = {
            "machine": f"{os.cpu_count()} cores",
            "events": args.events,
            "job_size": args.job_size,
            "shards": args.shards,
            "throughput": [throughput(n, lines[: args.events], args, log) for n in (1, 2)],
            "batch_100k": batch_100k(lines, args, log),
            "freshness": [freshness(n, lines, args, log) for n in (1, 2)],
            "baseline": naive_baseline(lines, args, folder),
        }
        best = max(r["events_per_s"] for r in results["throughput"])
        results["ratio_vs_baseline"] = round(best / results["baseline"]["events_per_s"], 1)
        print(json.dumps(results, indent=2))
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
