"""Data quality page: Great Expectations results over time (``ops.dq_results``, written by
``weir quality check`` and the Airflow workflow), the failing expectations with their
severity and sample failing record ids, the ingest gate's rejections by rule and field
(``raw.<dataset>_rejected``), and where the latest Data Docs are. The sidebar's date range
(check or arrival time, in the viewer's timezone) filters every part."""

from __future__ import annotations

from datetime import timedelta

import plotly.express as px
import streamlit as st

from streamlit_app import loaders, ui
from weir import quality

st.title("Data quality")
st.caption(
    "Great Expectations suites generated from the contracts (raw tables) and the marts' "
    "suite, and what the ingest gate rejected."
)

now = loaders.now()
window = ui.date_range("Checked between", now - timedelta(days=30), now, key="quality_dates")
dataset = st.sidebar.selectbox("Dataset", loaders.datasets(), key="quality_dataset")

docs = quality.quality_folder() / "gx" / "data_docs" / "index.html"
if docs.is_file():
    st.markdown(
        f"Latest Data Docs: [{docs.name}]({docs.as_uri()}) — `{docs}` (open the file in a "
        "browser on this machine)."
    )

runs = ui.load(loaders.quality_runs, window)
if runs is not None:
    if runs.empty:
        ui.no_rows("quality runs")
    else:
        last = runs.sort_values("finished_at").groupby(["table_name", "suite"]).tail(1)
        kpi = st.columns(3)
        kpi[0].metric("Quality runs", f"{runs['run_id'].nunique():,}")
        kpi[1].metric(
            "Expectations failing now",
            f"{int(last['failed'].sum()):,}",
            help="In the latest run of each table and suite.",
        )
        kpi[2].metric("Critical failing now", f"{int(last['critical_failed'].sum()):,}")
        # One point per run: when it finished, its expectations passed and failed over
        # every table it checked.
        per_run = runs.groupby("run_id", as_index=False).agg(
            finished_at=("finished_at", "max"),
            expectations=("expectations", "sum"),
            failed=("failed", "sum"),
            critical_failed=("critical_failed", "sum"),
            tables=("table_name", lambda t: ", ".join(sorted(set(t)))),
        )
        per_run = ui.local(
            per_run.assign(passed=per_run["expectations"] - per_run["failed"]), "finished_at"
        ).sort_values("finished_at")
        long = per_run.melt(
            id_vars=["finished_at", "run_id", "tables"],
            value_vars=["passed", "failed", "critical_failed"],
            var_name="outcome",
            value_name="count",
        )
        ui.chart(
            ui.px_line(
                long,
                x="finished_at",
                y="count",
                color="outcome",
                hover_data=["run_id", "tables"],
                title="Expectations per quality run",
                color_discrete_map={
                    "passed": "#2e7d32",
                    "failed": "#ef6c00",
                    "critical_failed": "#c62828",
                },
                labels={"finished_at": ui.time_label("checked")},
            ),
            key="results_over_time",
        )
        st.caption("Latest result of each table and suite")
        latest = ui.local(last, "finished_at").sort_values(["table_name", "suite"])
        st.dataframe(
            latest[
                [
                    "table_name",
                    "suite",
                    "finished_at",
                    "rows_checked",
                    "expectations",
                    "failed",
                    "critical_failed",
                ]
            ].rename(columns={"finished_at": ui.time_label("checked")}),
            hide_index=True,
            key="latest_results",
        )

    failing = ui.load(loaders.failing_expectations, window)
    st.subheader("Failing expectations")
    if failing is not None and failing.empty:
        st.success("No expectation failed in the selected dates.")
    elif failing is not None:
        failing = ui.local(failing, "finished_at")
        failing["sample_ids"] = failing["sample_ids"].map(
            lambda ids: ", ".join(list(ids)[:5]) if ids is not None else ""
        )
        st.dataframe(
            failing.rename(columns={"finished_at": ui.time_label("checked")}),
            hide_index=True,
            key="failing",
            column_config={
                "unexpected_percent": st.column_config.NumberColumn(format="%.2f %%"),
                "sample_ids": st.column_config.TextColumn("sample failing ids"),
            },
        )

st.subheader("Rejected at ingest, by rule and field")
rules = ui.load(loaders.rejections_by_rule, window, dataset)
if rules is not None:
    if rules.empty:
        ui.no_rows("rejected records")
    else:
        ui.chart(
            px.bar(
                rules,
                x="records",
                y="field",
                color="rule",
                orientation="h",
                title=f"raw.{dataset}_rejected: violations by field and rule",
                labels={"field": "", "records": "records"},
            ),
            key="ingest_rejections",
        )
