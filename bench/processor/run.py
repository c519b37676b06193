"""Processor benchmark: weir vs three Python baselines on ``shop_events``.

Run (from the repository root, with ``weir`` built into the environment, plus
``orjson`` and ``pyarrow``)::

    python bench/processor/run.py [--records 100000] [--repeat 5] \\
        [--json-out bench/results/processor.json]

What it does:

* generates ``--records`` events once with ``weir.samples.generate_shop_events``
  (``invalid_fraction=0.01, seed=42``) and serialises them as NDJSON and CSV;
* times each candidate on each format: one warm-up call, then ``--repeat``
  calls (best and median wall time; ``gc.collect()`` before each call, GC on):

  - ``weir``: ``weir.process(data, fmt, "shop_events")``
    (``.output`` and ``.rejected`` are pyarrow Tables),
  - ``(a) pure_python``, ``(b) orjson_python``: the reference implementation in
    ``tests/reference/`` (imported as ``tests.reference``),
  - ``(c) pyarrow_compute`` from ``bench/processor/pyarrow_baseline.py``;

* checks that every candidate produced exactly what the reference produced: every output
  row with every field (in order, as ``tests.reference``'s ``OUTPUT_SCHEMA``; floats compared
  exactly), the rejected record indexes, and the violations as (record, field, rule) (their
  values and message wording are left out: each implementation words them its own way).
  The reference is ``weir.process`` (the thing benchmarked, which
  ``tests/test_reference_agreement.py`` checks against (a) field by field), or (a) when
  ``import weir`` fails; it is run once per format outside the timings, and each candidate's
  warm-up result is turned into Arrow columns and compared before its timed calls (so
  the timings carry no comparison cost and no retained Python objects). Any
  disagreement is printed with the first differing values, after the table, and the
  exit code is 1;
* measures each candidate's peak memory in fresh subprocesses
  (``run.py --memory-of CANDIDATE --format FMT [--input FILE] [--warm]``; without
  ``--input`` it makes the ``--records`` events in another process first), as a multiple
  of the input size, twice:

  - warm (the table's column): after one call on the input's first 100 records, so
    that one-time costs (code pages of the candidate's libraries mapped in, caches,
    sessions) are not counted; the kernel's peak-RSS mark is reset (``/proc/self/clear_refs``)
    and the peak during the call is compared with the resident size just before it.
    This is what processing one more input costs a running consumer or notebook;
  - first call: ``ru_maxrss`` after the process's first call minus ``ru_maxrss`` after
    loading the input (the measuring process is started from a small relay process,
    because on Linux ``ru_maxrss`` is inherited from the forking parent);
* times parsing alone when weir is a candidate: ``weir.parse`` (a typed Arrow table)
  against ``json.loads`` per line, on ``--records`` valid events (same seed, no broken
  ones: parsing is strict), best of ``--repeat``;
* pins itself (and so the subprocesses) to one core with
  ``os.sched_setaffinity(0, {0})`` before importing any candidate, so
  records/s are single-core figures;
* prints a markdown table and the ratios weir vs (a) and vs (c), and writes all
  numbers to ``--json-out``.

If ``import weir`` fails the baselines are still run (the weir rows are left out).
Timings are only meaningful on an otherwise idle machine: the load average at the
start is printed and stored.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Rejected-record warnings from the Rust side would flood the output; the benchmark reports counts.
os.environ.setdefault("WEIR_LOG", "error")

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# The baselines: pyarrow_baseline.py and weir_samples.py beside this file, and the reference
# implementation as tests.reference (from the repository root). Only paths here: the candidates
# are imported after pinning to one core.
for _folder in (REPO, HERE):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))
FORMATS: tuple[str, ...] = ("ndjson", "csv")
CANDIDATE_NAMES: tuple[str, ...] = ("weir", "pure_python", "orjson_python", "pyarrow_compute")
LABELS: dict[str, str] = {
    "weir": "weir",
    "pure_python": "(a) pure_python",
    "orjson_python": "(b) orjson_python",
    "pyarrow_compute": "(c) pyarrow_compute",
}
INVALID_FRACTION = 0.01
SEED = 42

Runner = Callable[[bytes, str], Any]


@dataclass
class Timing:
    candidate: str
    format: str
    best_s: float
    median_s: float
    runs_s: list[float]
    output_rows: int
    rejected_records: int
    records_per_s: float = 0.0
    mb_per_s: float = 0.0
    speedup_vs_a: float | None = None
    peak_memory_bytes: int | None = None
    peak_memory_x_input: float | None = None
    first_call_peak_memory_bytes: int | None = None
    first_call_peak_memory_x_input: float | None = None
    agrees: bool | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Outputs:
    """What a candidate produced, in one form for all: the output rows as a pyarrow Table with
    the reference's ``OUTPUT_SCHEMA`` (no Python objects, so holding it does not slow the
    garbage collector during timed calls), the rejected record indexes and the violations as
    (record, field, rule) counts."""

    output: Any
    rejected: list[int]
    violations: Counter[tuple[int, str, str]]


def _pin_to_one_core() -> bool:
    if not hasattr(os, "sched_setaffinity"):
        return False
    try:
        os.sched_setaffinity(0, {0})
    except OSError:
        return False
    return True


def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS, KiB on Linux


def _import_weir() -> tuple[Any | None, str | None]:
    try:
        import weir
    except Exception as exc:  # an ImportError, or any failure while loading the extension
        return None, f"{type(exc).__name__}: {exc}"
    if not hasattr(weir, "process"):
        return None, "the weir module has no process() function"
    return weir, None


def _runners(weir: Any | None) -> dict[str, Runner]:
    from pyarrow_baseline import pyarrow_compute

    from tests.reference import orjson_python, pure_python

    runners: dict[str, Runner] = {
        "pure_python": pure_python,
        "orjson_python": orjson_python,
        "pyarrow_compute": pyarrow_compute,
    }
    if weir is not None:

        def run_weir(data: bytes, fmt: str) -> Any:
            return weir.process(data, fmt, "shop_events")

        runners = {"weir": run_weir, **runners}
    return runners


def _counts(candidate: str, result: Any) -> tuple[int, int]:
    if candidate == "weir":
        return int(result.output.num_rows), int(result.rejected.num_rows)
    return int(result.output_rows), int(result.rejected_records)


def _outputs(candidate: str, result: Any) -> Outputs:
    import pyarrow as pa

    from tests.reference import OUTPUT_SCHEMA, POSITION_FIELDS

    schema = OUTPUT_SCHEMA
    if candidate == "weir":
        if result.output.schema.names != [*schema.names, *POSITION_FIELDS]:
            raise SystemExit(
                f"weir's output columns {result.output.schema.names} are not the reference's"
                f" {schema.names} and the Kinesis position: update tests/reference/contract.py"
            )
        # The position columns are null outside the consumer; the reference has none.
        output = result.output.drop_columns(list(POSITION_FIELDS)).cast(schema)
        rejected = result.rejected["record_index"].to_pylist()
        violations = Counter(
            (v["record_index"], v["field"] or "", v["rule"]) for v in result.violation_list()
        )
    else:
        if isinstance(result.output, pa.Table):
            output = result.output.select(schema.names).cast(schema)
            details = result.violation_details
            keys = zip(*(details[k].to_pylist() for k in ("record", "field", "rule")), strict=True)
        else:
            output = pa.Table.from_pylist(result.output, schema=schema)
            keys = ((r, f, rule) for r, f, rule, _, _ in result.violation_details)
        violations = Counter((r, f or "", rule) for r, f, rule in keys)
        rejected = sorted({r for r, _, _ in violations})
        if len(rejected) != result.rejected_records:
            rejected.append(-1)  # a rejected record without a violation: never equal to weir
    return Outputs(output.combine_chunks(), sorted(rejected), violations)


def _disagreements(found: Outputs, expected: Outputs, limit: int = 5) -> list[str]:
    """What differs between two candidates' outputs (at most ``limit`` items per kind)."""
    problems: list[str] = []
    if found.output.num_rows != expected.output.num_rows:
        problems.append(f"{found.output.num_rows} output rows, expected {expected.output.num_rows}")
    else:
        for name in expected.output.schema.names:
            mine, theirs = found.output[name], expected.output[name]
            if mine.equals(theirs):
                continue
            differing = [
                (row, a, b)
                for row, (a, b) in enumerate(zip(mine.to_pylist(), theirs.to_pylist(), strict=True))
                if a != b
            ]
            shown = ", ".join(f"row {row}: {a!r} instead of {b!r}" for row, a, b in differing[:2])
            problems.append(f"column {name} differs in {len(differing)} rows ({shown})")
    if found.rejected != expected.rejected:
        extra = sorted(set(found.rejected) - set(expected.rejected))
        missing = sorted(set(expected.rejected) - set(found.rejected))
        problems.append(
            f"{len(found.rejected)} rejected records, expected {len(expected.rejected)}"
            f" (rejected only here: {extra[:limit]}, not rejected here: {missing[:limit]})"
        )
    if found.violations != expected.violations:
        extra = list(itertools.islice((found.violations - expected.violations).elements(), limit))
        missing = list(itertools.islice((expected.violations - found.violations).elements(), limit))
        problems.append(
            f"{found.violations.total()} violations, expected {expected.violations.total()}"
            f" (only here: {extra}, missing here: {missing})"
        )
    return problems


