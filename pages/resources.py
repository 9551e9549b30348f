"""Resources: the host's CPU, memory, disk and network and the database's connections, cache hit
ratio, locks and slow queries over the sidebar's time range (the worker's collect_system and
collect_database jobs write them as metric points), one section at a time
(`?section=system|database`).

Each section's charts are read in one cached call (ui.resource_charts.read_charts) and drawn
from a literal Vega-Lite spec: `st.line_chart` spent ~0.1–0.2 s of script time a chart in
Altair's schema validation, the most of this page's time."""

from __future__ import annotations

import streamlit as st

from monitoring_core.enums import Role
from ui import auth, data, fmt, url_state, widgets
from ui.resource_charts import (
    DATABASE,
    SYSTEM,
    Chart,
    line_spec,
    read_charts,
    sparse,
    wall_span,
)

auth.require_role(Role.VIEWER)
tr = widgets.current_time_range()
step = widgets.chart_interval(tr)
tz = data.business_tz()
span = wall_span(tr.start, tr.end, tz)  # the x axis: the whole range, however few points


def _section(title: str, charts: list[Chart], missing: str) -> None:
    st.subheader(title)
    try:
        drawn = data.read(read_charts, tuple(charts), tr, step, tz)
    except data.DatabaseProblem:
        st.error("The resource figures could not be read; the details are in the UI's log.")
        return
    columns = st.columns(2)
    for i, (chart, (points, latest)) in enumerate(zip(charts, drawn, strict=True)):
        with columns[i % 2], st.container(border=True):
            st.markdown(f"**{chart.title}**" + (f" ({chart.unit})" if chart.unit else ""))
            if points.empty:
                st.caption("No points in this range.")
                continue
            spec = line_spec(chart.unit, dots=sparse(points), span=span)
            st.vega_lite_chart(points, spec, width="stretch")
            st.text(f"Latest: {latest}")  # series names are data: no markdown
    if all(points.empty for points, _latest in drawn):
        st.info(missing)


st.title("Resources")
now = widgets.current_now()
st.caption(f"{fmt.when(tr.start, tz, now)} – {fmt.when(tr.end, tz, now)} ({tz.key})")
# One section drawn at a time (`?section=database`): 13 Vega charts at once took ~0.6 s of
# the browser's CPU to open on a quiet machine, 2 s on a loaded one or a phone.
section = url_state.select(
    st.segmented_control,
    "Section",
    ["System", "Database"],
    param="section",
    key="resources_section",
    to_url=str.lower,
    required=True,
    label_visibility="collapsed",
)
if section == "Database":
    _section(
        "Database",
        DATABASE,
        "No database figures in this range: the worker's collect_database job writes them "
        "every minute.",
    )
else:
    _section(
        "System",
        SYSTEM,
        "No host figures in this range: the worker's collect_system job writes them every 30 s.",
    )
