"""Cached loaders: what the pages call to get data, as pandas DataFrames with UTC times.

Each wraps one query of :mod:`streamlit_app.queries` (or a public ``weir`` call for the jobs
table, batch metrics and snapshots) in ``st.cache_data`` with a short time to live, keyed by
the filters, so a rerun that changes no filter reads nothing again and new commits show up
within seconds. A missing table raises :class:`streamlit_app.queries.NotBuilt` (never
cached), which the pages turn into an empty state.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import streamlit as st

import weir
from streamlit_app import queries
from streamlit_app.queries import Filters

#: Seconds a loaded result is reused: pipeline metrics refresh fast, marts and quality
#: results change when a transform or check runs.
LIVE_TTL = 2.0
MODEL_TTL = 30.0


@st.cache_resource(show_spinner=False)
def engine() -> queries.LakeEngine:
    """One DataFusion session over the lake per dashboard process (each query still reads
    the newest snapshot)."""
    return queries.LakeEngine()


def _frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(types_mapper=None)


def _millis(moment: datetime | None, default: int) -> int:
    return default if moment is None else int(moment.timestamp() * 1000)


def datasets() -> list[str]:
    return weir.project.datasets()


@st.cache_data(ttl=MODEL_TTL, show_spinner=False)
def filter_options() -> dict:
    return queries.filter_options(engine())


@st.cache_data(ttl=MODEL_TTL, show_spinner=False)
def events_by_hour(filters: Filters) -> pd.DataFrame:
    return _frame(queries.events_by_hour(engine(), filters))


@st.cache_data(ttl=MODEL_TTL, show_spinner=False)
def revenue_by_hour(filters: Filters) -> pd.DataFrame:
    return _frame(queries.revenue_by_hour(engine(), filters))


@st.cache_data(ttl=MODEL_TTL, show_spinner=False)
def breakdown(filters: Filters, dimension: str) -> pd.DataFrame:
    return _frame(queries.breakdown(engine(), filters, dimension))


@st.cache_data(ttl=MODEL_TTL, show_spinner=False)
def top_products(filters: Filters) -> pd.DataFrame:
    return _frame(queries.top_products(engine(), filters))


@st.cache_data(ttl=MODEL_TTL, show_spinner=False)
def funnel(filters: Filters) -> pd.DataFrame:
    return _frame(queries.funnel(engine(), filters))


@st.cache_data(ttl=MODEL_TTL, show_spinner=False)
def user_versions(filters: Filters) -> pd.DataFrame:
    return _frame(queries.user_versions(engine(), filters))


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def rejections_by_rule(filters: Filters, dataset: str) -> pd.DataFrame:
    return _frame(queries.rejections_by_rule(engine(), filters, dataset))


@st.cache_data(ttl=MODEL_TTL, show_spinner=False)
def quality_runs(filters: Filters) -> pd.DataFrame:
    return _frame(queries.quality_runs(engine(), filters))


@st.cache_data(ttl=MODEL_TTL, show_spinner=False)
def failing_expectations(filters: Filters) -> pd.DataFrame:
    return _frame(queries.failing_expectations(engine(), filters))


def _in_window(frame: pd.DataFrame, column: str, filters: Filters) -> pd.DataFrame:
    if frame.empty:
        return frame
    keep = pd.Series(True, index=frame.index)
    if filters.start is not None:
        keep &= frame[column] >= pd.Timestamp(filters.start)
    if filters.end is not None:
        keep &= frame[column] < pd.Timestamp(filters.end)
    return frame[keep]


def _times(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    for column in columns:
        frame[column.removesuffix("_ms")] = pd.to_datetime(frame[column], unit="ms", utc=True)
    return frame


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def jobs(filters: Filters) -> pd.DataFrame:
    """The jobs table in the time window (by creation), newest first, with ``created``,
    ``updated`` (UTC) and ``freshness_s`` (accepted → final, for jobs that finished)."""
    since = _millis(filters.start, 0)
    frame = weir.stream.jobs(since_ms=since, limit=100_000).to_pandas()
    if frame.empty:
        return frame
    frame = _times(frame, "created_at_ms", "updated_at_ms")
    frame["freshness_s"] = (frame["updated_at_ms"] - frame["created_at_ms"]).where(
        frame["final"]
    ) / 1000.0
    return _in_window(frame, "created_at", filters)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def batches(filters: Filters) -> pd.DataFrame:
    """Consumer batch metrics in the time window (by start), oldest first, ``started`` in
    UTC."""
    frame = weir.stream.batches(since_ms=_millis(filters.start, 0)).to_pandas()
    if frame.empty:
        return frame
    frame = _times(frame, "started_at_ms")
    return _in_window(frame, "started_at", filters)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def snapshots(table: str, last: int = 10) -> pd.DataFrame:
    """The newest ``last`` snapshots of ``table``: snapshot_id, committed (UTC), operation,
    added files and records, total records."""
    if table not in weir.lake.tables():
        raise queries.NotBuilt(table)
    frame = weir.lake.snapshots(table).to_pandas()
    return frame.tail(last).iloc[::-1].reset_index(drop=True)


def now() -> datetime:
    return datetime.fromtimestamp(time.time(), UTC)


def clear() -> None:
    """Forget every cached result (the Refresh button)."""
    st.cache_data.clear()