def _time(
    candidate: str, run: Runner, data: bytes, fmt: str, repeat: int
) -> tuple[Timing, Outputs]:
    gc.collect()
    result = run(data, fmt)  # warm-up
    rows, rejected = _counts(candidate, result)
    outputs = _outputs(candidate, result)
    del result
    runs: list[float] = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = run(data, fmt)
        runs.append(time.perf_counter() - start)
        del result
    timing = Timing(candidate, fmt, min(runs), statistics.median(runs), runs, rows, rejected)
    return timing, outputs


WARM_UP_RECORDS = 100
"""Records of the input a candidate processes before its warm memory measurement."""


def _status_kib(name: str) -> int:
    """A memory figure of this process from ``/proc/self/status`` (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {name}")


def _memory_of(candidate: str, fmt: str, input_path: Path, warm: bool) -> int:
    """Subprocess mode: peak RSS growth (bytes) of one call, after imports and loading the
    input; ``warm``: after a first call on the input's first records (see the module doc)."""
    _pin_to_one_core()
    weir, _ = _import_weir() if candidate == "weir" else (None, None)
    runners = _runners(weir)
    if candidate not in runners:
        raise SystemExit(f"candidate {candidate!r} is not available")
    run = runners[candidate]
    data = input_path.read_bytes()
    if warm:
        # CSV: the header line and 100 records; NDJSON: 100 records.
        lines = WARM_UP_RECORDS + (1 if fmt == "csv" else 0)
        run(b"".join(data.splitlines(keepends=True)[:lines]), fmt)
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        before = _status_kib("VmRSS")
        result = run(data, fmt)
        peak = _status_kib("VmHWM")
        del result
        return (peak - before) * 1024
    gc.collect()
    before = _maxrss_bytes()
    result = run(data, fmt)
    after = _maxrss_bytes()
    del result
    return after - before


