"""Soak benchmark: a day of one-second commits compressed in time, with the maintenance
policy and without it, in the same run.

    .venv/bin/python bench/soak/run.py [--commits 86400] [--window 3600] \\
        [--unmaintained-commits 5000] [--json-out bench/results/soak.json] [--keep]

Each "second" commits one small batch to ``raw.shop_events`` (``--events`` events, each
invalid with probability 5%, so about two seconds in three also commit their rejected rows
to ``raw.shop_events_rejected`` first), as a consumer does: the rejected table only when
there are rejected rows, and every snapshot summary carries the batch counts, the contract
version and a two-shard checkpoint. Commits follow each other as fast as they can; a
reader thread queries the table through ``weir.connect()`` meanwhile.

* **maintained**: ``--commits`` seconds on a fresh lake with the default policy
  (``[lake.maintenance]``), run by a thread every 60 commits (the policy's 60-second
  interval at one commit a second), as a consumer runs it in the background. Time is
  compressed, so the policy's 5-minute window holds every commit and its cap of 400
  snapshots (300 would be 5 minutes at one commit a second) is what bounds it: the run
  reaches the steady state a real day would.
* **unmaintained**: the same commits on another fresh lake with no maintenance, for
  ``--unmaintained-commits`` seconds (it slows down as it goes; the whole day would take
  hours).

Reported per window of ``--window`` commits (valid-table commits): commit latency p50/p99
(ms) of both tables' commits, ``metadata.json`` size at the window's end, files in the
valid table's ``metadata/`` folder and ``data/`` folder, manifests of the current snapshot,
snapshots kept, and the reader's planning time (``ctx.sql(...)`` plus the physical plan)
p50 for a one-day count, and the policy's run time p50 on the valid table. At the end the
rows are checked: the valid table holds every valid row committed, once (count and an
order-independent checksum of ``event_id``). Each run's lake (a temporary folder) is deleted
at its end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("WEIR_LOG", "error")

import pyarrow as pa
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.manifest import read_manifest_list

import weir
from weir import samples
from weir.config import LakeSettings

VALID = "raw.shop_events"
REJECTED = "raw.shop_events_rejected"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def event_checksum(ids: list[str]) -> int:
    total = 0
    for event_id in ids:
        digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
        total = (total + int.from_bytes(digest, "little")) % (1 << 64)
    return total


class Batches:
    """Processed batches of generated events, reused with fresh event ids."""

    def __init__(self, events: int) -> None:
        generated = samples.generate_shop_events(20_000, invalid_fraction=0.05, seed=21)
        result = weir.process(samples.to_ndjson(generated), "ndjson")
        self.valid = result.output
        self.rejected = result.rejected
        self.events = events
        self.version = weir.processor("shop_events").contract_version

    def batch(self, second: int) -> tuple[pa.Table, pa.Table, dict[str, str]]:
        draw = random.Random(second)
        n_rejected = sum(draw.random() < 0.05 for _ in range(self.events))
        n_valid = max(1, self.events - n_rejected)
        start = (second * n_valid) % (self.valid.num_rows - n_valid)
        valid = self.valid.slice(start, n_valid)
        ids = [f"{second:012d}-{i:04d}" for i in range(n_valid)]
        column = valid.schema.get_field_index("event_id")
        valid = valid.set_column(
            column, valid.schema.field(column), pa.array(ids, valid.schema.field(column).type)
        )
        rejected = self.rejected.slice(
            (second * 7) % (self.rejected.num_rows - self.events), n_rejected
        )
        sequence = str(49_650_000_000_000_000_000_000_000_000_000_000_000_000_000 + second * 1000)
        summary = {
            "weir.batch-id": f"soak-{second}",
            "weir.batch.events": str(n_valid + n_rejected),
            "weir.batch.valid": str(n_valid),
            "weir.batch.rejected": str(n_rejected),
            "weir.batch.dead-lettered": "0",
            "weir.contract-version": self.version,
            "weir.checkpoint": json.dumps(
                {
                    "weir-shop_events": {
                        "shardId-000000000000": sequence,
                        "shardId-000000000001": sequence,
                    }
                }
            ),
        }
        return valid, rejected, summary


class Reader(threading.Thread):
    """Queries the valid table through weir.connect() every `pause` seconds; records the
    planning time (logical + physical plan) with the commit count at that moment."""

    def __init__(self, settings: LakeSettings, progress: list[int], pause: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.settings, self.progress, self.pause = settings, progress, pause
        self.samples: list[tuple[int, float]] = []
        self.stop = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        ctx = weir.connect(self.settings)
        while not self.stop.wait(self.pause):
            if self.progress[0] == 0:
                continue  # no table yet
            try:
                started = time.perf_counter()
                df = ctx.sql(
                    f"select count(*) from lake.{VALID} where event_date = date '2026-11-20'"
                )
                df.execution_plan()
                self.samples.append((self.progress[0], (time.perf_counter() - started) * 1000))
            except Exception as e:  # reported, never fatal to the soak
                self.errors.append(str(e)[:300])


class Maintainer(threading.Thread):
    """Runs the policy on both tables every `every` valid commits, as a consumer does."""

    def __init__(self, settings: LakeSettings, progress: list[int], every: int = 60) -> None:
        super().__init__(daemon=True)
        self.settings, self.progress, self.every = settings, progress, every
        self.stop = threading.Event()
        self.runs: list[dict] = []
        self.errors: list[str] = []

    def run(self) -> None:
        last = 0
        while not self.stop.is_set():
            if self.progress[0] - last < self.every:
                time.sleep(0.01)
                continue
            last = self.progress[0]
            try:
                for report in weir.maintain([VALID, REJECTED], settings=self.settings):
                    self.runs.append({"at": last, **report})
            except Exception as e:
                self.errors.append(str(e)[:300])


def table_folder(root: Path, table: str) -> Path:
    namespace, name = table.split(".")
    return root / "warehouse" / namespace / name


def manifests_of_current(settings: LakeSettings) -> int:
    """Manifests of the valid table's current snapshot, read from its files (pyiceberg's
    catalog would open the SQLite metastore with a second SQLite library in this process)."""
    metadata = json.loads(Path(weir.lake.metadata_location(VALID, settings=settings)).read_text())
    current = metadata.get("current-snapshot-id")
    snapshot = next((s for s in metadata["snapshots"] if s["snapshot-id"] == current), None)
    if snapshot is None:
        return 0
    listing = PyArrowFileIO().new_input(snapshot["manifest-list"])
    return len(list(read_manifest_list(listing)))


def soak(
    commits: int, window: int, events: int, maintained: bool, batches: Batches, keep: bool
) -> dict:
    root = Path(tempfile.mkdtemp(prefix="weir-soak-"))
    settings = LakeSettings(str(root / "metastore.db"), str(root / "warehouse"))
    weir.lake.ensure_dataset("shop_events", settings)
    progress = [0]
    reader = Reader(settings, progress)
    maintainer = Maintainer(settings, progress) if maintained else None
    reader.start()
    if maintainer:
        maintainer.start()
    windows: list[dict] = []
    latencies: list[float] = []
    valid_rows = 0
    checksum = 0
    started = time.perf_counter()
    label = "maintained" if maintained else "unmaintained"
    for second in range(commits):
        valid, rejected, summary = batches.batch(second)
        if rejected.num_rows:
            t0 = time.perf_counter()
            weir.append(REJECTED, rejected, summary, settings=settings)
            latencies.append((time.perf_counter() - t0) * 1000)
        t1 = time.perf_counter()
        weir.append(VALID, valid, summary, settings=settings)
        latencies.append((time.perf_counter() - t1) * 1000)
        valid_rows += valid.num_rows
        checksum = (checksum + event_checksum(valid.column("event_id").to_pylist())) % (1 << 64)
        progress[0] = second + 1
        if (second + 1) % window == 0 or second + 1 == commits:
            folder = table_folder(root, VALID)
            metadata_files = [p for p in (folder / "metadata").iterdir() if p.is_file()]
            current = weir.lake.metadata_location(VALID, settings=settings)
            plans = [ms for at, ms in reader.samples if at > second + 1 - window]
            row = {
                "commits": second + 1,
                "commit_p50_ms": round(percentile(latencies, 0.50), 1),
                "commit_p99_ms": round(percentile(latencies, 0.99), 1),
                "metadata_json_kb": round(Path(current).stat().st_size / 1024, 1),
                "metadata_files": len(metadata_files),
                "data_files": sum(1 for p in (folder / "data").rglob("*") if p.is_file()),
                "manifests": manifests_of_current(settings),
                "snapshots": weir.lake.snapshots(VALID, settings=settings).num_rows,
                "planning_p50_ms": round(percentile(plans, 0.50), 1),
                "maintenance_runs": len(maintainer.runs) // 2 if maintainer else 0,
                "maintenance_p50_s": round(
                    percentile(
                        [
                            r["seconds"]
                            for r in (maintainer.runs if maintainer else [])
                            if r["table"] == VALID and r["at"] > second + 1 - window
                        ],
                        0.5,
                    ),
                    3,
                ),
                "elapsed_s": round(time.perf_counter() - started, 1),
            }
            windows.append(row)
            print(json.dumps({"run": label, **row}), flush=True)
            latencies = []
    reader.stop.set()
    reader.join(timeout=60)
    if maintainer:
        maintainer.stop.set()
        maintainer.join(timeout=600)
    stored = weir.lake.read(VALID, settings=settings).column("event_id").to_pylist()
    problems = []
    if len(stored) != valid_rows:
        problems.append(f"{label}: {len(stored)} rows stored for {valid_rows} committed")
    if event_checksum(stored) != checksum:
        problems.append(f"{label}: the stored event ids differ from the committed ones")
    if keep:
        print(f"{label}: lake kept in {root}", file=sys.stderr)
    else:
        shutil.rmtree(root, ignore_errors=True)  # the unmaintained lake alone is ~18 GB
    problems += [f"{label} reader: {e}" for e in reader.errors[:5]]
    if maintainer:
        problems += [f"{label} maintenance: {e}" for e in maintainer.errors[:5]]
    return {
        "commits": commits,
        "windows": windows,
        "rows": valid_rows,
        "maintenance_runs": len(maintainer.runs) // 2 if maintainer else 0,
        "maintenance_seconds_p50": round(
            statistics.median([r["seconds"] for r in maintainer.runs if r["table"] == VALID]), 3
        )
        if maintainer and maintainer.runs
        else None,
        "problems": problems,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commits", type=int, default=86_400, help="seconds with maintenance")
    parser.add_argument("--window", type=int, default=3_600, help="commits per reported window")
    parser.add_argument(
        "--unmaintained-commits", type=int, default=5_000, help="seconds without maintenance"
    )
    parser.add_argument("--unmaintained-window", type=int, default=500)
    parser.add_argument("--events", type=int, default=20, help="events per batch")
    parser.add_argument("--json-out", help="where to write the results (default: nowhere)")
    parser.add_argument("--keep", action="store_true", help="keep each run's lake (temp folder)")
    args = parser.parse_args()
    batches = Batches(args.events)
    results: dict[str, object] = {"events_per_batch": args.events}
    results["unmaintained"] = soak(
        args.unmaintained_commits, args.unmaintained_window, args.events, False, batches, args.keep
    )
    results["maintained"] = soak(args.commits, args.window, args.events, True, batches, args.keep)
    maintained = results["maintained"]["windows"]
    first, last = maintained[0], maintained[-1]
    results["last_over_first_p99"] = round(last["commit_p99_ms"] / first["commit_p99_ms"], 2)
    problems = results["unmaintained"]["problems"] + results["maintained"]["problems"]
    results["problems"] = problems
    print(json.dumps({"last_over_first_p99": results["last_over_first_p99"], "problems": problems}))
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
