"""Dashboard benchmark: how long each page of the Streamlit dashboard (``streamlit_app/``)
takes to render on a lake with about 1,000,000 fact rows, and the dashboard's queries
through Weir's query path against DuckDB on the same tables, measured in the same run.

    .venv/bin/python bench/dashboard/run.py [--events 1020000] [--state DIR] [--repeat 5] \\
        [--json-out bench/results/dashboard.json]

What it does, with ``WEIR_STATE_DIR`` a private folder (``--state``, default: a new folder
under /tmp; ``WEIR_METASTORE_URI``, ``WEIR_WAREHOUSE``, ``WEIR_CONFIG``, ``WEIR_HOME`` and
``WEIR_ALERT_*`` unset, ``WEIR_LOG=error``):

1. **The lake**, unless ``--state`` already holds one (``marts.fct_events`` and
   ``ops.dq_results`` exist; then it is reused as it is): ``--events`` sample events with
   history (``bench/sample_lake.py``: seed 7, 2 % invalid; 1,000 events span ~3.5 hours,
   so 1M span ~5 months) processed by ``weir.process``, the valid rows appended to
   ``raw.shop_events`` and the rejected ones to ``raw.shop_events_rejected`` (one commit
   each), then ``weir transform`` (dbt build, marts published) and ``weir quality check
   --no-alert`` (``ops.dq_results``) run as commands. So that the Pipeline page has jobs
   and consumer batches to draw, when the metastore holds no job of the last 23 hours, 2,000
   more events (seed 11, 5 % invalid) go the streaming way: four jobs published to a private
   kinesalite and consumed into the lake (``weir.stream.consume``); they land in the raw
   tables after the transform, so the marts do not hold them. How the lake was built is
   kept in ``<state>/bench_dashboard_lake.json`` and reported again when it is reused (the
   Data quality page shows 30 days: on a lake checked longer ago its charts are missing
   and the run fails; run ``weir quality check`` on it, or build afresh).
2. **Renders** (``streamlit.testing.v1.AppTest``, in this process): first one untimed
   render of each page (Python imports: plotly, pandas, the pages), then ``--repeat``
   rounds over the three pages. A cold render: Streamlit's caches cleared, a new
   ``AppTest``, ``at.run()`` (the default page, Pipeline), and for the other pages the
   caches cleared again and ``at.switch_page(page).run()``; only the page's own run is
   timed (wall clock), so nothing it reads is cached, not even the DataFusion session
   (``loaders.engine``). Then a warm rerun of the same ``AppTest`` (``at.run()``, caches
   kept) for information. Wrappers time calls inside each run, so a render splits into
   data (every function of ``streamlit_app/queries.py``, ``LakeEngine()``,
   ``weir.stream.jobs`` / ``batches``, ``weir.lake.snapshots`` / ``tables``), figures
   (``plotly.express``), chart output (``ui.chart``: layout, ``st.plotly_chart``
   serialising the figure) and the rest (the page's pandas, widgets, Streamlit). After the
   rounds, one more cold render of the Analytics page under cProfile (its script thread):
   what the page's own lines call, and the heaviest functions by own time.
3. **Queries side by side**: each function of ``streamlit_app/queries.py`` the pages call,
   with the pages' default filters and with one filter set (one country for the
   analytics queries, the other page's time window for the pipeline and quality ones),
   ``--repeat`` times each through ``queries.LakeEngine()`` (DataFusion over Iceberg) and
   ``queries.DuckDBEngine()`` (``iceberg_scan``): median, min and first seconds, ratio
   weir / DuckDB.

Checked (exit code 1 on any problem): every render raised no exception, showed no error
and drew every chart its page draws on this lake (by title); both engines return the same
rows for every query (sorted; floats to a relative 1e-9; integers DuckDB returns as
decimals compared as numbers). The aim: the Analytics page's cold render ≤ 2 s (median).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import math
import os
import pstats
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_start
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # bench.sample_lake, streamlit_app, tests.support

from bench import sample_lake  # noqa: E402

APP = ROOT / "streamlit_app" / "streamlit_app.py"
#: Each page: its script (relative to the app) and the titles of the charts it draws on
#: this lake (a title ending in "*" is a prefix).
PAGES: dict[str, tuple[str, list[str]]] = {
    "Pipeline": (
        "views/pipeline.py",
        [
            "Events per second",
            "Jobs by status",
            "Freshness: accepted → committed (s)",
            "Consumer lag (s)",
            "Batch durations: read, process, commit (ms)",
            "Rejected share by rule*",
        ],
    ),
    "Data quality": (
        "views/quality.py",
        ["Expectations per *", "raw.shop_events_rejected: violations by field and rule"],
    ),
    "Analytics": (
        "views/analytics.py",
        [
            "Events",
            "Revenue (USD)",
            # One breakdown at a time (the "Break down by" selector; country first).
            "Revenue (USD) by country",
            "Events by country",
            "Top products by revenue (USD)",
            "Funnel (sessions)",
            "Users by plan at the end of each day (SCD2 dimension)",
        ],
    ),
}
DEFAULT_PAGE = "Pipeline"
#: The aim: the Analytics page's first complete render, in seconds.
AIM_SECONDS = 2.0
RENDER_TIMEOUT = 600.0
#: The streamed burst that gives the Pipeline page jobs and batches.
BURST_JOBS, BURST_EVENTS_PER_JOB = 4, 500

#: The calls timed inside each render, by kind: data (every query of
#: ``streamlit_app/queries.py`` and the public ``weir`` calls of the loaders), figures
#: (Plotly Express building a figure) and chart output (``ui.chart``: the layout set and
#: ``st.plotly_chart`` serialising the figure). (module path, attribute) → label.
DATA_CALLS = {
    **{
        ("streamlit_app.queries", name): f"queries.{name}"
        for name in (
            "filter_options",
            "events_by_hour",
            "revenue_by_hour",
            "breakdown",
            "top_products",
            "funnel",
            "user_versions",
            "rejections_by_rule",
            "quality_runs",
            "failing_expectations",
        )
    },
    ("weir.stream", "jobs"): "weir.stream.jobs",
    ("weir.stream", "batches"): "weir.stream.batches",
    ("weir.lake", "snapshots"): "weir.lake.snapshots",
    ("weir.lake", "tables"): "weir.lake.tables",
}
FIGURE_CALLS = {
    ("plotly.express", name): f"plotly.express.{name}"
    for name in ("bar", "line", "area", "scatter", "funnel")
}
CHART_CALLS = {("streamlit_app.ui", "chart"): "ui.chart"}
KINDS = {
    **dict.fromkeys(DATA_CALLS.values(), "data"),
    **dict.fromkeys(FIGURE_CALLS.values(), "figures"),
    **dict.fromkeys(CHART_CALLS.values(), "chart_output"),
    "LakeEngine() (weir.connect)": "data",
}


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def seconds_summary(values: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "runs": [round(v, 3) for v in values],
    }


# -- 1. the lake ----------------------------------------------------------------------------


def weir_command(*args: str) -> float:
    """``weir <args>`` in its own process on the private state folder; its seconds. Exits
    with its output if it fails."""
    clock = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "weir"), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=3600,
    )
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"weir {' '.join(args)} failed ({done.returncode})")
    return time.perf_counter() - clock


def lake_ready() -> bool:
    from weir import lake

    return {"marts.fct_events", "ops.dq_results"} <= set(lake.tables())


def build_lake(events: int) -> dict[str, Any]:
    """The sample events appended to the raw tables, the marts built and published, the
    quality checks run; seconds of each step."""
    import weir

    steps: dict[str, Any] = {}
    clock = time.perf_counter()
    processed = sample_lake.processed_events(events)
    steps["generate_and_process_seconds"] = round(time.perf_counter() - clock, 1)
    progress(
        f"{processed.output.num_rows:,} valid and {processed.rejected.num_rows:,} rejected "
        f"events in {steps['generate_and_process_seconds']} s; appending"
    )
    clock = time.perf_counter()
    weir.append("raw.shop_events", processed.output)
    weir.append("raw.shop_events_rejected", processed.rejected)
    steps["append_seconds"] = round(time.perf_counter() - clock, 1)
    del processed
    progress("weir transform")
    steps["transform_seconds"] = round(weir_command("transform"), 1)
    progress(f"weir transform: {steps['transform_seconds']} s; weir quality check --no-alert")
    steps["quality_check_seconds"] = round(weir_command("quality", "check", "--no-alert"), 1)
    progress(f"weir quality check: {steps['quality_check_seconds']} s")
    return steps


def stream_burst() -> dict[str, Any] | None:
    """Four jobs of sample events through a private kinesalite and the consumer, unless the
    metastore already holds a job of the last 23 hours (the Pipeline page shows 24)."""
    import weir
    from tests.support.servers import kinesis_server
    from tests.support.stream_helpers import RunningConsumer, wait_final
    from weir import samples

    since = int((time.time() - 23 * 3600) * 1000)
    if weir.stream.jobs(since_ms=since, limit=1).num_rows:
        return None
    clock = time.perf_counter()
    names = ("WEIR_KINESIS_ENDPOINT", "WEIR_KINESIS_STREAM_PREFIX", "WEIR_KINESIS_SHARDS")
    saved = {name: os.environ.get(name) for name in names}
    events = samples.generate_shop_events(
        BURST_JOBS * BURST_EVENTS_PER_JOB, invalid_fraction=0.05, seed=11
    )
    try:
        with kinesis_server() as endpoint:
            os.environ["WEIR_KINESIS_ENDPOINT"] = endpoint
            os.environ["WEIR_KINESIS_STREAM_PREFIX"] = f"b{uuid.uuid4().hex[:10]}-"
            os.environ["WEIR_KINESIS_SHARDS"] = "2"
            with RunningConsumer():
                receipts = [
                    weir.publish(
                        "shop_events",
                        samples.to_ndjson(events[i : i + BURST_EVENTS_PER_JOB]),
                    )
                    for i in range(0, len(events), BURST_EVENTS_PER_JOB)
                ]
                jobs = wait_final([r.job_id for r in receipts], timeout=120)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return {
        "jobs": len(jobs),
        "events": len(events),
        "statuses": sorted({j.status for j in jobs.values() if j is not None}),
        "seconds": round(time.perf_counter() - clock, 1),
    }


def lake_facts() -> dict[str, Any]:
    """Rows and data files of every table the dashboard reads, and the facts' time span."""
    import weir
    from weir import lake

    ctx = weir.connect(read_only=True)
    facts: dict[str, Any] = {}
    for table in sorted(lake.tables()):
        if table.partition(".")[0] not in ("raw", "marts", "ops"):
            continue
        rows = ctx.sql(f"select count(*) as n from lake.{table}").to_pylist()[0]["n"]
        facts[table] = {"rows": rows, "data_files": lake.files(table).num_rows}
    span = ctx.sql(
        "select min(event_time) as first, max(event_time) as last from lake.marts.fct_events"
    ).to_pylist()[0]
    facts["fct_events_span"] = {k: v.isoformat() for k, v in span.items()}
    return facts


