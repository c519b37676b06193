"""Analytics page: the dimensional model (the published ``marts.*`` tables only). Revenue
and events by day, country, category and plan; top products; the funnel page_view →
add_to_cart → purchase; users by plan over time from the SCD type 2 user dimension. Every
chart follows the sidebar filters (event dates in the viewer's timezone, country, event type,
product category, plan)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from streamlit_app import loaders, ui

st.title("Analytics")
st.caption("From the dimensional model: the marts `weir transform` publishes to the lake.")

options = ui.load(loaders.filter_options)
if options is None:
    st.stop()

window = ui.date_range("Event dates", options["first"], options["last"], key="filter_dates")
filters = replace(
    window,
    countries=ui.multiselect("Country", options["countries"], key="filter_countries"),
    event_types=ui.multiselect("Event type", options["event_types"], key="filter_event_types"),
    categories=ui.multiselect("Product category", options["categories"], key="filter_categories"),
    plans=ui.multiselect("Plan", options["plans"], key="filter_plans"),
)

# Every query of the page at once, two at a time (the machine's cores), into the cache the
# calls below read.
ui.prefetch(
    (loaders.events_by_hour, filters),
    (loaders.funnel, filters),
    (loaders.breakdown, filters, st.session_state.get("breakdown") or "country"),
    (loaders.revenue_by_hour, filters),
    (loaders.top_products, filters),
    (loaders.user_versions, filters),
)
events = ui.local(loaders.events_by_hour(filters), "hour")
revenue = ui.local(loaders.revenue_by_hour(filters), "hour")
hourly = (
    filters.end is not None
    and filters.start is not None
    and (filters.end - filters.start).days <= 3
)
axis = ui.time_label("hour" if hourly else "day")


def periods(hours: pd.Series) -> pd.Series:
    """The chart's periods of the (local) hour buckets: the hours, or their days. In a
    timezone whose offset is not whole hours, the UTC hour holding the range's first local
    instant starts before it; it is labelled with that instant, so it lands in the right day."""
    if filters.start is not None:
        hours = hours.clip(lower=ui.as_local(filters.start))
    return hours if hourly else hours.dt.floor("D")


total_events = int(events["events"].sum()) if not events.empty else 0
total_revenue = float(revenue["revenue_usd"].sum()) if not revenue.empty else 0.0
steps = loaders.funnel(filters)
kpi = st.columns(4)
kpi[0].metric("Events", f"{total_events:,}")
kpi[1].metric("Revenue (USD)", f"{total_revenue:,.2f}")
kpi[2].metric("Order lines", f"{int(revenue['order_lines'].sum()) if not revenue.empty else 0:,}")
sessions = int(steps["sessions"].iloc[0])
converted = int(steps["sessions"].iloc[-1])
kpi[3].metric("Session conversion", f"{100.0 * converted / sessions:.1f} %" if sessions else "-")

left, right = st.columns(2)
with left:
    if events.empty:
        ui.no_rows("events")
    else:
        per = events.assign(period=periods(events["hour"]))
        per = per.groupby(["period", "event_type"], as_index=False)["events"].sum()
        ui.chart(
            px.bar(
                per,
                x="period",
                y="events",
                color="event_type",
                title="Events",
                labels={"period": axis},
            ),
            key="events_over_time",
        )
with right:
    if revenue.empty:
        ui.no_rows("order lines")
    else:
        per = revenue.assign(period=periods(revenue["hour"]))
        per = per.groupby("period", as_index=False)["revenue_usd"].sum()
        ui.chart(
            ui.px_line(
                per,
                x="period",
                y="revenue_usd",
                title="Revenue (USD)",
                labels={"period": axis, "revenue_usd": "revenue (USD)"},
            ),
            key="revenue_over_time",
        )

dimension = st.radio(
    "Break down by",
    ["country", "category", "plan", "event_type"],
    format_func=lambda d: d.replace("_", " "),
    horizontal=True,
    key="breakdown",
)
split = loaders.breakdown(filters, dimension)
if split.empty:
    ui.no_rows("events")
else:
    split = split.fillna({"value": "(unknown)"})
    name = dimension.replace("_", " ")
    left, right = st.columns(2)
    with left:
        ui.chart(
            px.bar(
                split,
                x="value",
                y="revenue_usd",
                hover_data=["events"],
                title=f"Revenue (USD) by {name}",
                labels={"value": name, "revenue_usd": "revenue (USD)"},
            ),
            key="revenue_by_dimension",
        )
    with right:
        ui.chart(
            px.bar(split, x="value", y="events", title=f"Events by {name}", labels={"value": name}),
            key="events_by_dimension",
        )

left, right = st.columns(2)
with left:
    products = loaders.top_products(filters)
    if products.empty:
        ui.no_rows("purchases")
    else:
        ui.chart(
            px.bar(
                products.iloc[::-1],
                x="revenue_usd",
                y="product_name",
                orientation="h",
                color="product_category",
                title="Top products by revenue (USD)",
                labels={"revenue_usd": "revenue (USD)", "product_name": ""},
            ),
            key="top_products",
        )
with right:
    if sessions == 0:
        ui.no_rows("sessions")
    else:
        ui.chart(
            px.funnel(steps, x="sessions", y="step", title="Funnel (sessions)"),
            key="funnel",
        )

versions = loaders.user_versions(filters)
if versions.empty or filters.start is None or filters.end is None:
    ui.no_rows("users")
else:
    # Users per plan at the end of each local day: the version valid at that instant.
    tz = ui.zone()
    first_day = filters.start.astimezone(tz).date()
    last_day = (filters.end.astimezone(tz) - pd.Timedelta(microseconds=1)).date()
    days = pd.date_range(first_day, last_day, freq="D")
    ends = (
        (days + pd.Timedelta(days=1))
        .tz_localize(tz, ambiguous=False, nonexistent="shift_forward")
        .tz_convert("UTC")
        .asi8
    )
    # A user's SCD2 versions never overlap, so the versions valid at an instant count its
    # users: those that started before it minus those that ended by then.
    rows = []
    for plan, group in versions.groupby("user_plan"):
        starts = np.sort(
            pd.to_datetime(group["valid_from"], utc=True).to_numpy("datetime64[ns]").astype("int64")
        )
        ended = pd.to_datetime(group["valid_to"], utc=True).dropna()
        stops = np.sort(ended.to_numpy("datetime64[ns]").astype("int64"))
        users = np.searchsorted(starts, ends, "left") - np.searchsorted(stops, ends, "left")
        rows += [
            {"day": d, "plan": plan, "users": int(n)} for d, n in zip(days, users, strict=True)
        ]
    by_plan = pd.DataFrame(rows, columns=["day", "plan", "users"])
    if by_plan.empty:
        ui.no_rows("users")
    else:
        ui.chart(
            px.area(
                by_plan,
                x="day",
                y="users",
                color="plan",
                title="Users by plan at the end of each day (SCD2 dimension)",
                labels={"day": ui.time_label("day")},
            ),
            key="users_by_plan",
        )