def _generate_to(path: Path, fmt: str, records: int) -> None:
    from weir_samples import load_samples

    samples = load_samples()
    events = samples.generate_shop_events(records, invalid_fraction=INVALID_FRACTION, seed=SEED)
    path.write_bytes(samples.to_ndjson(events) if fmt == "ndjson" else samples.to_csv(events))


def _print_memory(candidate: str, fmt: str, input_path: Path, warm: bool) -> int:
    peak = _memory_of(candidate, fmt, input_path, warm)
    size = input_path.stat().st_size
    report = {
        "candidate": candidate,
        "format": fmt,
        "warm": warm,
        "input_bytes": size,
        "peak_bytes": peak,
        "x_input": peak / size,
    }
    print(json.dumps(report))
    return 0


def _measure_memory(
    candidate: str, fmt: str, input_path: Path, warm: bool
) -> tuple[int | None, str | None]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--memory-of",
        candidate,
        "--format",
        fmt,
        "--input",
        str(input_path),
    ]
    if warm:
        command.append("--warm")
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return None, f"memory subprocess failed: {tail[0]}"
    try:
        return int(json.loads(proc.stdout.strip().splitlines()[-1])["peak_bytes"]), None
    except (ValueError, KeyError, IndexError) as exc:
        return None, f"memory subprocess gave no result ({exc})"


