"""What every page shares: the viewer's timezone, the filter widgets, times shown in that
timezone, empty states and Plotly defaults.

Times come from the loaders as UTC instants; :func:`local` turns them into wall-clock times
of the chosen timezone (the browser's, from ``st.context.timezone``, unless the viewer picks
another in the sidebar), and every time axis is labelled with it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, available_timezones

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from streamlit_app.queries import Filters, NotBuilt

T = TypeVar("T")

TIMEZONES = sorted(available_timezones() | {"UTC"})


def browser_timezone() -> str | None:
    zone = st.context.timezone
    return zone if zone in TIMEZONES else None


def timezone_picker() -> ZoneInfo:
    """The timezone selector (sidebar); defaults to the browser's timezone, else UTC."""
    browser = browser_timezone()
    default = browser or "UTC"
    choice = st.sidebar.selectbox(
        "Timezone",
        TIMEZONES,
        index=TIMEZONES.index(default),
        key="timezone",
        help="Every time on the page is shown in this timezone. It starts as your browser's.",
    )
    note = " (your browser's)" if choice == browser else ""
    st.sidebar.caption(f"Times are shown in **{choice}**{note}.")
    return ZoneInfo(choice)


def zone() -> ZoneInfo:
    return ZoneInfo(st.session_state.get("timezone") or browser_timezone() or "UTC")


def local(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """A copy of ``frame`` with the UTC time ``columns`` as wall-clock times of the chosen
    timezone (naive, so charts draw them as they are)."""
    tz = zone()
    frame = frame.copy()
    for column in columns:
        values = pd.to_datetime(frame[column], utc=True)
        frame[column] = values.dt.tz_convert(tz).dt.tz_localize(None)
    return frame


def as_local(moment: datetime) -> pd.Timestamp:
    """``moment`` as a wall-clock time of the chosen timezone (naive), like :func:`local`."""
    return pd.Timestamp(moment).tz_convert(zone()).tz_localize(None)


def time_label(what: str = "time") -> str:
    return f"{what} ({zone().key})"


def day_bounds(days: tuple[date, date]) -> tuple[datetime, datetime]:
    """The UTC instants where local day ``days[0]`` starts and the day after ``days[1]``
    starts, in the chosen timezone."""
    tz = zone()
    start = datetime.combine(days[0], time(), tz)
    end = datetime.combine(days[1] + timedelta(days=1), time(), tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def date_range(label: str, first: datetime | None, last: datetime | None, key: str) -> Filters:
    """A date range picker over local days (default: ``first``..``last`` in the chosen
    timezone) as a :class:`Filters` with start and end."""
    tz = zone()
    today = datetime.now(tz).date()
    lo = first.astimezone(tz).date() if first else today
    hi = last.astimezone(tz).date() if last else today
    picked = st.sidebar.date_input(label, value=(lo, hi), key=key, format="YYYY-MM-DD")
    days = tuple(picked) if isinstance(picked, list | tuple) else (picked,)
    if not days:
        return Filters()
    start, end = day_bounds((days[0], days[-1]))
    return Filters(start=start, end=end)


def multiselect(label: str, options: list[str], key: str) -> tuple[str, ...]:
    """A filter over ``options`` (empty: all); a value not offered yet can be typed in."""
    chosen = st.sidebar.multiselect(
        label, options, key=key, placeholder="All", accept_new_options=True
    )
    return tuple(chosen)


def empty_state(error: NotBuilt) -> None:
    st.info(f"**{error.table}** has no data yet. {error.hint}", icon=":material/info:")


def load(loader: Callable[..., T], *args: object) -> T | None:
    """``loader(*args)``, or ``None`` after showing the empty state if its table does not
    exist yet."""
    try:
        return loader(*args)
    except NotBuilt as missing:
        empty_state(missing)
        return None


def prefetch(*calls: tuple[Callable[..., object], ...]) -> None:
    """Runs the cached loader calls ``(loader, *args)`` two at a time, so that their
    queries overlap (DataFusion leaves Python's lock while it works); the page's own calls
    then find the results cached. A missing table is left for the page's call to report."""
    from concurrent.futures import ThreadPoolExecutor

    from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

    context = get_script_run_ctx()

    def run(call: tuple[Callable[..., object], ...]) -> None:
        add_script_run_ctx(threading.current_thread(), context)
        loader, *args = call
        with contextlib.suppress(NotBuilt):
            loader(*args)

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(run, calls))


def no_rows(what: str) -> None:
    st.caption(f"No {what} in the selected filters.")


def chart(figure: go.Figure, key: str) -> None:
    figure.update_layout(margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend_title_text="")
    st.plotly_chart(figure, key=key, width="stretch")


def px_line(frame: pd.DataFrame, **kwargs: Any) -> go.Figure:
    return px.line(frame, markers=len(frame) < 60, **kwargs)


def refresh_picker(label: str = "Refresh every") -> float | None:
    """How often the live parts of the page reload (seconds; ``None`` = off)."""
    choices = {"off": None, "5 s": 5.0, "10 s": 10.0, "30 s": 30.0, "1 min": 60.0}
    choice = st.sidebar.selectbox(label, list(choices), index=2, key="refresh_every")
    return choices[choice]
