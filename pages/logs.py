"""Logs: search by text, service, severity, attribute and trace id; matches over time; a
live tail; logs of a trace and logs around an error (links from the Traces and Errors pages)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from streamlit_autorefresh import st_autorefresh

from monitoring_core import clock
from monitoring_core.enums import Role
from monitoring_core.logs import queries
from monitoring_core.timerange import TimeRange
from monitoring_core.traces.rules import parse_attribute
from ui import auth, data, fmt, trace_links, widgets
from ui.trace_tables import log_rows

auth.require_role(Role.VIEWER)
tz, now = data.business_tz(), widgets.current_now()
ALL = "All"
TAIL_S = 5
AROUND = timedelta(minutes=5)
COLORS = {
    "FATAL": "#7b0000",
    "ERROR": "#d62728",
    "WARN": "#ff7f0e",
    "INFO": "#1f77b4",
    "DEBUG": "#9467bd",
    "TRACE": "#7f7f7f",
}
st.title("Logs")


def _step(interval: timedelta) -> str:
    minutes = int(interval.total_seconds() // 60)
    if minutes >= 1440 and minutes % 1440 == 0:
        return f"{minutes // 1440} d"
    if minutes >= 60 and minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min"


def _around(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def _volume_rows(volume: list[dict[str, Any]], cap: int) -> list[dict[str, Any]]:
    return [
        {
            "Day (UTC)": f"{v['day']:%a %-d %b %Y}",
            "Service": v["service"],
            "Records": fmt.count(v["records"]),
            "Body size": fmt.size(v["body_bytes"]),
            "Refused": fmt.count(v["refused"]),
            **({"Of cap": fmt.percent(v["records"] / cap, 0)} if cap else {}),
        }
        for v in volume
    ]


asked_trace = trace_links.parse_trace_id(st.query_params.get("trace_id"))
around = _around(st.query_params.get("around"))
asked_service = st.query_params.get("service")
tail = st.toggle(f"Live tail (every {TAIL_S} s)", key="logs_tail")
if tail:
    st_autorefresh(interval=TAIL_S * 1000, key="logs_tail_tick")
    now = clock.now()
    tr = TimeRange(now - timedelta(minutes=15), now + timedelta(seconds=1))
elif around is not None:
    tr = TimeRange(around - AROUND, around + AROUND)
    st.caption(f"Logs from 5 minutes before to 5 minutes after {fmt.when_exact(around, tz, now)}.")
else:
    tr = widgets.current_time_range()

services = data.read_or_stop(queries.list_log_services, start=tr.start, end=tr.end)
if asked_service and asked_service not in services:
    services = [*services, asked_service]
first, second, third = st.columns([2, 1, 3])
service = first.selectbox(
    "Service",
    [ALL, *services],
    index=1 + services.index(asked_service) if asked_service in services else 0,
    key="logs_service",
)
severity = second.selectbox("At least", ["Any", *queries.SEVERITIES], key="logs_severity")
contains = third.text_input("Body contains", key="logs_contains", max_chars=500)
attr_col, id_col = st.columns(2)
attribute_text = attr_col.text_input("Attribute", placeholder="key=value", key="logs_attr")
trace_text = id_col.text_input("Trace id", value=asked_trace or "", key="logs_trace")
attribute = parse_attribute(attribute_text) if attribute_text.strip() else None
if attribute_text.strip() and attribute is None:
    st.warning("An attribute filter is written key=value.")
trace_id = trace_links.parse_trace_id(trace_text)
if trace_text.strip() and trace_id is None:
    st.warning("A trace id is 32 hexadecimal digits.")
if trace_id and not tail and around is None:
    # a trace's logs: around wherever the trace is, not only in the sidebar's range
    tr = TimeRange(tr.start - timedelta(days=14), tr.end)
filters: dict[str, Any] = {
    "start": tr.start,
    "end": tr.end,
    "service": None if service == ALL else service,
    "min_severity": queries.SEVERITIES.get(severity, 0),
    "contains": contains.replace("\x00", "") or None,
    "trace_id": trace_id,
    "attribute": attribute,
}

interval = widgets.chart_interval(tr)
histogram = data.read_or_stop(queries.log_histogram, interval=interval, **filters)
if histogram:
    frame = pd.DataFrame(histogram)
    frame["bucket"] = pd.to_datetime(frame["bucket"], utc=True).dt.tz_convert(tz)
    figure = go.Figure(
        [
            go.Bar(
                x=part["bucket"],
                y=part["count"],
                name=level,
                marker_color=COLORS.get(level, "#7f7f7f"),
                width=interval.total_seconds() * 1000 * 0.9,  # ms on a date axis
            )
            for level, part in frame.groupby("severity", sort=False)
        ]
    )
    figure.update_layout(
        barmode="stack",
        height=240,
        margin={"l": 10, "r": 10, "t": 10, "b": 60},
        xaxis={"range": [tr.start.astimezone(tz), tr.end.astimezone(tz)]},
        yaxis_title=f"records per {_step(interval)}",
        legend={"orientation": "h", "y": -0.35},  # under the two-line time labels
    )
    st.plotly_chart(figure, width="stretch")
rows = data.read_or_stop(queries.search_logs, **filters)
if not rows:
    st.info(
        "No log record matches. Send logs with an OpenTelemetry SDK's OTLP/HTTP log exporter "
        "to this API's /v1/logs."
    )
    st.stop()
st.caption(
    f"{fmt.plural(len(rows), 'record')} shown, newest first"
    + (" (the newest 500)" if len(rows) >= 500 else "")
)
table = pd.DataFrame(log_rows(rows, tz, now, with_trace=True))
st.dataframe(
    table,
    hide_index=True,
    height=widgets.table_height(len(table)),
    column_config={"Message": st.column_config.TextColumn(width="large")},
)
traced = {
    f"{fmt.when_exact(r['time'], tz, now)} · {r['service']} · {r['severity_text'] or ''} · "
    f"{r['body'][:90]} · {r['trace_id'][:8]}": r["trace_id"]
    for r in rows[:200]
    if r["trace_id"]
}
if traced:
    pick = st.selectbox("Open the trace of a record", list(traced), key="logs_pick_trace")
    trace_links.trace_link(traced[pick])

with st.expander("Volume per service and day"):
    cap = data.get_settings().log_records_per_service_day
    st.caption(
        f"Each service may store {cap:,} records per UTC day (MONITORING_LOG_RECORDS_PER_SERVICE_DAY);"
        " records past it are refused (OTLP partial success, or 429 until midnight UTC) and"
        " counted as refused."
        if cap
        else "No daily cap per service (MONITORING_LOG_RECORDS_PER_SERVICE_DAY=0)."
    )
    volume = data.read_or_stop(queries.daily_volume, start=tr.start - timedelta(days=7), end=tr.end)
    if volume:
        st.dataframe(pd.DataFrame(_volume_rows(volume, cap)), hide_index=True)