def _time_parsing(weir: Any, samples: Any, records: int, repeat: int) -> dict[str, Any]:
    """Parsing alone: ``weir.parse`` (typed Arrow table) against ``json.loads`` per line on
    the same valid NDJSON events (strict parsing rejects the benchmark's broken ones)."""
    data = samples.to_ndjson(samples.generate_shop_events(records, invalid_fraction=0.0, seed=SEED))
    lines = data.splitlines()

    def best(call: Callable[[], Any]) -> tuple[float, Any]:
        result = call()
        times = []
        for _ in range(repeat):
            gc.collect()
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        return min(times), result

    weir_s, table = best(lambda: weir.parse(data, "ndjson", "shop_events"))
    loads_s, objects = best(lambda: [json.loads(line) for line in lines])
    if table.num_rows != len(objects):
        raise SystemExit(
            f"parsing: weir.parse gave {table.num_rows} rows, json.loads {len(objects)}"
        )
    return {
        "records": len(objects),
        "weir_parse_best_s": weir_s,
        "json_loads_best_s": loads_s,
        "weir_parse_vs_json_loads": loads_s / weir_s,
    }


def _fmt_float(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{suffix}"


def _ratio_text(ratio: float, label: str) -> str:
    if ratio >= 1:
        return f"{ratio:.1f}x faster than {label}"
    return f"{1 / ratio:.1f}x slower than {label}"


def _table(timings: list[Timing]) -> str:
    header = (
        "| candidate | format | best s | median s | records/s | MB/s | speed-up vs (a)"
        " | peak memory / input (warm) | (first call) |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows = [header]
    for t in timings:
        speedup = _fmt_float(t.speedup_vs_a, 1, "x")
        memory = _fmt_float(t.peak_memory_x_input, 2, "x")
        first_call = _fmt_float(t.first_call_peak_memory_x_input, 2, "x")
        rows.append(
            f"| {LABELS[t.candidate]} | {t.format} | {t.best_s:.3f} | {t.median_s:.3f}"
            f" | {t.records_per_s:,.0f}"
            f" | {t.mb_per_s:,.1f} | {speedup} | {memory} | {first_call} |"
        )
        if t.agrees is False:
            rows.append(
                f"| **DISAGREES** | {t.format} | outputs differ from the reference"
                f" ({t.output_rows:,} rows / {t.rejected_records:,} rejected; see below)"
                " | | | | | |"
            )
    return "\n".join(rows)


def _main_benchmark(args: argparse.Namespace) -> int:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    # Before pyarrow/weir start their thread pools. --all-cores shows what weir gains from
    # the second core (the Python baselines are single-threaded either way).
    pinned = False if args.all_cores else _pin_to_one_core()
    weir, weir_error = _import_weir()
    runners = _runners(weir)
    if weir is None:
        print(
            f"WARNING: `import weir` failed ({weir_error}); running the baselines only.\n",
            flush=True,
        )
    selected = [
        c for c in CANDIDATE_NAMES if c in runners and (not args.candidates or c in args.candidates)
    ]

    import pyarrow
    from weir_samples import load_samples

    samples = load_samples()
    started = time.perf_counter()
    events = samples.generate_shop_events(
        args.records, invalid_fraction=INVALID_FRACTION, seed=SEED
    )
    inputs = {"ndjson": samples.to_ndjson(events), "csv": samples.to_csv(events)}
    del events
    gc.collect()
    print(
        f"{args.records:,} shop_events (invalid_fraction={INVALID_FRACTION}, seed={SEED})"
        " generated in"
        f" {time.perf_counter() - started:.1f} s: NDJSON {len(inputs['ndjson']) / 1e6:.1f} MB,"
        f" CSV {len(inputs['csv']) / 1e6:.1f} MB",
        flush=True,
    )
    print(
        "pinned to one core: "
        f"{'yes' if pinned else 'NO (--all-cores, or sched_setaffinity unavailable)'};"
        f" load average at start: {_fmt_float(load)} on {os.cpu_count()} CPUs",
        flush=True,
    )
    if load is not None and load > 0.5:
        print(
            "WARNING: the machine is busy; timings will be noisy and slower than when idle.",
            flush=True,
        )
    print(flush=True)

    # The reference: weir whenever it imports (even when not among --candidates), else (a).
    reference_name = "weir" if "weir" in runners else "pure_python"
    timings: list[Timing] = []
    disagreements: list[str] = []
    for fmt in FORMATS:
        data = inputs[fmt]
        reference = _outputs(reference_name, runners[reference_name](data, fmt))
        for candidate in selected:
            print(f"timing {LABELS[candidate]} on {fmt} ...", end=" ", flush=True)
            t, outputs = _time(candidate, runners[candidate], data, fmt, args.repeat)
            t.records_per_s = args.records / t.best_s
            t.mb_per_s = len(data) / t.best_s / 1e6
            problems = _disagreements(outputs, reference)
            del outputs
            t.agrees = not problems
            for problem in problems:
                message = f"{LABELS[t.candidate]} on {fmt} vs {LABELS[reference_name]}: {problem}"
                t.notes.append(message)
                disagreements.append(message)
            timings.append(t)
            print(
                f"best {t.best_s:.3f} s, median {t.median_s:.3f} s"
                f"{'' if t.agrees else ' (OUTPUTS DISAGREE)'}",
                flush=True,
            )
        del reference

    for fmt in FORMATS:
        by_name = {t.candidate: t for t in timings if t.format == fmt}
        base = by_name.get("pure_python")
        for t in by_name.values():
            if base is not None:
                t.speedup_vs_a = base.best_s / t.best_s

    if not args.skip_memory:
        with tempfile.TemporaryDirectory(prefix="weir-bench-") as tmp:
            paths = {}
            for fmt in FORMATS:
                paths[fmt] = Path(tmp) / f"shop_events.{fmt}"
                paths[fmt].write_bytes(inputs[fmt])
            for t in timings:
                print(
                    f"peak memory of {LABELS[t.candidate]} on {t.format} ...", end=" ", flush=True
                )
                size = len(inputs[t.format])
                first, error = _measure_memory(t.candidate, t.format, paths[t.format], False)
                warm, warm_error = _measure_memory(t.candidate, t.format, paths[t.format], True)
                for problem in (error, warm_error):
                    if problem is not None:
                        t.notes.append(problem)
                        print(problem, end=" ", flush=True)
                t.first_call_peak_memory_bytes = first
                t.first_call_peak_memory_x_input = None if first is None else first / size
                t.peak_memory_bytes = warm
                t.peak_memory_x_input = None if warm is None else warm / size
                print(
                    f"{_fmt_float(t.peak_memory_x_input)}x input warm,"
                    f" {_fmt_float(t.first_call_peak_memory_x_input)}x on a first call",
                    flush=True,
                )

    print()
    print(_table(timings))
    print()
    for message in disagreements:
        print(f"**DISAGREEMENT: {message}**")
    if not disagreements:
        print(
            f"All candidates agree with {LABELS[reference_name]} on every output row and"
            " field, the rejected records and the violations."
        )
    for t in timings:
        if t.format == "ndjson" and t.candidate == selected[0]:
            print(
                f"({t.output_rows:,} output rows, {t.rejected_records:,} rejected records"
                " on NDJSON)"
            )
    ratios: dict[str, dict[str, float]] = {}
    if "weir" in selected:
        print()
        for fmt in FORMATS:
            by_name = {t.candidate: t for t in timings if t.format == fmt}
            weir_t = by_name["weir"]
            ratios[fmt] = {
                f"weir_vs_{name}": by_name[name].best_s / weir_t.best_s
                for name in by_name
                if name != "weir"
            }
            parts = [
                _ratio_text(by_name[name].best_s / weir_t.best_s, LABELS[name])
                for name in ("pure_python", "pyarrow_compute")
                if name in by_name
            ]
            if parts:
                cores = "one core" if pinned else "all cores"
                print(f"weir on {fmt}: " + ", ".join(parts) + f" (best times, {cores})")
    else:
        print("\n(weir not available: no weir ratios)")

    parsing = None
    if weir is not None and "weir" in selected:
        print("timing parsing alone (weir.parse vs json.loads per line) ...", end=" ", flush=True)
        parsing = _time_parsing(weir, samples, args.records, args.repeat)
        print(
            f"weir.parse {parsing['weir_parse_best_s']:.3f} s, json.loads"
            f" {parsing['json_loads_best_s']:.3f} s:"
            f" {parsing['weir_parse_vs_json_loads']:.1f}x (best times)",
            flush=True,
        )

    report = {
        "benchmark": "processor",
        "contract": "shop_events",
        "records": args.records,
        "invalid_fraction": INVALID_FRACTION,
        "seed": SEED,
        "repeat": args.repeat,
        "input_bytes": {fmt: len(data) for fmt, data in inputs.items()},
        "pinned_to_one_core": pinned,
        "load_average_at_start": load,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "pyarrow": pyarrow.__version__,
        "weir": getattr(weir, "__version__", "unknown") if weir is not None else None,
        "weir_error": weir_error,
        "reference_for_outputs": reference_name,
        "results": [asdict(t) for t in timings],
        "ratios_best_time": ratios,
        "parsing": parsing,
        "disagreements": disagreements,
    }
    out = args.json_out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")
    if disagreements:
        print(f"FAILED: {len(disagreements)} disagreements with {LABELS[reference_name]} (above)")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--records", type=int, default=100_000, help="number of events (default 100000)"
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="timed calls per candidate and format (default 5)"
    )
    parser.add_argument(
        "--json-out",
        type=Path,
        default=REPO / "bench" / "results" / "processor.json",
        help="where to write the results (default bench/results/processor.json)",
    )
    parser.add_argument(
        "--candidates",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        default=None,
        help=f"comma-separated subset of {','.join(CANDIDATE_NAMES)}",
    )
    parser.add_argument("--skip-memory", action="store_true", help="do not measure peak memory")
    parser.add_argument(
        "--all-cores",
        action="store_true",
        help="do not pin to one core (records/s then use every core)",
    )
    parser.add_argument("--memory-of", choices=CANDIDATE_NAMES, help=argparse.SUPPRESS)
    parser.add_argument("--format", choices=FORMATS, default="ndjson", help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--generate-to", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--fresh", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.records < 1:
        parser.error("--records and --repeat must be at least 1")
    if args.candidates:
        unknown = sorted(set(args.candidates) - set(CANDIDATE_NAMES))
        if unknown:
            parser.error(f"unknown candidates: {', '.join(unknown)}")

    if args.generate_to:
        _generate_to(args.generate_to, args.format, args.records)
        return 0
    if args.memory_of:
        if not args.fresh:
            # On Linux a process inherits ru_maxrss from the process it was forked from (the
            # benchmark parent holds all the events and timings), so measure in a grandchild
            # started from this still-small process.
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--fresh",
                "--memory-of",
                args.memory_of,
                "--format",
                args.format,
                "--records",
                str(args.records),
            ]
            if args.input is not None:
                command += ["--input", str(args.input)]
            if args.warm:
                command.append("--warm")
            return subprocess.run(command, check=False).returncode
        if args.input is not None:
            return _print_memory(args.memory_of, args.format, args.input, args.warm)
        # Standalone use: make the input in another process, so that generating it
        # does not raise this process's ru_maxrss high-water mark.
        with tempfile.TemporaryDirectory(prefix="weir-bench-") as tmp:
            path = Path(tmp) / f"shop_events.{args.format}"
            command = [sys.executable, str(Path(__file__).resolve()), "--generate-to", str(path)]
            subprocess.run(
                [*command, "--format", args.format, "--records", str(args.records)], check=True
            )
            return _print_memory(args.memory_of, args.format, path, args.warm)
    return _main_benchmark(args)


if __name__ == "__main__":
    raise SystemExit(main())
