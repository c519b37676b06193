"""Pipeline page: is data flowing, and how fresh is it? Events per second, freshness (a job's
acknowledgement to its commit) and consumer lag, jobs by status, batch durations (read,
process, commit), the share of records rejected by each rule, and the newest snapshots of
each raw table. From the jobs table and batch metrics (``weir.stream``), snapshot metadata
(``weir.lake.snapshots``) and ``raw.<dataset>_rejected``; reloads on the interval picked in
the sidebar (``st.fragment(run_every=...)``)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import plotly.express as px
import streamlit as st

from streamlit_app import loaders, ui
from streamlit_app.queries import Filters

WINDOWS = {
    "last 15 minutes": timedelta(minutes=15),
    "last hour": timedelta(hours=1),
    "last 24 hours": timedelta(days=1),
    "last 7 days": timedelta(days=7),
    "last 30 days": timedelta(days=30),
}

st.title("Pipeline")
st.caption("Ingestion as it happens: jobs, consumer batches and the lake's snapshots.")

window_name = st.sidebar.selectbox("Time window", list(WINDOWS), index=2, key="window")
dataset = st.sidebar.selectbox("Dataset", loaders.datasets(), key="dataset")
every = ui.refresh_picker()


def _bucket(window: timedelta) -> str:
    """A bucket giving about a hundred points over the window."""
    seconds = max(10, int(window.total_seconds() / 100))
    return f"{seconds}s"


@st.fragment(run_every=every)
def live() -> None:
    now = loaders.now()
    window = WINDOWS[window_name]
    filters = Filters(start=now - window, end=now + timedelta(seconds=1))
    batches = loaders.batches(filters)
    batches = batches[batches["dataset"] == dataset] if not batches.empty else batches
    jobs = loaders.jobs(filters)
    jobs = jobs[jobs["dataset"] == dataset] if not jobs.empty else jobs
    st.caption(f"Updated {now.astimezone(ui.zone()):%Y-%m-%d %H:%M:%S %Z}.")

    kpi = st.columns(5)
    events = int(batches["events"].sum()) if not batches.empty else 0
    kpi[0].metric("Events stored", f"{events:,}", help=f"Consumer batches in the {window_name}.")
    recent = (
        batches[batches["started_at"] >= pd.Timestamp(now - timedelta(minutes=1))]
        if (not batches.empty)
        else batches
    )
    kpi[1].metric(
        "Events/s (last minute)", f"{recent['events'].sum() / 60:,.1f}" if len(recent) else "0"
    )
    finished = jobs.dropna(subset=["freshness_s"]) if not jobs.empty else jobs
    kpi[2].metric(
        "Freshness p50",
        f"{finished['freshness_s'].median():.1f} s" if len(finished) else "-",
        help="Job accepted → committed to the lake (median).",
    )
    kpi[3].metric(
        "Consumer lag",
        f"{batches['lag_ms'].iloc[-1] / 1000:.1f} s" if len(batches) else "-",
        help="Behind the stream's newest record, at the last batch.",
    )
    pending = int((~jobs["final"]).sum()) if not jobs.empty else 0
    kpi[4].metric("Jobs in flight", f"{pending:,}")

    if batches.empty and jobs.empty:
        st.info(
            f"No jobs or consumer batches for **{dataset}** in the {window_name}. Start the "
            "stack with `weir up` and send events (`make demo`, or POST to the ingest API).",
            icon=":material/info:",
        )
    left, right = st.columns(2)
    with left:
        if not batches.empty:
            local = ui.local(batches, "started_at")
            rate = local.set_index("started_at")["events"].resample(_bucket(window)).sum()
            seconds = pd.Timedelta(_bucket(window)).total_seconds()
            rate = (rate / seconds).rename("events_per_s").reset_index()
            ui.chart(
                ui.px_line(
                    rate,
                    x="started_at",
                    y="events_per_s",
                    title="Events per second",
                    labels={"started_at": ui.time_label(), "events_per_s": "events/s"},
                ),
                key="events_per_second",
            )
    with right:
        if not jobs.empty:
            counts = jobs.groupby("status", as_index=False).size().rename(columns={"size": "jobs"})
            ui.chart(
                px.bar(counts, x="status", y="jobs", color="status", title="Jobs by status"),
                key="jobs_by_status",
            )
    left, right = st.columns(2)
    with left:
        if len(finished):
            local = ui.local(finished, "created_at")
            ui.chart(
                px.scatter(
                    local,
                    x="created_at",
                    y="freshness_s",
                    color="status",
                    title="Freshness: accepted → committed (s)",
                    labels={"created_at": ui.time_label("accepted"), "freshness_s": "seconds"},
                ),
                key="freshness",
            )
    with right:
        if not batches.empty:
            local = ui.local(batches, "started_at").assign(lag_s=lambda f: f["lag_ms"] / 1000)
            ui.chart(
                ui.px_line(
                    local,
                    x="started_at",
                    y="lag_s",
                    title="Consumer lag (s)",
                    labels={"started_at": ui.time_label(), "lag_s": "seconds"},
                ),
                key="consumer_lag",
            )
    if not batches.empty:
        local = ui.local(batches, "started_at")
        durations = local.melt(
            id_vars="started_at",
            value_vars=["read_ms", "process_ms", "commit_ms"],
            var_name="step",
            value_name="ms",
        )
        durations["step"] = durations["step"].str.removesuffix("_ms")
        ui.chart(
            px.bar(
                durations,
                x="started_at",
                y="ms",
                color="step",
                title="Batch durations: read, process, commit (ms)",
                labels={"started_at": ui.time_label("batch start")},
            ),
            key="batch_durations",
        )

    rules = ui.load(loaders.rejections_by_rule, filters, dataset)
    if rules is not None:
        arrived = int(batches["valid"].sum() + batches["rejected"].sum()) if len(batches) else 0
        if rules.empty or arrived == 0:
            ui.no_rows("rejected records")
        else:
            rules = rules.assign(
                rule=rules["field"].fillna("(record)") + " · " + rules["rule"],
                share_percent=100.0 * rules["records"] / arrived,
            )
            ui.chart(
                px.bar(
                    rules.head(20),
                    x="share_percent",
                    y="rule",
                    orientation="h",
                    hover_data=["records"],
                    title=f"Rejected share by rule (% of {arrived:,} records arrived)",
                    labels={"share_percent": "% of records", "rule": ""},
                ),
                key="rejected_by_rule",
            )

    st.subheader("Latest snapshots")
    for table in (f"raw.{dataset}", f"raw.{dataset}_rejected"):
        shots = ui.load(loaders.snapshots, table)
        if shots is None:
            continue
        shots = ui.local(shots, "committed_at")
        st.caption(f"`{table}`")
        st.dataframe(
            shots[
                [
                    "snapshot_id",
                    "committed_at",
                    "operation",
                    "added_data_files",
                    "added_records",
                    "total_records",
                ]
            ].rename(columns={"committed_at": ui.time_label("committed")}),
            hide_index=True,
            key=f"snapshots_{table}",
        )


live()
