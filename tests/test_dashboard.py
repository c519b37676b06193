"""The dashboard (``streamlit_app/``) under Streamlit's ``AppTest``: each page renders without
an exception on a lake filled the real way (events published to a local Kinesis-API server,
consumed into the lake, ``weir transform`` and ``weir quality check`` run as commands) and
on an empty lake (an empty state naming what to run, no traceback); every filter changes
the data behind the charts (read from the figures the page sends); the same event shows
different clock times in two timezones; a filter value with quotes and SQL in it matches no
rows and raises nothing. The lake: ``tests/support/dashboard.py``; the browser test:
``test_dashboard_browser.py``."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import weir
from tests.support.dashboard import JOBS

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app" / "streamlit_app.py")
PIPELINE, QUALITY, ANALYTICS = "views/pipeline.py", "views/quality.py", "views/analytics.py"
HOSTILE = "x' OR '1'='1'; DROP TABLE marts.fct_events; --"


@pytest.fixture
def empty_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WEIR_STATE_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def on_demo_lake(dashboard_lake: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WEIR_STATE_DIR", str(dashboard_lake))
    return dashboard_lake


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    """Streamlit's caches live as long as the process: each test starts without them."""
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


def open_page(page: str, timezone: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    if timezone:
        at.session_state["timezone"] = timezone
    at.run()
    if page != PIPELINE:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _decode(value: Any) -> Any:
    """Plotly sends numeric arrays as ``{"dtype", "bdata"}`` (base64); plain lists as is."""
    if isinstance(value, dict) and "bdata" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        return array.reshape(value["shape"]).tolist() if "shape" in value else array.tolist()
    return value


def figures(at: AppTest) -> dict[str, list[dict[str, Any]]]:
    """Every Plotly chart on the page: its title → its traces' x and y data."""
    found: dict[str, list[dict[str, Any]]] = {}
    for element in at.get("plotly_chart"):
        spec = json.loads(element.proto.spec)
        title = spec["layout"].get("title", {}).get("text", "")
        found[title] = [
            {"name": t.get("name"), "x": _decode(t.get("x")), "y": _decode(t.get("y"))}
            for t in spec["data"]
        ]
    return found


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("info", "caption", "markdown", "success") for e in at.get(kind)]
    return "\n".join(str(p) for p in parts)


# -- every page, on demo data and on an empty lake -----------------------------------------


@pytest.mark.parametrize("page", [PIPELINE, QUALITY, ANALYTICS])
def test_each_page_renders_on_demo_data(on_demo_lake: Path, page: str) -> None:
    at = open_page(page)
    assert figures(at), f"{page} drew no chart on the demo lake"
    assert not at.get("exception")


def test_pipeline_page_shows_the_jobs_batches_and_snapshots(on_demo_lake: Path) -> None:
    at = open_page(PIPELINE)
    charts = figures(at)
    statuses = charts["Jobs by status"]
    counted = {trace["name"]: sum(trace["y"]) for trace in statuses}
    assert sum(counted.values()) == JOBS and set(counted) <= set(weir.stream.FINAL_STATES)
    assert "Events per second" in charts and "Consumer lag (s)" in charts
    assert "Batch durations: read, process, commit (ms)" in charts
    assert any(title.startswith("Rejected share by rule") for title in charts)
    snapshots = at.dataframe[0].value
    assert len(snapshots) >= 1 and int(snapshots["total_records"].iloc[0]) > 1_800


@pytest.mark.parametrize("page", [PIPELINE, QUALITY, ANALYTICS])
def test_each_page_renders_on_an_empty_lake(empty_lake: Path, page: str) -> None:
    at = open_page(page)
    shown = texts(at)
    wanted = {PIPELINE: "weir up", QUALITY: "weir quality check", ANALYTICS: "weir transform"}
    assert wanted[page] in shown, shown
    assert not weir.lake.tables(), "the dashboard created tables"


# -- filters --------------------------------------------------------------------------------


#: Each multiselect filter and the value a test picks (``None``: the first option offered).
FILTERS = {
    "filter_countries": None,
    "filter_event_types": "purchase",
    "filter_categories": None,
    "filter_plans": "enterprise",
}


@pytest.mark.parametrize("key", list(FILTERS))
def test_each_filter_changes_the_charts_data(on_demo_lake: Path, key: str) -> None:
    at = open_page(ANALYTICS)
    before = figures(at)
    options = at.multiselect(key=key).options
    pick = FILTERS[key] or options[0]
    assert pick in options
    at.multiselect(key=key).set_value([pick]).run()
    assert not at.exception
    after = figures(at)
    changed = [t for t in before if t in after and before[t] != after[t]]
    assert "Events" in after and before["Events"] != after["Events"], key
    assert len(changed) >= 5, f"{key} changed only {changed}"


