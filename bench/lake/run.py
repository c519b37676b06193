"""Lake benchmark: appends, small-commit latency and a large group-by, against baselines
measured in the same run.

    .venv/bin/python bench/lake/run.py [--rows 1000000] [--append-repeat 3] [--small-commits 200] \\
        [--groupby-rows 10000000] [--json-out bench/results/lake.json]

What it measures, on a fresh SQLite metastore and local warehouse in a temporary folder:

* **append throughput**: ``weir.append`` of ``--rows`` transformed shop events (zstd
  Parquet, partitioned by day) → rows/s and MB/s (Arrow bytes in, Parquet bytes out);
  baseline: pyiceberg 0.12's ``Table.append`` of the same Arrow table into another table
  of the same catalog at the same zstd level; ``--append-repeat`` appends each, in turns,
  best (and median, and first) reported;
* **commit latency**: ``--small-commits`` appends of 10 rows each → p50/p99 in ms;
  baseline: pyiceberg appends of 10 rows (a quarter as many commits);
* **group-by**: the table grown to ``--groupby-rows`` rows (appends of ``--rows``), then
  ``select event_date, event_type, count(*), sum(amount) ... group by 1, 2`` through
  ``weir.connect()`` (DataFusion) and through DuckDB's ``iceberg_scan`` on the same
  metadata file (best of 3 each) → ratio;
* **one day**: ``count(*)`` and ``sum(amount)`` of one day of the thirty, both engines
  (best of 3 each) → ratio, and the data files the scan read of the table's (``EXPLAIN``).

What it checks (outside the timed calls; any disagreement is printed and the exit code is 1):

* each writer's table, read back with pyiceberg's scan after the append and the small
  commits, holds exactly the rows written (every column but ``ingested_at``, which weir
  stamps and the baseline leaves empty; rows sorted by ``event_id``, values equal);
* each engine's group-by answer has exactly the groups and counts computed with
  ``pyarrow`` from the rows written, and the same sums to a relative 1e-9 (the engines add
  floats in different orders).

The events: 100,000 generated with ``weir.samples`` (seed 7) and processed by
``weir.process``, then replicated with distinct ``event_id``s and shifted over 30 days.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

os.environ.setdefault("WEIR_LOG", "error")

import weir
from weir import samples
from weir.config import LakeSettings

BASE_ROWS = 100_000


def base_events() -> pa.Table:
    events = samples.generate_shop_events(BASE_ROWS, seed=7)
    return weir.process(samples.to_ndjson(events), "ndjson", strict=True).output


def replicated(base: pa.Table, rows: int, offset: int = 0) -> pa.Table:
    """``rows`` rows from copies of ``base`` with distinct event ids, shifted by days."""
    parts = []
    copy = offset
    while sum(p.num_rows for p in parts) < rows:
        shifted = pc.add(base["event_time"], pa.scalar(timedelta(days=copy % 30)))
        part = base.set_column(
            base.schema.get_field_index("event_id"),
            "event_id",
            pc.binary_join_element_wise(base["event_id"], pa.scalar(f"-{copy}"), ""),
        )
        part = part.set_column(part.schema.get_field_index("event_time"), "event_time", shifted)
        part = part.set_column(
            part.schema.get_field_index("event_date"), "event_date", pc.cast(shifted, pa.date32())
        )
        parts.append(part)
        copy += 1
    return pa.concat_tables(parts).slice(0, rows).combine_chunks()


def row_differences(label: str, read: pa.Table, written: list[pa.Table]) -> list[str]:
    """How the rows ``read`` back differ from the ``written`` tables (empty when they are the
    same rows with the same values), compared on the written columns but ``ingested_at``."""
    columns = [n for n in written[0].schema.names if n != "ingested_at"]
    schema = pa.schema([written[0].schema.field(n) for n in columns])
    expected = pa.concat_tables([t.select(columns).cast(schema) for t in written])
    if read.num_rows != expected.num_rows:
        return [f"{label}: read back {read.num_rows:,} rows, wrote {expected.num_rows:,}"]
    found = read.select(columns).cast(schema).sort_by("event_id").combine_chunks()
    expected = expected.sort_by("event_id").combine_chunks()
    problems = []
    for name in columns:
        if found[name].equals(expected[name]):
            continue
        mine, theirs = found[name].to_pylist(), expected[name].to_pylist()
        rows = [i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b]
        problems.append(
            f"{label}: column {name} differs in {len(rows):,} rows, e.g. event"
            f" {expected['event_id'][rows[0]]}: read {mine[rows[0]]!r}, wrote {theirs[rows[0]]!r}"
        )
    return problems


GROUP_KEYS = ["event_date", "event_type"]


def partial_groups(table: pa.Table, times: int = 1) -> pa.Table:
    """Per-group row count and sum of amount of ``table`` appended ``times`` times."""
    groups = table.group_by(GROUP_KEYS).aggregate([([], "count_all"), ("amount", "sum")])
    return pa.table(
        {
            **{k: groups[k] for k in GROUP_KEYS},
            "n": pc.multiply(groups["count_all"], times),
            "amount": pc.multiply(groups["amount_sum"], float(times)),
        }
    )


def group_differences(label: str, answer: pa.Table, partials: list[pa.Table]) -> list[str]:
    """How an engine's group-by answer differs from the groups of the rows written."""
    merged = (
        pa.concat_tables(partials).group_by(GROUP_KEYS).aggregate([("n", "sum"), ("amount", "sum")])
    )
    expected = {
        (d, t): (n, a)
        for d, t, n, a in zip(
            *(merged[c].to_pylist() for c in [*GROUP_KEYS, "n_sum", "amount_sum"]), strict=True
        )
    }
    found = {
        (d, t): (n, a)
        for d, t, n, a in zip(
            *(answer[c].to_pylist() for c in [*GROUP_KEYS, "n", "amount"]), strict=True
        )
    }
    if len(found) != answer.num_rows:
        return [f"{label}: {answer.num_rows - len(found)} groups appear twice"]
    problems = []
    if found.keys() != expected.keys():
        extra = sorted(found.keys() - expected.keys())[:3]
        missing = sorted(expected.keys() - found.keys())[:3]
        problems.append(f"{label}: groups differ (only in the answer: {extra}, missing: {missing})")
    for key in sorted(found.keys() & expected.keys()):
        (n, amount), (want_n, want_amount) = found[key], expected[key]
        same_amount = (amount is None and want_amount is None) or (
            amount is not None
            and want_amount is not None
            and math.isclose(amount, want_amount, rel_tol=1e-9)
        )
        if n != want_n or not same_amount:
            problems.append(
                f"{label}: group {key} is {(n, amount)}, expected {(want_n, want_amount)}"
            )
    return problems[:10]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows in the bulk append (default 1000000)"
    )
    parser.add_argument(
        "--append-repeat",
        type=int,
        default=3,
        help="bulk appends timed per writer, best taken (default 3)",
    )
    parser.add_argument(
        "--small-commits", type=int, default=200, help="10-row commits timed (default 200)"
    )
    parser.add_argument(
        "--groupby-rows",
        type=int,
        default=10_000_000,
        help="rows in the table for the group-by (default 10000000)",
    )
    parser.add_argument("--json-out", help="where to write the results (default: nowhere)")
    args = parser.parse_args()

    results: dict[str, object] = {"rows": args.rows, "groupby_rows": args.groupby_rows}
    problems: list[str] = []  # disagreements between what was written and what was read
    with tempfile.TemporaryDirectory(prefix="weir-bench-lake-") as folder:
        settings = LakeSettings(str(Path(folder) / "metastore.db"), str(Path(folder) / "warehouse"))
        print("preparing events ...", flush=True)
        base = base_events()
        table = replicated(base, args.rows)
        weir.lake.ensure_dataset("shop_events", settings)

        # 1. Append throughput: weir vs pyiceberg, the same Arrow table, the same zstd
        # level, --append-repeat appends each, taken in turns (the first of each writer
        # pays its warm-up: imports, first file system and catalog calls).
        catalog = weir.lake.catalog(settings)
        iceberg_schema = catalog.load_table("raw.shop_events").schema()
        spec = catalog.load_table("raw.shop_events").spec()
        level = settings.write["zstd_level"]
        baseline = catalog.create_table(
            "raw.pyiceberg_baseline",
            schema=iceberg_schema,
            partition_spec=spec,
            properties={
                "write.parquet.compression-codec": "zstd",
                "write.parquet.compression-level": str(level),
            },
        )
        with_ingested = table.append_column(
            "ingested_at", pa.array([None] * table.num_rows, pa.timestamp("us", "UTC"))
        )
        with_ingested = with_ingested.cast(baseline.schema().as_arrow())
        weir_times, pyiceberg_times, baseline_bytes = [], [], []
        for _ in range(args.append_repeat):
            started = time.perf_counter()
            info = weir.append("raw.shop_events", table, settings=settings)
            weir_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            baseline.append(with_ingested)
            pyiceberg_times.append(time.perf_counter() - started)
            added = baseline.refresh().current_snapshot().summary["added-files-size"]
            baseline_bytes.append(int(added))
        weir_seconds, pyiceberg_seconds = min(weir_times), min(pyiceberg_times)
        results["append"] = {
            "appends_each": args.append_repeat,
            "zstd_level": level,
            "weir_seconds": round(weir_seconds, 3),
            "weir_median_seconds": round(statistics.median(weir_times), 3),
            "weir_first_seconds": round(weir_times[0], 3),
            "weir_rows_per_s": round(args.rows / weir_seconds),
            "weir_arrow_mb_per_s": round(table.nbytes / weir_seconds / 1e6, 1),
            "weir_parquet_mb_per_s": round(info.bytes / weir_seconds / 1e6, 1),
            "parquet_bytes": info.bytes,
            "pyiceberg_parquet_bytes": baseline_bytes[-1],
            "arrow_bytes": table.nbytes,
            "data_files": len(info.data_files),
            "pyiceberg_seconds": round(pyiceberg_seconds, 3),
            "pyiceberg_median_seconds": round(statistics.median(pyiceberg_times), 3),
            "pyiceberg_first_seconds": round(pyiceberg_times[0], 3),
            "speedup_vs_pyiceberg": round(pyiceberg_seconds / weir_seconds, 2),
            "median_speedup_vs_pyiceberg": round(
                statistics.median(pyiceberg_times) / statistics.median(weir_times), 2
            ),
        }
        print(json.dumps(results["append"]), flush=True)

        # 2. Small-commit latency.
        small = table.slice(0, 10)
        latencies = []
        for _ in range(args.small_commits):
            started = time.perf_counter()
            weir.append("raw.shop_events", small, settings=settings)
            latencies.append((time.perf_counter() - started) * 1000)
        baseline_latencies = []
        small_baseline = with_ingested.slice(0, 10)
        for _ in range(max(1, args.small_commits // 4)):
            started = time.perf_counter()
            baseline.append(small_baseline)
            baseline_latencies.append((time.perf_counter() - started) * 1000)
        results["small_commits"] = {
            "commits": args.small_commits,
            "weir_p50_ms": round(statistics.median(latencies), 1),
            "weir_p99_ms": round(percentile(latencies, 0.99), 1),
            "weir_first_ms": round(latencies[0], 1),
            "weir_last_ms": round(latencies[-1], 1),
            "pyiceberg_commits": len(baseline_latencies),
            "pyiceberg_p50_ms": round(statistics.median(baseline_latencies), 1),
            "pyiceberg_p99_ms": round(percentile(baseline_latencies, 0.99), 1),
        }
        print(json.dumps(results["small_commits"]), flush=True)

        # What each writer's table holds now: the big append and the small commits.
        problems += row_differences(
            "weir.append",
            catalog.load_table("raw.shop_events").scan().to_arrow(),
            [*[table] * args.append_repeat, *[small] * args.small_commits],
        )
        problems += row_differences(
            "pyiceberg append",
            catalog.load_table("raw.pyiceberg_baseline").scan().to_arrow(),
            [*[with_ingested] * args.append_repeat, *[small_baseline] * len(baseline_latencies)],
        )
        print(f"read back both tables: {'ok' if not problems else 'DIFFERENT'}", flush=True)

        # 3. Group-by over --groupby-rows rows: DataFusion through weir.connect() vs DuckDB.
        stored = args.rows * args.append_repeat + args.small_commits * 10
        written_groups = [
            partial_groups(table, args.append_repeat),
            partial_groups(small, args.small_commits),
        ]
        copy = args.rows // BASE_ROWS + 1
        while stored < args.groupby_rows:
            chunk = replicated(base, min(args.rows, args.groupby_rows - stored), offset=copy)
            copy += chunk.num_rows // BASE_ROWS + 1
            weir.append("raw.shop_events", chunk, settings=settings)
            written_groups.append(partial_groups(chunk))
            stored += chunk.num_rows
            print(f"  table has {stored:,} rows", flush=True)
        query = (
            "select event_date, event_type, count(*) as n, sum(amount) as amount from {t} "
            "group by 1, 2 order by 1, 2"
        )
        ctx = weir.connect(settings)
        con = weir.lake.duckdb_connection(settings)
        location = weir.lake.metadata_location("raw.shop_events", settings=settings)
        timings: dict[str, list[float]] = {"datafusion": [], "duckdb": []}
        answers = {}
        for _ in range(3):
            started = time.perf_counter()
            answers["datafusion"] = ctx.sql(query.format(t="lake.raw.shop_events")).to_arrow_table()
            timings["datafusion"].append(time.perf_counter() - started)
            started = time.perf_counter()
            answers["duckdb"] = con.sql(query.format(t=f"iceberg_scan('{location}')")).arrow()
            timings["duckdb"].append(time.perf_counter() - started)
        duck = answers["duckdb"]
        duck = duck.read_all() if isinstance(duck, pa.RecordBatchReader) else duck
        fusion = answers["datafusion"]
        problems += group_differences("DataFusion group-by", fusion, written_groups)
        problems += group_differences("DuckDB group-by", duck, written_groups)
        results["groupby"] = {
            "rows": stored,
            "groups": fusion.num_rows,
            "datafusion_best_s": round(min(timings["datafusion"]), 3),
            "duckdb_best_s": round(min(timings["duckdb"]), 3),
            "datafusion_vs_duckdb": round(min(timings["duckdb"]) / min(timings["datafusion"]), 2),
        }
        print(json.dumps(results["groupby"]), flush=True)

        # 4. A selective query: one day of thirty, where the scan reads only that day's files.
        day = sorted(fusion["event_date"].to_pylist())[fusion.num_rows // 2]
        since, until = day.isoformat(), (day + timedelta(days=1)).isoformat()
        one_day = {
            "datafusion": (
                "select count(*) as n, sum(amount) as amount from lake.raw.shop_events "
                f"where event_time >= timestamp '{since}T00:00:00Z' "
                f"and event_time < timestamp '{until}T00:00:00Z'"
            ),
            "duckdb": (
                f"select count(*) as n, sum(amount) as amount from iceberg_scan('{location}') "
                f"where event_time >= timestamptz '{since} 00:00:00+00' "
                f"and event_time < timestamptz '{until} 00:00:00+00'"
            ),
        }
        plan = "\n".join(ctx.sql(f"explain {one_day['datafusion']}").to_pydict()["plan"])
        scanned = re.search(r"files=(\d+) of (\d+)", plan)
        timings = {"datafusion": [], "duckdb": []}
        for _ in range(3):
            started = time.perf_counter()
            day_fusion = ctx.sql(one_day["datafusion"]).to_pylist()[0]
            timings["datafusion"].append(time.perf_counter() - started)
            started = time.perf_counter()
            day_duck = con.sql(one_day["duckdb"]).fetchone()
            timings["duckdb"].append(time.perf_counter() - started)
        want = sum(
            n
            for d, n in zip(fusion["event_date"].to_pylist(), fusion["n"].to_pylist(), strict=True)
            if d == day
        )
        if not (day_fusion["n"] == day_duck[0] == want):
            problems.append(
                f"one day {day}: DataFusion {day_fusion['n']} rows, "
                f"DuckDB {day_duck[0]}, want {want}"
            )
        results["one_day"] = {
            "day": since,
            "rows": want,
            "files_scanned": int(scanned.group(1)) if scanned else None,
            "files_total": int(scanned.group(2)) if scanned else None,
            "datafusion_best_s": round(min(timings["datafusion"]), 4),
            "duckdb_best_s": round(min(timings["duckdb"]), 4),
            "datafusion_vs_duckdb": round(min(timings["duckdb"]) / min(timings["datafusion"]), 2),
        }
        print(json.dumps(results["one_day"]), flush=True)
    results["disagreements"] = problems
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    for problem in problems:
        print(f"DISAGREEMENT: {problem}", flush=True)
    if problems:
        print(f"FAILED: {len(problems)} disagreements between what was written and read")
        return 1
    print("every engine read back exactly what was written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
