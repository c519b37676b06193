"""dbt benchmark: a full refresh of the dimensional model against an incremental run after
new data, on the same lake, measured in the same run.

    .venv/bin/python bench/dbt/run.py [--base 1000000] [--new 10000] \\
        [--json-out bench/results/dbt.json]

What it does, on a fresh SQLite metastore and local warehouse in a temporary folder:

1. generates ``--base + --new`` sample events with history (``weir.samples``, seed 7, 2 %
   invalid) and processes them (``weir.process``); the ``--new`` batch is the newest 90 %
   of it plus 10 % late events held back from the older ones;
2. appends the base to ``raw.shop_events`` (and the rejected rows to
   ``raw.shop_events_rejected``) and builds (``weir.modeling.build``: dbt build, then the
   marts published to ``marts.*``), the first build;
3. appends the new batch and runs the **incremental** build (timed);
4. runs a **full refresh** of the same data (timed: the baseline).

Reported: seconds of each build, split into dbt models, dbt tests and publishing, the
incremental/full ratio (aim ≤ 0.10), the data files each read, and how each mart was
published. Checked (exit code 1 on a difference): every mart published after the
incremental run equals the one published after the full refresh, row by row (sorted by its
key, ``pyarrow`` equality).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("WEIR_LOG", "error")

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # bench.sample_lake

from bench import sample_lake  # noqa: E402

#: Each mart and its key (rows are compared in this order).
MARTS = {
    "dim_users": "user_version_key",
    "dim_products": "product_version_key",
    "dim_date": "date_key",
    "fct_events": "event_id",
    "fct_order_lines": "order_line_id",
}


def node_seconds(state: Path) -> dict[str, float]:
    """Seconds dbt spent on models (and seeds) and on tests, from ``run_results.json``."""
    results = json.loads((state / "dbt" / "target" / "run_results.json").read_text())
    seconds = {"models": 0.0, "tests": 0.0}
    for node in results["results"]:
        kind = "tests" if node["unique_id"].startswith(("test.", "unit_test.")) else "models"
        seconds[kind] += node["execution_time"]
    return {k: round(v, 2) for k, v in seconds.items()}


def summary(result: object, state: Path) -> dict[str, object]:
    from weir.modeling import BuildResult

    assert isinstance(result, BuildResult)
    if not result.ok:
        print("\n".join(result.failures), file=sys.stderr)
        raise SystemExit("the dbt build failed")
    return {
        "seconds": result.seconds,
        "dbt_seconds": result.dbt_seconds,
        "publish_seconds": result.publish_seconds,
        **node_seconds(state),
        "files_read": {
            t: f"{s.new_files} of {s.files}" for t, s in result.sources.items() if s.files
        },
        "published": {t: f"{p.mode} {p.written}/{p.rows}" for t, p in result.published.items()},
    }


def marts() -> dict[str, pa.Table]:
    import weir

    return {t: weir.lake.read(f"marts.{t}").sort_by(key) for t, key in MARTS.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--json-out")
    args = parser.parse_args()

    state = sample_lake.private_state("weir-bench-dbt-")
    import weir
    from weir import modeling

    started = time.perf_counter()
    processed = sample_lake.processed_events(args.base + args.new)
    output = processed.output.sort_by("event_time")
    late = args.new // 10
    older = output.num_rows - (args.new - late)
    step = max(1, older // late)
    late_rows = pa.array([i % step == 0 and i // step < late for i in range(older)])
    base = output.slice(0, older).filter(pa.compute.invert(late_rows))
    new = pa.concat_tables([output.slice(older), output.slice(0, older).filter(late_rows)])
    print(
        f"{base.num_rows:,} base and {new.num_rows:,} new events ({late:,} late) "
        f"generated in {time.perf_counter() - started:.0f} s; state in {state}",
        file=sys.stderr,
    )
    weir.append("raw.shop_events", base)
    weir.append("raw.shop_events_rejected", processed.rejected)
    first = summary(modeling.build(), state)
    print(f"first build: {first}", file=sys.stderr)

    weir.append("raw.shop_events", new)
    incremental = summary(modeling.build(), state)
    print(f"incremental: {incremental}", file=sys.stderr)
    after_incremental = marts()
    full = summary(modeling.build(full_refresh=True), state)
    print(f"full refresh: {full}", file=sys.stderr)
    after_full = marts()

    differences = [
        t
        for t in MARTS
        if not after_incremental[t].select(after_full[t].column_names).equals(after_full[t])
    ]
    ratio = round(incremental["seconds"] / full["seconds"], 3)
    models_ratio = round(incremental["models"] / full["models"], 3)
    report = {
        "base_events": base.num_rows,
        "new_events": new.num_rows,
        "late_events": late,
        "first_build": first,
        "incremental": incremental,
        "full_refresh": full,
        "ratio_incremental_to_full": ratio,
        "ratio_models_only": models_ratio,
        "rows": {t: after_full[t].num_rows for t in MARTS},
        "marts_equal": not differences,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    if differences:
        print(f"marts differ from a full refresh: {differences}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