def test_the_date_range_changes_the_charts_data(on_demo_lake: Path) -> None:
    # The demo's events span 16:28-23:46 UTC of one day: two local days in Asia/Kolkata.
    at = open_page(ANALYTICS, timezone="Asia/Kolkata")
    first, last = at.date_input(key="filter_dates").value
    assert last == first + timedelta(days=1)
    before = figures(at)
    at.date_input(key="filter_dates").set_value((last, last)).run()
    after = figures(at)
    assert not at.exception
    for title in ("Events", "Revenue (USD)", "Revenue (USD) by country", "Funnel (sessions)"):
        assert before[title] != after[title], title
    events = lambda f: sum(sum(t["y"]) for t in f["Events"])  # noqa: E731
    assert 0 < events(after) < events(before)
    local_days = {x[:10] for t in after["Events"] for x in t["x"]}
    assert local_days == {last.isoformat()}


def test_a_hostile_filter_value_matches_nothing_and_breaks_nothing(on_demo_lake: Path) -> None:
    from streamlit_app import queries

    engine = queries.LakeEngine()
    hostile = queries.Filters(countries=(HOSTILE,), categories=(HOSTILE,))
    assert queries.events_by_hour(engine, hostile).num_rows == 0
    assert queries.breakdown(engine, hostile, "plan").num_rows == 0
    assert queries.funnel(engine, hostile).column("sessions").to_pylist() == [0, 0, 0]
    assert queries.user_versions(engine, queries.Filters(plans=(HOSTILE,))).num_rows == 0
    # ... and through the page, typed into the country filter (it accepts new values).
    at = open_page(ANALYTICS)
    at.multiselect(key="filter_countries").set_value([HOSTILE]).run()
    assert not at.exception
    assert "Events" not in figures(at)
    assert "No events in the selected filters." in texts(at)
    assert queries.events_by_hour(engine, queries.Filters()).num_rows > 0, "data was lost"


# -- time zones -----------------------------------------------------------------------------


def test_the_same_event_shows_different_clock_times_in_two_timezones(on_demo_lake: Path) -> None:
    def committed(zone: str) -> pd.Series:
        at = open_page(PIPELINE, timezone=zone)
        frame = at.dataframe[0].value
        column = next(c for c in frame.columns if c.startswith("committed"))
        assert column == f"committed ({zone})"
        assert f"Times are shown in **{zone}**" in texts(at)
        return pd.to_datetime(frame[column])

    tokyo, new_york = committed("Asia/Tokyo"), committed("America/New_York")
    difference = (tokyo - new_york).dt.total_seconds() / 3600
    assert set(difference) <= {13.0, 14.0} and len(difference) > 0  # the same snapshots


def test_the_analytics_days_follow_the_timezone(on_demo_lake: Path) -> None:
    def hours(zone: str) -> list[str]:
        at = open_page(ANALYTICS, timezone=zone)
        first, _ = at.date_input(key="filter_dates").value
        at.date_input(key="filter_dates").set_value((first, first + timedelta(days=1))).run()
        return [x for t in figures(at)["Events"] for x in t["x"]]

    utc, kolkata = hours("UTC"), hours("Asia/Kolkata")
    assert utc and kolkata and utc != kolkata
    minutes = {pd.Timestamp(x).minute for x in kolkata}
    assert minutes == {30}, "hour buckets in Asia/Kolkata are at :30 local time"


def test_the_jobs_listing(on_demo_lake: Path) -> None:
    jobs = weir.stream.jobs()
    created = jobs.column("created_at_ms").to_pylist()
    assert jobs.num_rows == JOBS and created == sorted(created, reverse=True)
    assert set(jobs.column("status").to_pylist()) <= set(weir.stream.FINAL_STATES)
    assert sum(jobs.column("received").to_pylist()) == JOBS * 500
    assert (
        weir.stream.jobs(limit=2).column("job_id").to_pylist()
        == jobs.column("job_id").to_pylist()[:2]
    )
    assert weir.stream.jobs(since_ms=created[1]).num_rows == 2
    assert weir.stream.jobs("no_such_dataset").num_rows == 0
    assert weir.stream.jobs("shop_events").num_rows == JOBS


def test_the_quality_dates_filter_the_results(on_demo_lake: Path) -> None:
    at = open_page(QUALITY)
    assert "Expectations per quality run" in figures(at)
    latest = at.dataframe[0].value
    assert {"raw.shop_events", "marts.fct_events"} <= set(latest["table_name"])
    at.date_input(key="quality_dates").set_value((date(2020, 1, 1), date(2020, 1, 31))).run()
    assert not at.exception
    assert "Expectations per quality run" not in figures(at)
    assert "No quality runs in the selected filters." in texts(at)
