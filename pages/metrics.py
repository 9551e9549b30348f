"""Metrics: chart any stored metric (system, database, SQL collectors, Prometheus pushes, your
own) with an aggregation, dimension filters and grouping over the sidebar's time range.

The whole choice is kept in the URL, so a chart can be shared as a link: `?metric=NAME`,
`&agg=max`, `&by=job&by=instance` (group by), `&where.job=worker1` (one filter per dimension).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from monitoring_core import metrics_query
from monitoring_core.enums import Role
from ui import auth, data, fmt, url_state, widgets
from ui.resource_charts import line_spec, sparse, wall_span

auth.require_role(Role.VIEWER)
tr = widgets.current_time_range()
tz = data.business_tz()
ANY = "(any)"

st.title("Metrics")
names = data.read_or_stop(metrics_query.metric_names)
if names.empty:
    st.info("No metric has been stored yet: the worker's collectors and every push add theirs.")
    st.stop()

choices = list(names["name"])
metric = url_state.select(st.selectbox, "Metric", choices, param="metric", key="metric_name")
assert metric is not None  # choices is not empty
url_state.put("metric", metric)  # always named: a shared link keeps meaning this metric
info = names.set_index("name").loc[metric]
st.caption(
    " · ".join(
        fmt.md_escape(part)
        for part in (
            f"{int(info['series']):,} series",
            info["metric_type"] and fmt.label(info["metric_type"]),
            info["unit"] and f"unit: {info['unit']}",
            info["description"],
        )
        if part
    )
)

dimensions = data.read_or_stop(metrics_query.metric_dimensions, metric)
cols = st.columns([1, 2, 1])
aggregation = (
    url_state.select(
        cols[0].selectbox,
        "Aggregation",
        metrics_query.AGGREGATIONS,
        param="agg",
        key="metric_agg",
        format_func=fmt.aggregation,
    )
    or metrics_query.AGGREGATIONS[0]
)
group_by = url_state.multi(
    cols[1].multiselect, "Group by", list(dimensions), param="by", key="metric_group_by"
)
step = widgets.chart_interval(tr)
cols[2].text_input("Bucket", f"{int(step.total_seconds() // 60)} min", disabled=True)

filters: dict[str, str] = {}
if dimensions:
    filter_cols = st.columns(min(len(dimensions), 4))
    for i, (key, values) in enumerate(dimensions.items()):
        picked = url_state.select(
            filter_cols[i % len(filter_cols)].selectbox,
            f"{key} is",
            [ANY, *values],
            param=f"where.{key}",
            key=f"metric_filter_{key}",
        )
        if picked is not None and picked != ANY:
            filters[key] = picked
for param in list(st.query_params):  # filters of another metric's dimensions
    if param.startswith("where.") and param.removeprefix("where.") not in dimensions:
        url_state.put(param, None)

try:
    frame = data.read(
        metrics_query.query_metric,
        metric_name=metric,
        aggregation=aggregation,
        interval=step,
        tr=tr,
        group_by=tuple(group_by),
        filters=filters,
        max_series=data.get_settings().max_query_series,
    )
except metrics_query.TooManySeries as exc:
    st.error(str(exc))
    st.stop()
except data.DatabaseProblem:
    st.error("The metric could not be read; the details are in the UI's log.")
    st.stop()

st.caption(f"{tr.start.astimezone(tz):%d %b %H:%M} – {tr.end.astimezone(tz):%d %b %H:%M}")
if frame.empty:
    st.info("No points of this metric in this range with these filters.")
    st.stop()

labels = frame[group_by].astype(str).agg(" ".join, axis=1).str.strip() if group_by else None
frame["series"] = labels.where(labels != "", metric) if labels is not None else metric
# the business time zone's wall clock, without a zone: Vega-Lite draws it as it is (UTC scale)
frame["time"] = pd.to_datetime(frame["bucket"], utc=True).dt.tz_convert(tz).dt.tz_localize(None)
unit = str(info["unit"] or "")
points = frame[["time", "series", "value"]].sort_values("time", kind="stable")
spec = line_spec(unit, height=380, dots=sparse(points), span=wall_span(tr.start, tr.end, tz))
st.vega_lite_chart(points, spec, width="stretch")
last = points.dropna(subset=["value"]).groupby("series")["value"].last()
latest = pd.DataFrame(
    {
        "Latest": last.map(lambda v: fmt.measured(v, unit)),
        "Points": frame.groupby("series")["count"].sum(),
    }
).rename_axis("Series")
st.dataframe(
    latest,
    width="stretch",
    column_config={"Points": st.column_config.NumberColumn(format="localized")},
)
