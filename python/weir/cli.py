"""The ``weir`` command line.

    weir process FILE [--format ndjson] [--dataset shop_events] [--output out.parquet]
                      [--rejected rejected.ndjson]
    weir demo [--records 20000] [--invalid-fraction 0.02]
    weir maintain [--table raw.shop_events] [--retain-last 10] [--max-age-hours 168]
    weir up | weir status | weir down
    weir consume [--dataset shop_events] [--commit-interval 1.0] [--on-failure dead_letter]
    weir serve [--host 127.0.0.1] [--port 8000] [--workers 1]
    weir api-key create

``process`` runs a file through the processor and prints a JSON summary; ``demo`` generates
sample shop events (some deliberately broken), processes them and shows what came out,
appends them to the lake (``.weir/`` by default, see ``weir.config``) and queries it through
``weir.connect()``; ``maintain`` compacts small files and expires old snapshots. ``up``,
``status`` and ``down`` start, show and stop the local stack (``weir.stack``: for now the
local Kinesis-API server). ``consume`` runs the Kinesis consumers (one per dataset, sharing
shards with other ``weir consume`` processes) until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq

import weir
from weir import config, project, samples, stack

_FORMATS_BY_SUFFIX = {".json": "json", ".ndjson": "ndjson", ".jsonl": "ndjson", ".csv": "csv"}


def _guess_format(path: Path) -> str:
    try:
        return _FORMATS_BY_SUFFIX[path.suffix.lower()]
    except KeyError:
        raise SystemExit(
            f"weir: cannot tell the format of {path} from its suffix; pass --format "
            f"({', '.join(weir.SUPPORTED_FORMATS)})"
        ) from None


def _summary(result: weir.ProcessResult) -> dict[str, object]:
    by_rule = Counter(f"{v['field'] or '(record)'}:{v['rule']}" for v in result.violation_list())
    return {
        "records": result.stats["records"],
        "valid": result.stats["valid"],
        "rejected": result.stats["rejected"],
        "violations": result.stats["violations"],
        "seconds": round(result.stats["seconds"], 4),
        "violations_by_field_and_rule": dict(by_rule.most_common()),
    }


def cmd_process(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise SystemExit(f"weir: {path} does not exist")
    fmt = args.format or _guess_format(path)
    result = weir.process(path.read_bytes(), fmt, args.dataset)
    if args.output:
        pq.write_table(result.output, args.output, compression="zstd")
    if args.rejected:
        with open(args.rejected, "w", encoding="utf-8") as out:
            for row in result.rejected.to_pylist():
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(json.dumps(_summary(result), indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    # The demo summarises rejected records itself; set WEIR_LOG=warn to see the JSON logs too.
    weir.init_logging(os.environ.get("WEIR_LOG", "error"))
    print(
        f"Generating {args.records:,} shop events ({args.invalid_fraction:.0%} broken on purpose)…"
    )
    events = samples.generate_shop_events(
        args.records, invalid_fraction=args.invalid_fraction, seed=7
    )
    for fmt, data in (("ndjson", samples.to_ndjson(events)), ("csv", samples.to_csv(events))):
        started = time.perf_counter()
        result = weir.process(data, fmt)
        elapsed = time.perf_counter() - started
        print(
            f"\n{fmt}: {len(data) / 1e6:.1f} MB, {result.stats['records']:,} records in "
            f"{elapsed * 1000:.0f} ms ({result.stats['records'] / elapsed:,.0f} records/s): "
            f"{result.stats['valid']:,} valid, {result.stats['rejected']:,} rejected"
        )
    print("\nViolations by field and rule:")
    for key, count in _summary(result)["violations_by_field_and_rule"].items():  # type: ignore[union-attr]
        print(f"  {count:6,}  {key}")
    if result.rejected.num_rows:
        first = result.rejected.slice(0, 1).to_pylist()[0]
        print(f"\nFirst rejected record (#{first['record_index']}): {first['raw'][:160]}")
        for v in first["violations"]:
            print(f"  - {v['field'] or '(record)'}: {v['rule']}: {v['message']}")

    settings = weir.config.lake_settings()
    valid = weir.append("raw.shop_events", result.output, {"weir.source": "demo"})
    rejected = weir.append("raw.shop_events_rejected", result.rejected, {"weir.source": "demo"})
    print(
        f"\nLake ({settings.warehouse}, metastore {settings.metastore}):\n"
        f"  raw.shop_events: snapshot {valid.snapshot_id}, {valid.record_count:,} rows in "
        f"{len(valid.data_files)} zstd Parquet files\n"
        f"  raw.shop_events_rejected: snapshot {rejected.snapshot_id}, "
        f"{rejected.record_count:,} rows"
    )
    ctx = weir.connect()
    query = (
        "select event_date, event_type, count(*) as events, round(sum(amount), 2) as amount "
        "from lake.raw.shop_events group by 1, 2 order by 1, 2 limit 8"
    )
    print(f"\nSQL over the lake through weir.connect():\n  {query}")
    ctx.sql(query).show()
    udf_query = (
        "select weir_normalize_email(' Ann@Example.COM ') as email,"
        " weir_to_utc('2026-11-27T10:00:00+02:00') as utc"
    )
    udf_row = ctx.sql(udf_query).to_arrow_table().to_pylist()[0]
    print(f"\nA Weir UDF in SQL:\n  {udf_query}\n  -> {udf_row}")
    return 0


def cmd_maintain(args: argparse.Namespace) -> int:
    weir.init_logging(os.environ.get("WEIR_LOG", "warn"))
    reports = weir.maintain(
        args.table or None,
        compact=not args.no_compact,
        expire=not args.no_expire,
        retain_last=args.retain_last,
        max_snapshot_age=timedelta(hours=args.max_age_hours),
    )
    for report in reports:
        print(json.dumps(report))
    return 0


def _print_states(states: list[stack.ServiceState]) -> None:
    for state in states:
        pid = f" (pid {state.pid})" if state.pid is not None else ""
        print(f"{state.name}: {state.action}{pid}")
        for key, value in state.details.items():
            print(f"  {key:<9} {value}")
        print(f"  {'log':<9} {state.log_file}")


def cmd_up(args: argparse.Namespace) -> int:
    states = stack.up(timeout=args.timeout)
    _print_states(states)
    print("Stop with `weir down`; the data stays for the next `weir up`.")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    _print_states(stack.down())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = config.kinesis_settings()
    states = stack.status(settings)
    _print_states(states)
    for state in states:
        if state.name == "kinesis" and state.action == "running":
            streams = stack.kinesis_request(state.details["endpoint"], "ListStreams")
            names = streams.get("StreamNames", [])
            print(f"  {'streams':<9} {', '.join(names) if names else '(none yet)'}")
    if not settings.is_local():
        print(
            f"note: the configured Kinesis endpoint is {settings.endpoint or 'AWS'} "
            f"({settings.source}), not this local server"
        )
    # Like LSB init scripts: 3 when something is not running.
    return 0 if all(state.running for state in states) else 3


def cmd_consume(args: argparse.Namespace) -> int:
    import signal
    import threading

    stop = threading.Event()

    def stop_after_batch(signum: int, _frame: object) -> None:
        print(
            f"weir consume: {signal.Signals(signum).name}, stopping after this batch",
            file=sys.stderr,
        )
        stop.set()

    signal.signal(signal.SIGINT, stop_after_batch)
    signal.signal(signal.SIGTERM, stop_after_batch)
    weir.init_logging()
    datasets = args.dataset or None
    settings = config.kinesis_settings()
    print(
        f"weir consume: {', '.join(datasets or project.datasets())} from "
        f"{settings.endpoint or 'AWS ' + settings.region} into {config.lake_settings().warehouse}",
        file=sys.stderr,
        flush=True,
    )
    options = {
        "commit_interval_s": args.commit_interval,
        "on_failure": args.on_failure,
        "retries": args.retries,
        "lease_ttl_s": args.lease_ttl,
    }
    if args.consumer_id:
        options["consumer_id"] = args.consumer_id
    weir.stream.consume(datasets, stop=stop, **options)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = config.api_settings()
    host = args.host or settings.host
    port = args.port or settings.port
    workers = args.workers or settings.workers
    if not settings.key_hashes:
        print(
            "weir serve: note: no API keys are configured, so every protected route answers "
            "401; make one with `weir api-key create`",
            file=sys.stderr,
        )
    weir.init_logging()
    print(f"weir serve: http://{host}:{port} ({workers} worker(s)), docs at /docs", file=sys.stderr)
    uvicorn.run(
        "weir.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,  # the app writes its own JSON access log, with request ids
        log_level="warning",
        timeout_graceful_shutdown=10,
    )
    return 0


def cmd_api_key(args: argparse.Namespace) -> int:
    from weir.api import keys

    key = keys.create_key()
    print(key)
    print(
        f"weir api-key: the key above is shown once; its SHA-256 hash was added to "
        f"{config.api_keys_file()}",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="weir", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    process = commands.add_parser("process", help="run a file through the processor")
    process.add_argument("file")
    process.add_argument("--format", choices=list(weir.SUPPORTED_FORMATS))
    process.add_argument("--dataset", default="shop_events", help="dataset name or contract path")
    process.add_argument("--output", help="write the transformed rows to this Parquet file")
    process.add_argument("--rejected", help="write rejected records to this NDJSON file")
    process.set_defaults(run=cmd_process)

    demo = commands.add_parser("demo", help="process generated sample events and show the results")
    demo.add_argument("--records", type=int, default=20_000)
    demo.add_argument("--invalid-fraction", type=float, default=0.02)
    demo.set_defaults(run=cmd_demo)

    maintain = commands.add_parser(
        "maintain", help="compact small files and expire old snapshots of lake tables"
    )
    maintain.add_argument(
        "--table", action="append", help="namespace.table (repeatable; default: all)"
    )
    maintain.add_argument("--retain-last", type=int, default=10, help="snapshots always kept")
    maintain.add_argument(
        "--max-age-hours", type=float, default=168.0, help="older snapshots expire"
    )
    maintain.add_argument("--no-compact", action="store_true")
    maintain.add_argument("--no-expire", action="store_true")
    maintain.set_defaults(run=cmd_maintain)

    up = commands.add_parser(
        "up", help="start the local stack (the Kinesis-API server), detached; safe to repeat"
    )
    up.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for each service")
    up.set_defaults(run=cmd_up)
    down = commands.add_parser("down", help="stop the local stack; its data stays on disk")
    down.set_defaults(run=cmd_down)
    status = commands.add_parser(
        "status", help="show the local stack's services (exit code 3 if one is not running)"
    )
    status.set_defaults(run=cmd_status)

    consume = commands.add_parser(
        "consume", help="consume the datasets' Kinesis streams into the lake until stopped"
    )
    consume.add_argument("--dataset", action="append", help="repeatable; default: every contract")
    consume.add_argument(
        "--commit-interval", type=float, default=1.0, help="seconds a batch collects records"
    )
    consume.add_argument("--retries", type=int, default=3, help="retries of a failing batch")
    consume.add_argument(
        "--lease-ttl",
        type=float,
        default=10.0,
        help="seconds a shard lease lasts unrenewed (a dead consumer's shards wait this long)",
    )
    consume.add_argument(
        "--on-failure",
        choices=["dead_letter", "halt"],
        default="dead_letter",
        help="after the retries: dead-letter the batch and go on, or stop",
    )
    consume.add_argument("--consumer-id", help="name in leases and metrics (default: from the pid)")
    consume.set_defaults(run=cmd_consume)

    serve = commands.add_parser("serve", help="run the ingest API (FastAPI on uvicorn)")
    serve.add_argument("--host", help="default: api.host (127.0.0.1)")
    serve.add_argument("--port", type=int, help="default: api.port (8000)")
    serve.add_argument("--workers", type=int, help="processes; default: api.workers (1)")
    serve.set_defaults(run=cmd_serve)

    api_key = commands.add_parser("api-key", help="manage API keys of the ingest API")
    api_key.add_argument("action", choices=["create"], help="create: print a new key once")
    api_key.set_defaults(run=cmd_api_key)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except weir.WeirError as e:
        print(f"weir: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