# -- 2. renders -----------------------------------------------------------------------------


class RenderClock:
    """Wraps the calls of :data:`DATA_CALLS`, :data:`FIGURE_CALLS`, :data:`CHART_CALLS` and
    ``queries.LakeEngine.__init__`` while active: each call's seconds, by label, for the
    current render (calls nested in another timed call, such as the ``weir.lake.tables()``
    each query makes, are kept apart so each kind's total counts them once)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, int]] = []
        self.depth = 0

    def _wrap(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.depth += 1
            clock = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.depth -= 1
                self.calls.append((label, time.perf_counter() - clock, self.depth))

        return timed

    @contextmanager
    def active(self) -> Iterator[RenderClock]:
        import importlib

        from streamlit_app import queries

        originals: list[tuple[Any, str, Any]] = []
        targets = [
            (importlib.import_module(module), name, label)
            for (module, name), label in {**DATA_CALLS, **FIGURE_CALLS, **CHART_CALLS}.items()
        ]
        targets.append((queries.LakeEngine, "__init__", "LakeEngine() (weir.connect)"))
        for owner, name, label in targets:
            original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
            originals.append((owner, name, original))
            setattr(owner, name, self._wrap(label, original))
        try:
            yield self
        finally:
            for owner, name, original in originals:
                setattr(owner, name, original)

    def take(self) -> dict[str, Any]:
        """The current render's seconds of each kind (top-level calls) and each label's
        calls and seconds; then starts afresh."""
        by_label: dict[str, dict[str, Any]] = {}
        kinds = {kind: 0.0 for kind in ("data", "figures", "chart_output")}
        for label, seconds, depth in self.calls:
            entry = by_label.setdefault(label, {"calls": 0, "seconds": 0.0, "nested": depth > 0})
            entry["calls"] += 1
            entry["seconds"] += seconds
            if depth == 0:
                kinds[KINDS[label]] += seconds
        self.calls = []
        return {"kinds": kinds, "calls": by_label}


def fresh_caches() -> None:
    import streamlit as st
    from streamlit import logger

    logger.set_log_level("error")  # not the bare-mode warnings of each clear
    st.cache_data.clear()
    st.cache_resource.clear()


def _decode_titles(at: Any) -> list[str]:
    return [
        json.loads(element.proto.spec)["layout"].get("title", {}).get("text", "")
        for element in at.get("plotly_chart")
    ]


def render_problems(page: str, at: Any) -> list[str]:
    """What is wrong with a render: exceptions, errors, charts missing."""
    problems = [f"{page}: exception {e.value}" for e in at.exception]
    problems += [f"{page}: error shown: {e.value}" for e in at.error]
    titles = _decode_titles(at)
    for wanted in PAGES[page][1]:
        found = (
            any(t.startswith(wanted[:-1]) for t in titles)
            if wanted.endswith("*")
            else wanted in titles
        )
        if not found:
            problems.append(f"{page}: chart {wanted!r} missing (drawn: {titles})")
    return problems


def cold_render(page: str, on_start: Callable[[], object] = lambda: None) -> tuple[Any, float]:
    """A new AppTest with nothing cached, on ``page``; the seconds of the page's run
    (``on_start`` is called just before it starts)."""
    from streamlit.testing.v1 import AppTest

    fresh_caches()
    at = AppTest.from_file(str(APP), default_timeout=RENDER_TIMEOUT)
    if page != DEFAULT_PAGE:
        at.run()
        fresh_caches()
        at.switch_page(PAGES[page][0])
    on_start()
    clock = time.perf_counter()
    at.run()
    return at, time.perf_counter() - clock


def timed_rerun(at: Any) -> float:
    clock = time.perf_counter()
    at.run()
    return time.perf_counter() - clock


@contextmanager
def profiled_script_thread(profiler: cProfile.Profile) -> Iterator[None]:
    """cProfile on the thread AppTest runs the app script in (not this one)."""
    from streamlit.testing.v1.local_script_runner import LocalScriptRunner

    original = LocalScriptRunner._run_script_thread

    def run(self: Any) -> None:
        profiler.enable()
        try:
            original(self)
        finally:
            profiler.disable()

    LocalScriptRunner._run_script_thread = run
    try:
        yield
    finally:
        LocalScriptRunner._run_script_thread = original


def profile_page(page: str, top: int = 25) -> dict[str, Any]:
    """One cold render of ``page`` under cProfile; the functions the page script calls
    directly (time spent in each, from the page's own lines) and the heaviest functions
    overall by own time. cProfile slows Python-heavy code more than native code."""
    from streamlit.testing.v1 import AppTest

    fresh_caches()
    at = AppTest.from_file(str(APP), default_timeout=RENDER_TIMEOUT)
    if page != DEFAULT_PAGE:
        at.run()
        fresh_caches()
        at.switch_page(PAGES[page][0])
    profiler = cProfile.Profile()
    clock = time.perf_counter()
    with profiled_script_thread(profiler):
        at.run()
    seconds = time.perf_counter() - clock
    stats = pstats.Stats(profiler)
    script = PAGES[page][0].split("/")[-1]

    def where(key: tuple[str, int, str]) -> str:
        file, line, name = key
        parts = Path(file).parts
        short = "/".join(parts[-3:]) if len(parts) > 2 else file
        return f"{name} ({short}:{line})"

    from_page: dict[str, float] = {}
    for key, (_, _, _, _, callers) in stats.stats.items():  # type: ignore[attr-defined]
        for caller, (_, _, _, cumulative) in callers.items():
            if caller[0].endswith(script) and caller[2] == "<module>":
                from_page[where(key)] = from_page.get(where(key), 0.0) + cumulative
    own = sorted(stats.stats.items(), key=lambda item: -item[1][2])  # type: ignore[attr-defined]
    return {
        "seconds_under_profile": round(seconds, 2),
        "problems": render_problems(page, at),
        "called_from_the_page": {
            k: round(v, 3) for k, v in sorted(from_page.items(), key=lambda i: -i[1])[:top]
        },
        "own_time": {where(k): round(v[2], 3) for k, v in own[:top]},
    }


def render_pages(repeat: int) -> tuple[dict[str, Any], list[str]]:
    problems: list[str] = []
    first: dict[str, float] = {}
    for page in PAGES:  # Python imports (plotly, pandas, the page modules), once
        at, seconds = cold_render(page)
        first[page] = round(seconds, 3)
        problems += render_problems(page, at)
        progress(f"first render in this process, {page}: {seconds:.2f} s")
    cold: dict[str, list[float]] = {page: [] for page in PAGES}
    warm: dict[str, list[float]] = {page: [] for page in PAGES}
    split: dict[str, list[dict[str, Any]]] = {page: [] for page in PAGES}
    clock = RenderClock()
    with clock.active():
        for number in range(1, repeat + 1):
            for page in PAGES:
                at, seconds = cold_render(page, on_start=clock.take)
                parts = clock.take()
                problems += render_problems(page, at)
                rerun = timed_rerun(at)
                clock.take()
                problems += render_problems(page, at)
                cold[page].append(seconds)
                warm[page].append(rerun)
                split[page].append(parts)
                kinds = ", ".join(f"{k} {v:.2f} s" for k, v in parts["kinds"].items())
                progress(
                    f"round {number}, {page}: cold {seconds:.2f} s ({kinds}), "
                    f"warm rerun {rerun:.2f} s"
                )
    pages: dict[str, Any] = {}
    for page in PAGES:
        runs = split[page]
        kinds = {
            kind: [r["kinds"][kind] for r in runs] for kind in ("data", "figures", "chart_output")
        }
        kinds["other"] = [
            total - sum(r["kinds"].values()) for total, r in zip(cold[page], runs, strict=True)
        ]
        labels = sorted({label for r in runs for label in r["calls"]})
        pages[page] = {
            "cold": seconds_summary(cold[page]),
            "warm_rerun": seconds_summary(warm[page]),
            "cold_split_seconds": {kind: seconds_summary(v) for kind, v in kinds.items()},
            "cold_calls_median": {
                label: {
                    "kind": KINDS[label],
                    "calls": runs[0]["calls"].get(label, {}).get("calls", 0),
                    "nested": runs[0]["calls"].get(label, {}).get("nested", False),
                    "seconds": round(
                        statistics.median(
                            r["calls"].get(label, {}).get("seconds", 0.0) for r in runs
                        ),
                        3,
                    ),
                }
                for label in labels
            },
            "charts": len(PAGES[page][1]),
        }
    return {"first_render_in_process": first, "pages": pages}, problems


# -- 3. the queries through both engines ----------------------------------------------------


def _days(first: datetime, last: datetime) -> tuple[datetime, datetime]:
    """The Analytics page's default window in UTC: the first event's day to the end of the
    last event's day."""
    start = datetime.combine(first.astimezone(UTC).date(), day_start(), UTC)
    end = datetime.combine(last.astimezone(UTC).date() + timedelta(days=1), day_start(), UTC)
    return start, end


def query_cases(options: dict[str, Any]) -> list[tuple[str, str, Callable[[Any], Any]]]:
    """(query, filters, call) for every query the pages run: the default filters, and one
    set (a country; the other page's time window)."""
    from dataclasses import replace

    import pyarrow as pa

    from streamlit_app import queries

    start, end = _days(options["first"], options["last"])
    window = queries.Filters(start=start, end=end)
    country = "DE" if "DE" in options["countries"] else options["countries"][0]
    one_country = replace(window, countries=(country,))
    now = datetime.now(UTC)
    last_day = queries.Filters(start=now - timedelta(days=1), end=now + timedelta(seconds=1))
    last_30_days = queries.Filters(start=now - timedelta(days=30), end=now)
    cases: list[tuple[str, str, Callable[[Any], Any]]] = [
        # A dict of lists and bounds, as a one-row table to compare.
        ("filter_options", "none", lambda e: pa.Table.from_pylist([queries.filter_options(e)]))
    ]
    for label, filters in (("default", window), (f"country={country}", one_country)):
        for name in ("events_by_hour", "revenue_by_hour", "top_products", "funnel"):
            function = getattr(queries, name)
            cases.append((name, label, lambda e, f=function, v=filters: f(e, v)))
        for dimension in queries.DIMENSIONS:
            cases.append(
                (
                    f"breakdown({dimension})",
                    label,
                    lambda e, d=dimension, v=filters: queries.breakdown(e, v, d),
                )
            )
        cases.append(("user_versions", label, lambda e, v=filters: queries.user_versions(e, v)))
    for label, filters in (("last 24 hours", last_day), ("last 30 days", last_30_days)):
        cases.append(
            (
                "rejections_by_rule",
                label,
                lambda e, v=filters: queries.rejections_by_rule(e, v, "shop_events"),
            )
        )
    for label, filters in (("last 30 days", last_30_days), ("last 24 hours", last_day)):
        cases.append(("quality_runs", label, lambda e, v=filters: queries.quality_runs(e, v)))
        cases.append(
            (
                "failing_expectations",
                label,
                lambda e, v=filters: queries.failing_expectations(e, v),
            )
        )
    return cases


def _plain(value: Any) -> Any:
    """A value both engines' answers can be compared by: instants as microseconds since the
    epoch, integral decimals as int, other decimals as float, lists and structs as tuples."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return ("instant", (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1))
    if isinstance(value, date):
        return ("date", value.toordinal())
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _plain(v)) for k, v in value.items()))
    return value


def _sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    def key(value: Any) -> tuple[Any, ...]:
        if value is None:
            return (0,)
        if isinstance(value, bool):
            return (1, int(value))
        if isinstance(value, int | float):
            return (1, round(float(value), 6))
        if isinstance(value, str):
            return (2, value)
        return (3, tuple(key(v) for v in value) if isinstance(value, tuple) else repr(value))

    return tuple(key(v) for v in row)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def differences(weir_answer: Any, duckdb_answer: Any) -> list[str]:
    """How two answers differ (column names, rows), after sorting; empty when they agree."""
    if weir_answer.column_names != duckdb_answer.column_names:
        return [f"columns {weir_answer.column_names} vs {duckdb_answer.column_names}"]
    rows = [
        sorted((tuple(_plain(v) for v in r.values()) for r in t.to_pylist()), key=_sort_key)
        for t in (weir_answer, duckdb_answer)
    ]
    if len(rows[0]) != len(rows[1]):
        return [f"{len(rows[0])} rows vs {len(rows[1])}"]
    found = [
        f"row {i}: {a} vs {b}"
        for i, (a, b) in enumerate(zip(*rows, strict=True))
        if not _close(a, b)
    ]
    return found[:3] + ([f"... {len(found) - 3} more rows"] if len(found) > 3 else [])


def compare_engines(repeat: int) -> tuple[dict[str, Any], list[str]]:
    from streamlit_app import queries

    setup: dict[str, float] = {}
    clock = time.perf_counter()
    lake_engine = queries.LakeEngine()
    setup["LakeEngine() (weir.connect)"] = round(time.perf_counter() - clock, 3)
    clock = time.perf_counter()
    duckdb_engine = queries.DuckDBEngine()
    setup["DuckDBEngine() (iceberg views)"] = round(time.perf_counter() - clock, 3)
    options = queries.filter_options(lake_engine)
    engines = {"weir": lake_engine, "duckdb": duckdb_engine}
    results: list[dict[str, Any]] = []
    problems: list[str] = []
    for name, label, call in query_cases(options):
        entry: dict[str, Any] = {"query": name, "filters": label}
        answers: dict[str, Any] = {}
        for engine_name, engine in engines.items():
            times = []
            for _ in range(repeat):
                clock = time.perf_counter()
                answer = call(engine)
                times.append(time.perf_counter() - clock)
                answers.setdefault(engine_name, answer)
            entry[engine_name] = {
                "median": round(statistics.median(times), 4),
                "min": round(min(times), 4),
                "first": round(times[0], 4),
            }
        entry["ratio_weir_to_duckdb"] = round(
            entry["weir"]["median"] / max(entry["duckdb"]["median"], 1e-6), 2
        )
        entry["rows"] = answers["weir"].num_rows
        found = differences(answers["weir"], answers["duckdb"])
        entry["same_rows"] = not found
        if found:
            problems.append(f"{name} [{label}]: weir and DuckDB differ: {found}")
        types = {
            f.name: f"{f.type} vs {answers['duckdb'].schema.field(f.name).type}"
            for f in answers["weir"].schema
            if f.name in answers["duckdb"].column_names
            and f.type != answers["duckdb"].schema.field(f.name).type
        }
        if types:
            entry["types_differ"] = types
        results.append(entry)
        progress(
            f"{name} [{label}]: weir {entry['weir']['median']:.3f} s, "
            f"duckdb {entry['duckdb']['median']:.3f} s, ratio {entry['ratio_weir_to_duckdb']}, "
            f"{entry['rows']} rows, {'same' if not found else 'DIFFERENT'}"
        )
    analytics = [r for r in results if r["filters"] == "default" or r["query"] == "filter_options"]
    totals = {
        "analytics_page_queries_default_filters": {
            engine: round(sum(r[engine]["median"] for r in analytics), 3) for engine in engines
        }
    }
    return {"engine_setup_seconds": setup, "queries": results, "totals": totals}, problems


# -- main -----------------------------------------------------------------------------------


def app_fingerprint() -> str:
    """A short hash of the dashboard's sources: which version of the app was measured."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "streamlit_app").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_020_000)
    parser.add_argument(
        "--state", type=Path, help="state folder (reused if it already holds the lake)"
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    load_average = [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    app_sources = app_fingerprint()

    state = sample_lake.private_state(
        "weir-bench-dashboard-", args.state.resolve() if args.state else None
    )
    progress(f"state in {state}")
    # How the lake in the state folder was built, kept there for runs that reuse it.
    build_record = state / "bench_dashboard_lake.json"
    if lake_ready():
        progress("the state folder holds the lake already: reused")
        build: dict[str, Any] = {"reused": True}
        if build_record.is_file():
            build.update(json.loads(build_record.read_text()))
    else:
        build = {"events": args.events, **build_lake(args.events)}
        build_record.write_text(json.dumps(build, indent=2) + "\n")
        build["reused"] = False
    burst = stream_burst()
    progress(f"streamed burst: {burst or 'not needed (recent jobs)'}")
    facts = lake_facts()
    progress(f"marts.fct_events: {facts['marts.fct_events']}")

    renders, problems = render_pages(args.repeat)
    profile: dict[str, Any] = {}
    if not args.skip_profile:
        profile = profile_page("Analytics")
        problems += profile["problems"]
        progress(f"profiled Analytics render: {profile['seconds_under_profile']} s")
    engines, query_problems = compare_engines(args.repeat)
    problems += query_problems

    analytics = renders["pages"]["Analytics"]["cold"]["median"]
    report = {
        "state": str(state),
        "lake_build": build,
        "streamed_burst": burst,
        "lake": facts,
        "repeat": args.repeat,
        **renders,
        "analytics_aim_seconds": AIM_SECONDS,
        "analytics_cold_median_seconds": analytics,
        "analytics_aim_met": analytics <= AIM_SECONDS,
        "profile_analytics": profile,
        **engines,
        "checks_passed": not problems,
        "problems": problems,
        "streamlit_app_sources": app_sources,
        "streamlit_app_changed_during_run": app_fingerprint() != app_sources,
        "load_average_at_start": load_average,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2, default=str))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
