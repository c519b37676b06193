"""Kinesalite probe: how fast the local Kinesis-API server takes and gives records through
boto3, on one shard, so local pipeline runs can be judged against it.

    .venv/bin/python bench/streaming/kinesalite_probe.py [--records 500] \\
        [--record-bytes 65536 512] [--rounds 3] [--json-out bench/results/kinesalite.json]

For each record size it starts a private kinesalite (``weir.stack.LocalKinesis``: LevelDB
on disk in a temporary folder, as ``weir up`` runs it), creates a 1-shard stream and, per
round:

* **put**: ``--records`` records of ``--record-bytes`` random bytes with PutRecords, in as
  few calls as AWS allows (500 records and 5 MiB of data + partition keys per call: 79
  records of 64 KiB) → MB/s and records/s of payload;
* **get**: every record of that round read back from the shard with GetRecords (an
  AT_SEQUENCE_NUMBER iterator at the round's first record, ``Limit`` 10,000) → MB/s and
  records/s, checking the bytes.

Rates are payload bytes (no base64, keys or JSON) over wall time; the best and the median
round are reported. They include boto3's own work (base64, JSON, signing), shown as the
client's CPU share, because that is what a Python producer or consumer pays too.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import boto3

from weir.stack import LocalKinesis

AWS_REQUEST_BYTES = 5 * 1024 * 1024  # PutRecords: data + partition keys of all records
AWS_REQUEST_RECORDS = 500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batches(records: list[dict]) -> list[list[dict]]:
    """Split into PutRecords calls within AWS's per-call limits."""
    out: list[list[dict]] = [[]]
    size = 0
    for record in records:
        cost = len(record["Data"]) + len(record["PartitionKey"])
        if out[-1] and (size + cost > AWS_REQUEST_BYTES or len(out[-1]) == AWS_REQUEST_RECORDS):
            out.append([])
            size = 0
        out[-1].append(record)
        size += cost
    return out


def one_round(client, stream: str, count: int, record_bytes: int, first: int) -> dict:
    payloads = [os.urandom(record_bytes) for _ in range(count)]
    records = [{"Data": p, "PartitionKey": f"key-{first + i}"} for i, p in enumerate(payloads)]
    calls = batches(records)

    started, cpu = time.perf_counter(), time.process_time()
    sequence_numbers = []
    for call in calls:
        response = client.put_records(StreamName=stream, Records=call)
        if response["FailedRecordCount"]:
            raise RuntimeError(f"{response['FailedRecordCount']} records failed")
        sequence_numbers.extend(r["SequenceNumber"] for r in response["Records"])
    put_seconds, put_cpu = time.perf_counter() - started, time.process_time() - cpu

    started, cpu = time.perf_counter(), time.process_time()
    iterator = client.get_shard_iterator(
        StreamName=stream,
        ShardId="shardId-000000000000",
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        StartingSequenceNumber=sequence_numbers[0],
    )["ShardIterator"]
    got: list[bytes] = []
    get_calls = 0
    while len(got) < count:
        page = client.get_records(ShardIterator=iterator, Limit=10_000)
        get_calls += 1
        got.extend(r["Data"] for r in page["Records"])
        iterator = page["NextShardIterator"]
    get_seconds, get_cpu = time.perf_counter() - started, time.process_time() - cpu
    if got[:count] != payloads:
        raise RuntimeError("records read back differ from those put")

    megabytes = count * record_bytes / 1e6
    return {
        "put_calls": len(calls),
        "put_seconds": put_seconds,
        "put_mb_s": megabytes / put_seconds,
        "put_records_s": count / put_seconds,
        "put_client_cpu_share": put_cpu / put_seconds,
        "get_calls": get_calls,
        "get_seconds": get_seconds,
        "get_mb_s": megabytes / get_seconds,
        "get_records_s": count / get_seconds,
        "get_client_cpu_share": get_cpu / get_seconds,
    }


def probe(count: int, record_bytes: int, rounds: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="weir-kinesalite-probe-") as folder:
        server = LocalKinesis(free_port(), Path(folder) / "data", Path(folder) / "kinesis.log")
        with server:
            client = boto3.client(
                "kinesis",
                endpoint_url=server.endpoint,
                region_name="us-east-1",
                aws_access_key_id="weir",
                aws_secret_access_key="weir",
            )
            client.create_stream(StreamName="probe", ShardCount=1)
            client.put_records(  # warm-up: connection, code paths
                StreamName="probe", Records=[{"Data": b"x", "PartitionKey": "warm"}]
            )
            runs = [
                one_round(client, "probe", count, record_bytes, first=r * count)
                for r in range(rounds)
            ]
            data_bytes = sum(f.stat().st_size for f in (Path(folder) / "data").iterdir())
    result: dict[str, object] = {
        "records": count,
        "record_bytes": record_bytes,
        "rounds": rounds,
        "put_calls": runs[0]["put_calls"],
        "get_calls": runs[0]["get_calls"],
        "leveldb_bytes": data_bytes,
    }
    for key in ("put_mb_s", "put_records_s", "get_mb_s", "get_records_s"):
        values = [run[key] for run in runs]
        result[key] = {"best": max(values), "median": statistics.median(values)}
    for key in ("put_client_cpu_share", "get_client_cpu_share"):
        result[key] = statistics.median(run[key] for run in runs)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500)
    parser.add_argument("--record-bytes", type=int, nargs="+", default=[65536, 512])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json-out")
    args = parser.parse_args()
    results = []
    for record_bytes in args.record_bytes:
        result = probe(args.records, record_bytes, args.rounds)
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
