"""Data-quality benchmark: incremental Great Expectations validation of the new data files
against a full validation of the whole table, on the same lake, measured in the same run.

    .venv/bin/python bench/quality/run.py [--base 1000000] [--new 10000] \\
        [--json-out bench/results/quality.json]

What it does, on a fresh SQLite metastore and local warehouse in a temporary folder
(``WEIR_STATE_DIR``; ``WEIR_METASTORE_URI``, ``WEIR_WAREHOUSE``, ``WEIR_CONFIG``,
``WEIR_HOME`` and every ``WEIR_ALERT_*`` variable unset, ``WEIR_LOG=error``):

1. generates ``--base + 2 * --new`` sample events (``weir.samples``, seed 7, 2 % invalid)
   and processes them once (``weir.process``); the valid rows, in event-time order, are the
   base and then two batches of exactly ``--new`` rows (the newest events);
2. appends the base to ``raw.shop_events`` (one commit) and runs a first
   ``weir.quality.check`` (the warm-up: it pays Great Expectations' import and the project
   set-up; reported on its own);
3. twice: appends one batch (one commit), then times an **incremental** check (the data
   files added since the snapshot the previous run validated) followed by a **full** check
   (``full=True``, the baseline).

Reported: seconds, rows and data files of every run, the ratio median(incremental) /
median(full), and the time of the last round's full and incremental inputs split into
reading Arrow (``weir.quality._read``) and Great Expectations' validation
(``weir.quality._validate``), called here with the inputs ``check`` computes. Checked
outside the timings (exit code 1 on a difference): each incremental run checks exactly the
batch's rows, starting from the snapshot the previous run ended on; each full run checks
every row of the table; every run fails the same set of checks (none expected: the sample
data passed the ingest gate); ``ops.dq_results`` read through ``weir.connect()`` holds
every run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # bench.sample_lake

from bench import sample_lake  # noqa: E402

TABLE = "raw.shop_events"


def timed_check(*, full: bool) -> tuple[Any, float]:
    """One ``weir.quality.check`` of the table, and its wall-clock seconds."""
    from weir import quality

    clock = time.perf_counter()
    run = quality.check([TABLE], full=full, alert=False)
    return run, time.perf_counter() - clock


def run_summary(run: Any, seconds: float) -> dict[str, Any]:
    """The run's validation of the raw table (its contract suite), and what else it covered
    (the summary of the ingest gate's rejections, ``raw.shop_events_rejected``)."""
    (table,) = [t for t in run.tables if t.table == TABLE]
    return {
        "seconds": round(seconds, 2),
        "rows_checked": table.rows_checked,
        "files_read": table.files_read,
        "snapshot_from": table.snapshot_from,
        "snapshot_to": table.snapshot_to,
        "expectations": len(table.results),
        "failed_checks": sorted(r["check_name"] for r in run.failures),
        "also_checked": {
            f"{t.table} ({t.suite})": f"{t.rows_checked} rows, {t.files_read} files"
            for t in run.tables
            if t is not table
        },
    }


def split(paths: list[str]) -> dict[str, Any]:
    """Seconds of each step of validating ``paths`` as ``check`` does, called one by one:
    the Great Expectations context, the table's schema and suite, reading the columns as
    Arrow, and the validation (a checkpoint run, Data Docs updated; nothing written to
    ``ops.dq_results``)."""
    from weir import quality
    from weir.quality import suites

    steps: dict[str, float] = {}
    clock = time.perf_counter()
    context = quality._context()
    steps["context_seconds"] = time.perf_counter() - clock
    clock = time.perf_counter()
    schema = quality._schema_of(TABLE)
    checks = suites.contract_checks(TABLE, schema.names)
    id_column = quality._id_column(TABLE, schema.names)
    # The columns _check_table reads: every checked column, then the id column.
    needed = [c.column for c in checks if c.column] + ([id_column] if id_column else [])
    needed = list(dict.fromkeys(needed))
    steps["suite_seconds"] = time.perf_counter() - clock
    clock = time.perf_counter()
    data = quality._read(TABLE, paths, needed)
    steps["read_arrow_seconds"] = time.perf_counter() - clock
    clock = time.perf_counter()
    outcomes = quality._validate(context, TABLE, data, checks, id_column)
    steps["validate_seconds"] = time.perf_counter() - clock
    return {
        **{k: round(v, 2) for k, v in steps.items()},
        "rows": data.num_rows,
        "files": len(paths),
        "columns": len(needed),
        "arrow_mb": round(data.nbytes / 1e6, 1),
        "ge_expectations": len(outcomes),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--json-out")
    args = parser.parse_args()
    load_average = [round(x, 2) for x in os.getloadavg()]

    state = sample_lake.private_state("weir-bench-quality-")
    import weir
    from weir import lake

    started = time.perf_counter()
    processed = sample_lake.processed_events(args.base + 2 * args.new)
    output = processed.output.sort_by("event_time")
    if output.num_rows <= 2 * args.new:
        raise SystemExit(f"only {output.num_rows} valid rows: --base is too small for --new")
    base_rows = output.num_rows - 2 * args.new
    base = output.slice(0, base_rows)
    batches = [output.slice(base_rows + i * args.new, args.new) for i in range(2)]
    print(
        f"{base.num_rows:,} base rows and 2 batches of {args.new:,} "
        f"({processed.rejected.num_rows:,} events rejected) generated in "
        f"{time.perf_counter() - started:.0f} s; state in {state}",
        file=sys.stderr,
    )

    problems: list[str] = []
    weir.append(TABLE, base)
    table_rows = base.num_rows
    run, seconds = timed_check(full=False)
    warm_up = run_summary(run, seconds)
    if warm_up["rows_checked"] != table_rows:
        problems.append(f"warm-up checked {warm_up['rows_checked']} rows, not {table_rows}")
    print(f"warm-up: {warm_up}", file=sys.stderr)
    previous = warm_up
    runs = [warm_up]
    rounds = []
    for number, batch in enumerate(batches, start=1):
        clock = time.perf_counter()
        weir.append(TABLE, batch)
        append_seconds = time.perf_counter() - clock
        table_rows += batch.num_rows
        run, seconds = timed_check(full=False)
        incremental = run_summary(run, seconds)
        run, seconds = timed_check(full=True)
        full = run_summary(run, seconds)
        if incremental["rows_checked"] != batch.num_rows:
            problems.append(
                f"round {number}: incremental checked {incremental['rows_checked']} rows, "
                f"not the batch's {batch.num_rows}"
            )
        if incremental["snapshot_from"] != previous["snapshot_to"]:
            problems.append(
                f"round {number}: incremental started from snapshot "
                f"{incremental['snapshot_from']}, not {previous['snapshot_to']}"
            )
        if full["rows_checked"] != table_rows:
            problems.append(
                f"round {number}: full checked {full['rows_checked']} rows, not {table_rows}"
            )
        rounds.append(
            {
                "round": number,
                "append_seconds": round(append_seconds, 2),
                "incremental": incremental,
                "full": full,
                "ratio_incremental_to_full": round(incremental["seconds"] / full["seconds"], 3),
            }
        )
        print(f"round {number}: {rounds[-1]}", file=sys.stderr)
        runs += [incremental, full]
        previous = full

    stored_rows = weir.connect().sql(f"select count(*) as n from lake.{TABLE}").to_pylist()
    if stored_rows[0]["n"] != table_rows:
        problems.append(f"{TABLE} holds {stored_rows[0]['n']} rows, not {table_rows}")
    failed_sets = {tuple(r["failed_checks"]) for r in runs}
    if len(failed_sets) != 1:
        problems.append(f"runs failed different checks: {sorted(failed_sets)}")
    stored_runs = (
        weir.connect()
        .sql("select count(distinct run_id) as n from lake.ops.dq_results")
        .to_pylist()[0]["n"]
    )
    if stored_runs != len(runs):
        problems.append(f"ops.dq_results holds {stored_runs} runs, not {len(runs)}")

    # The last round's inputs again, step by step (outside the timed runs).
    last = rounds[-1]
    snapshot = last["full"]["snapshot_to"]
    all_files = lake.files(TABLE, snapshot_id=snapshot).column("file_path").to_pylist()
    new_files = lake.added_files(TABLE, last["incremental"]["snapshot_from"], snapshot_id=snapshot)
    steps: dict[str, Any] = {}
    try:
        steps = {"full": split(all_files), "incremental": split(new_files or [])}
    except (AttributeError, TypeError) as error:  # weir.quality's private helpers changed
        print(f"split skipped: {error!r}", file=sys.stderr)
        steps = {"error": repr(error)}
    for kind in ("full", "incremental"):
        if kind in steps and steps[kind]["rows"] != last[kind]["rows_checked"]:
            problems.append(f"the {kind} split read {steps[kind]['rows']} rows")

    median_incremental = round(statistics.median(r["incremental"]["seconds"] for r in rounds), 2)
    median_full = round(statistics.median(r["full"]["seconds"] for r in rounds), 2)
    report = {
        "generated_events": args.base + 2 * args.new,
        "rejected_events": processed.rejected.num_rows,
        "base_rows": base.num_rows,
        "batch_rows": args.new,
        "table_rows": table_rows,
        "table_files": len(all_files),
        "warm_up": warm_up,
        "rounds": rounds,
        "median_incremental_seconds": median_incremental,
        "median_full_seconds": median_full,
        "ratio_incremental_to_full": round(median_incremental / median_full, 3),
        "split_last_round": steps,
        "failed_checks": sorted(next(iter(failed_sets))) if len(failed_sets) == 1 else None,
        "dq_results_runs": stored_runs,
        "checks_passed": not problems,
        "load_average_at_start": load_average,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
