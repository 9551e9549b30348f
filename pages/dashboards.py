"""Dashboards: saved panels of metric charts (line, bar, stat, table) per team, opened by URL
(`?dashboard=ID`), over the sidebar's time range; responders and admins build and change them.

Each panel is a Metrics-page (Explore) query: one stored metric, an aggregation, group-by
dimensions and filters (monitoring_core.dashboards). `config export/apply` carries them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import Connection

from monitoring_core import clock, dashboards, metrics_query
from monitoring_core.enums import Role
from monitoring_core.roles import PermissionDenied
from ui import actions, auth, data, fmt, widgets
from ui.resource_charts import line_spec, sparse, wall_span

user = auth.require_role(Role.VIEWER)
tr = widgets.current_time_range()
tz = data.business_tz()
FLASH = "dashboards_flash"
CAN_EDIT = auth.has_role(Role.RESPONDER)
REFUSED = (dashboards.DashboardInvalid, PermissionDenied)

st.title("Dashboards")
actions.show_flash(FLASH)
boards: list[dict[str, Any]] = data.read_or_stop(dashboards.list_dashboards)


def _save(dashboard_id: int | None, name: str, team: str, panels: list[dict[str, Any]]) -> Any:
    def work(conn: Connection) -> int:
        return dashboards.save_dashboard(
            conn,
            dashboard_id=dashboard_id,
            name=name,
            team=team,
            panels=panels,
            actor=user.username,
            role=user.role,
            now=clock.now(),
        )

    return work


def _open(dashboard_id: int) -> str:
    st.query_params["dashboard"] = str(dashboard_id)
    return "Saved."


if CAN_EDIT:
    with st.popover("New dashboard", icon=":material/add:"):
        new_name = st.text_input("Name", key="dash_new_name")
        new_team = st.text_input("Team", key="dash_new_team", help="e.g. Payments, Leadership")
        if st.button("Create", key="dash_create", type="primary"):
            actions.run(
                FLASH,
                _save(None, new_name, new_team, []),
                done=_open,
                refused=REFUSED,
                failed="Not created: ",
            )

if not boards:
    st.info(
        "No dashboard yet."
        + (" Create one above, then add panels." if CAN_EDIT else " A responder can create one.")
    )
    st.stop()

teams = sorted({b["team"] for b in boards})
team_filter = st.query_params.get("team")
if len(teams) > 1:
    options = ["Every team", *[t or "No team" for t in teams]]
    shown_team = team_filter if team_filter in teams else None
    picked_team = st.segmented_control(
        "Team",
        options,
        default=(shown_team or "No team") if shown_team is not None else "Every team",
        key="dash_team",
    )
    if picked_team and picked_team != "Every team":
        team = "" if picked_team == "No team" else picked_team
        st.query_params["team"] = team
        boards = [b for b in boards if b["team"] == team] or boards
    else:
        st.query_params.pop("team", None)

by_id = {b["id"]: b for b in boards}
asked = st.query_params.get("dashboard")
ids = list(by_id)
index = ids.index(int(asked)) if asked and asked.isdigit() and int(asked) in by_id else 0
chosen = st.selectbox(
    "Dashboard",
    ids,
    index=index,
    format_func=lambda i: (
        f"{by_id[i]['name']}" + (f" · {by_id[i]['team']}" if by_id[i]["team"] else "")
    ),
    key="dash_pick",
)
st.query_params["dashboard"] = str(chosen)
board = by_id[chosen]
panels: list[dict[str, Any]] = board["panels"]
changed = fmt.when(board["updated_at"], tz, widgets.current_now())
st.caption(
    f"{fmt.plural(len(panels), 'panel')} · changed {fmt.md_escape(changed)}"
    + (f" by {fmt.md_escape(board['updated_by'])}" if board["updated_by"] else "")
    + f" · {tr.start.astimezone(tz):%-d %b %H:%M} – {tr.end.astimezone(tz):%-d %b %H:%M}"
)

step = widgets.chart_interval(tr)
catalog = data.read_or_stop(metrics_query.metric_names)
units = dict(zip(catalog["name"], catalog["unit"], strict=True))
whole = timedelta(minutes=max(1, -(-int(tr.duration.total_seconds()) // 60)))
cap = data.get_settings().max_query_series


def _panel(panel: dict[str, Any]) -> None:
    st.markdown(f"**{fmt.md_escape(panel['title'])}**")
    stat = panel["chart"] == "stat"
    try:
        frame = data.read(
            metrics_query.query_metric,
            metric_name=panel["metric"],
            aggregation=panel["aggregation"],
            interval=whole if stat else step,
            tr=tr,
            group_by=tuple(panel["group_by"]),
            filters=panel["filters"],
            max_series=cap,
        )
    except metrics_query.TooManySeries as exc:
        st.warning(str(exc))
        return
    except data.DatabaseProblem:
        st.warning("This panel could not be read; the details are in the UI's log.")
        return
    if frame.empty:
        st.caption(f"No points of {fmt.md_escape(panel['metric'])} in this range.")
        return
    group_by = panel["group_by"]
    labels = frame[group_by].astype(str).agg(" ".join, axis=1).str.strip() if group_by else None
    frame["series"] = (
        labels.where(labels != "", panel["metric"]) if labels is not None else panel["metric"]
    )
    unit = str(units.get(panel["metric"]) or "")
    if stat:
        for series, value in frame.groupby("series")["value"].mean().head(4).items():
            label = str(series) if group_by else fmt.aggregation(panel["aggregation"])
            st.metric(label, fmt.measured(value, unit))
        return
    # the business time zone's wall clock, without a zone: Vega-Lite draws it as it is
    frame["time"] = pd.to_datetime(frame["bucket"], utc=True).dt.tz_convert(tz).dt.tz_localize(None)
    points = frame[["time", "series", "value"]].sort_values("time", kind="stable")
    if panel["chart"] == "table":
        last = points.dropna(subset=["value"]).groupby("series")["value"].last()
        latest = last.map(lambda v: fmt.measured(v, unit)).rename("Latest").to_frame()
        st.dataframe(latest.rename_axis("Series"), width="stretch")
        return
    spec = line_spec(unit, height=260, dots=sparse(points), span=wall_span(tr.start, tr.end, tz))
    if panel["chart"] == "bar":
        spec["layer"][0]["mark"] = {"type": "bar", "clip": True}
    st.vega_lite_chart(points, spec, width="stretch")


if not panels:
    st.info("This dashboard has no panel yet." + (" Add one below." if CAN_EDIT else ""))
for start in range(0, len(panels), 2):
    cols = st.columns(2)
    for col, panel in zip(cols, panels[start : start + 2], strict=False):
        with col.container(border=True):
            _panel(panel)

if not CAN_EDIT:
    st.stop()

st.divider()
st.subheader("Change this dashboard")
names = catalog
if names.empty:
    st.caption("No metric is stored yet, so there is nothing to chart.")
else:
    choices = list(names["name"])
    pick = st.columns([2, 1, 1])
    metric = pick[0].selectbox("Metric", choices, key="dash_metric")
    aggregation = pick[1].selectbox(
        "Aggregation", metrics_query.AGGREGATIONS, key="dash_agg", format_func=fmt.aggregation
    )
    chart = pick[2].selectbox(
        "Chart", dashboards.CHARTS, key="dash_chart", format_func=str.capitalize
    )
    dims = data.read_or_stop(metrics_query.metric_dimensions, metric)
    shape = st.columns([2, 2])
    group_by = shape[0].multiselect("Group by", list(dims), key="dash_group_by", max_selections=5)
    title = shape[1].text_input("Title", key="dash_title", placeholder=metric)
    filters: dict[str, str] = {}
    if dims:
        filter_cols = st.columns(min(len(dims), 4))
        for i, (key, values) in enumerate(dims.items()):
            picked = filter_cols[i % len(filter_cols)].selectbox(
                f"{key} is", ["(any)", *values], key=f"dash_filter_{key}"
            )
            if picked != "(any)":
                filters[key] = picked
    if st.button("Add this panel", type="primary"):
        panel = {
            "title": title or metric,
            "metric": metric,
            "aggregation": aggregation,
            "group_by": group_by,
            "filters": filters,
            "chart": chart,
        }
        actions.run(
            FLASH,
            _save(chosen, board["name"], board["team"], [*panels, panel]),
            done="Panel added.",
            refused=REFUSED,
            failed="Not added: ",
        )

if panels:
    labels = dashboards.panel_labels(panels)
    remove = st.selectbox(
        "Panel", range(len(panels)), format_func=labels.__getitem__, key="dash_rm"
    )
    if actions.confirmed(
        "Remove panel",
        f"Remove **{fmt.md_escape(labels[remove])}** from this dashboard?",
        key="dash_rm_yes",
    ):
        rest = [p for i, p in enumerate(panels) if i != remove]
        actions.run(
            FLASH,
            _save(chosen, board["name"], board["team"], rest),
            done="Panel removed.",
            refused=REFUSED,
        )

naming = st.columns(2)
name = naming[0].text_input("Name", board["name"], key=f"dash_name_{chosen}")
team_name = naming[1].text_input("Team", board["team"], key=f"dash_team_{chosen}")
if st.button("Save name and team"):
    actions.run(
        FLASH,
        _save(chosen, name, team_name, panels),
        done="Saved.",
        refused=REFUSED,
        failed="Not saved: ",
    )


def _delete(conn: Connection) -> bool:
    return dashboards.delete_dashboard(
        conn, dashboard_id=chosen, actor=user.username, role=user.role, now=clock.now()
    )


if actions.confirmed(
    "Delete dashboard",
    f"Delete **{fmt.md_escape(board['name'])}** and its {len(panels)} panel(s)?",
    key="dash_delete_yes",
):
    st.query_params.pop("dashboard", None)
    actions.run(FLASH, _delete, done="Dashboard deleted.", refused=REFUSED)
