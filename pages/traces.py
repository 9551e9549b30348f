"""Traces: search spans by service, operation, duration, status, attribute and time; one
trace as a waterfall (spans, timings, attributes, events) with its errors and logs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
import streamlit as st

from monitoring_core.enums import Role
from monitoring_core.logs import queries as log_queries
from monitoring_core.traces import queries
from monitoring_core.traces.rules import parse_attribute
from ui import auth, data, fmt, trace_links, trace_tables, url_state, widgets
from ui.waterfall import waterfall_figure

auth.require_role(Role.VIEWER)
tr, tz, now = widgets.current_time_range(), data.business_tz(), widgets.current_now()
ALL = "All"
st.title("Traces")


def _pairs(where: Any, rows: list[dict[str, Any]], what: str) -> None:
    """Name/value (or event) rows as a table, or a line saying there are none."""
    if rows:
        where.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    else:
        where.caption(f"This span has no {what}.")


left, mid, right, last = st.columns([2, 3, 2, 1])
services = data.read_or_stop(queries.list_services, start=tr.start, end=tr.end)
service = left.selectbox("Service", [ALL, *services], key="traces_service")
operations = data.read_or_stop(
    queries.list_operations,
    start=tr.start,
    end=tr.end,
    service=None if service == ALL else service,
)
operation = mid.selectbox("Operation", [ALL, *operations], key="traces_operation")
slower = right.number_input(
    "Slower than (ms)", min_value=0.0, max_value=86_400_000.0, value=0.0, step=50.0, format="%.0f"
)
errors_only = last.checkbox("Errors only", key="traces_errors")
attr_col, id_col = st.columns(2)
attribute_text = attr_col.text_input(
    "Attribute", placeholder="key=value, e.g. http.response.status_code=500", key="traces_attr"
)
with id_col:  # in the URL: a link (or back/forward) naming another trace opens it in-session
    trace_text = url_state.text("Trace id", param="trace_id", max_chars=64, key="traces_id")
attribute = parse_attribute(attribute_text) if attribute_text.strip() else None
if attribute_text.strip() and attribute is None:
    st.warning("An attribute filter is written key=value.")
trace_id = trace_links.parse_trace_id(trace_text)
if trace_text.strip() and trace_id is None:
    st.warning("A trace id is 32 hexadecimal digits.")

found = data.read_or_stop(
    queries.search_traces,
    start=tr.start,
    end=tr.end,
    service=None if service == ALL else service,
    operation=None if operation == ALL else operation,
    min_duration_ms=slower or None,
    errors_only=errors_only,
    attribute=attribute,
    trace_id=trace_id,
)
chosen: str | None = trace_id
around = None
if found:
    table = pd.DataFrame(trace_tables.trace_rows(found, tz, now))
    st.dataframe(table, hide_index=True, height=widgets.table_height(len(table), max_rows=15))
    labels = {
        row["trace_id"]: f"{fmt.when_exact(row['first_seen'], tz, now)} · {row['service']}: "
        f"{row['name'][:80]} · {fmt.precise_ms(row['duration_ms'])}"
        + (f" · {fmt.plural(row['errors'], 'error')}" if row["errors"] else "")
        for row in found
    }
    if chosen not in labels:
        chosen = st.selectbox(
            "Trace", list(labels), format_func=labels.__getitem__, key="traces_pick"
        )
    around = next(row["first_seen"] for row in found if row["trace_id"] == chosen)
elif trace_id is None:
    st.info(
        "No trace matches in this range. Point an OpenTelemetry SDK's OTLP/HTTP exporter at "
        "this API's /v1/traces (or send Sentry transactions) to see traces here."
    )
    st.stop()
if chosen is None:
    st.stop()

spans = data.read_or_stop(queries.trace_detail, trace_id=chosen, around=around)
if not spans:
    st.warning("No span of this trace is stored (it may be older than the retention).")
    st.stop()
first = spans[0]["time"]
total_ms = max(s["offset_ms"] + s["duration_ms"] for s in spans)
errors = sum(1 for s in spans if s["status_code"] == 2)
st.subheader(f"Trace {chosen}")
st.caption(
    f"{fmt.when_exact(first, tz, now)} · {fmt.plural(len(spans), 'span')} · "
    f"{fmt.precise_ms(total_ms)} · {fmt.plural(errors, 'error')} · services: "
    f"{fmt.md_escape(', '.join(sorted({s['service'] for s in spans})))}"
)
link_cols = st.columns(2)
with link_cols[0]:
    trace_links.logs_of_trace(chosen)


shown = spans[:1000]
if len(spans) > len(shown):
    st.caption(f"The first {len(shown)} of {len(spans)} spans are drawn.")
st.plotly_chart(waterfall_figure(shown), width="stretch")

span_table = pd.DataFrame(trace_tables.span_rows(spans))
st.dataframe(span_table, hide_index=True, height=widgets.table_height(len(span_table), max_rows=15))
by_id = {s["span_id"]: s for s in spans}
span_id = st.selectbox(
    "Span",
    list(by_id),
    format_func=lambda sid: f"{by_id[sid]['service']}: {by_id[sid]['name'][:80]} ({sid})",
    key="traces_span",
)
span = by_id[span_id]
if span["status_code"] == 2:
    st.error(trace_tables.span_summary(span), icon=":material/error:")
else:
    st.caption(trace_tables.span_summary(span))
# Only the open tab is drawn (`.open`): the others cost each click their DOM.
attrs_tab, events_tab, resource_tab = st.tabs(
    ["Attributes", "Events", "Resource"], key="traces_span_tab", on_change="rerun"
)
if attrs_tab.open:
    _pairs(attrs_tab, trace_tables.attribute_rows(span["attributes"]), "attributes")
if events_tab.open:
    _pairs(events_tab, trace_tables.event_rows(span["events"], span["time"]), "events")
if resource_tab.open:
    _pairs(resource_tab, trace_tables.attribute_rows(span["resource"]), "resource attributes")
    if span.get("scope"):
        resource_tab.caption(f"Instrumentation scope: {fmt.md_escape(span['scope'])}")

st.subheader("Errors in this trace")
trace_errors = data.read_or_stop(queries.trace_errors, trace_id=chosen)
if trace_errors:
    st.dataframe(pd.DataFrame(trace_tables.error_rows(trace_errors, tz, now)), hide_index=True)
    st.page_link("pages/errors.py", label="Open the Errors page", icon=":material/bug_report:")
else:
    st.caption("No error event carries this trace id.")

st.subheader("Logs of this trace")
trace_logs = data.read_or_stop(
    log_queries.search_logs,
    start=first - timedelta(days=1),
    end=first + timedelta(days=1),
    trace_id=chosen,
    limit=200,
)
if trace_logs:
    st.dataframe(pd.DataFrame(trace_tables.log_rows(trace_logs, tz, now)), hide_index=True)
else:
    st.caption("No log record carries this trace id.")
