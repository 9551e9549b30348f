"""Resources: the host's CPU, memory, disk and network and the database's connections, cache hit
ratio, locks and slow queries over the sidebar's time range (the worker's collect_system and
collect_database jobs write them as metric points)."""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd
import streamlit as st

from monitoring_core import metrics_query
from monitoring_core.enums import Role
from ui import auth, data, widgets

auth.require_role(Role.VIEWER)
tr = widgets.current_time_range()
step = widgets.chart_interval(tr)
tz = data.business_tz()


class Chart(NamedTuple):
    title: str
    metric: str
    aggregation: str  # per bin: avg for levels, max where the worst moment matters
    group_by: tuple[str, ...]
    unit: str


SYSTEM = [
    Chart("CPU busy", "system_cpu_percent", "avg", ("host",), "%"),
    Chart("Load average (1 min)", "system_load1", "avg", ("host",), ""),
    Chart("Memory used", "system_memory_used_percent", "avg", ("host",), "%"),
    Chart("Disk used", "system_disk_used_percent", "max", ("host", "mount"), "%"),
    Chart("Network sent", "system_network_sent_bytes_per_second", "avg", ("interface",), "B/s"),
    Chart(
        "Network received",
        "system_network_received_bytes_per_second",
        "avg",
        ("interface",),
        "B/s",
    ),
]
DATABASE = [
    Chart("Connections", "db_connections", "avg", ("database",), ""),
    Chart("Connections used", "db_connections_used_percent", "max", ("database",), "%"),
    Chart("Cache hit ratio", "db_cache_hit_ratio", "min", ("database",), ""),
    Chart("Locks held", "db_locks", "max", ("database",), ""),
    Chart("Sessions waiting for a lock", "db_sessions_waiting_for_lock", "max", ("database",), ""),
    Chart("Slow queries", "db_slow_queries", "max", ("database",), ""),
    Chart("Longest running query", "db_longest_query_seconds", "max", ("database",), "s"),
]


def _wide(frame: pd.DataFrame, chart: Chart) -> pd.DataFrame:
    """One column per series (named by its dimension values), local time as the index."""
    frame = frame.copy()
    labels = frame[list(chart.group_by)].astype(str).agg(" ".join, axis=1).str.strip()
    frame["series"] = labels.where(labels != "", chart.metric)
    frame["time"] = pd.to_datetime(frame["bucket"], utc=True).dt.tz_convert(tz)
    return frame.pivot_table(index="time", columns="series", values="value", aggfunc="mean")


def _latest(wide: pd.DataFrame, unit: str) -> str:
    last = wide.ffill().iloc[-1]
    return ", ".join(f"{name}: {value:,.2f}{unit and ' ' + unit}" for name, value in last.items())


def _draw(chart: Chart) -> bool:
    """The chart in its own bordered box; False when it has no points in the range."""
    frame = data.read(
        metrics_query.query_metric,
        metric_name=chart.metric,
        aggregation=chart.aggregation,
        interval=step,
        tr=tr,
        group_by=chart.group_by,
    )
    with st.container(border=True):
        st.markdown(f"**{chart.title}**" + (f" ({chart.unit})" if chart.unit else ""))
        if frame.empty:
            st.caption("No points in this range.")
            return False
        wide = _wide(frame, chart)
        st.line_chart(wide, height=220, y_label=chart.unit or None)
        st.text(f"Latest: {_latest(wide, chart.unit)}")  # series names are data: no markdown
    return True


def _section(title: str, charts: list[Chart], missing: str) -> None:
    st.subheader(title)
    columns = st.columns(2)
    drawn: list[bool] = []
    try:
        for i, chart in enumerate(charts):
            with columns[i % 2]:
                drawn.append(_draw(chart))
    except data.DatabaseProblem:
        st.error("The resource figures could not be read; the details are in the UI's log.")
        return
    if not any(drawn):
        st.info(missing)


st.title("Resources")
st.caption(f"{tr.start.astimezone(tz):%d %b %H:%M} – {tr.end.astimezone(tz):%d %b %H:%M}")
_section(
    "System",
    SYSTEM,
    "No host figures in this range: the worker's collect_system job writes them every 30 s.",
)
_section(
    "Database",
    DATABASE,
    "No database figures in this range: the worker's collect_database job writes them every minute.",
)
