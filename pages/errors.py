"""Errors: trend by level and service, groups (filter, sort), one group's detail and actions."""

from __future__ import annotations

from functools import partial

import pandas as pd
import streamlit as st

from monitoring_core import clock
from monitoring_core.audit import user_actor
from monitoring_core.enums import ErrorGroupStatus, ErrorLevel, Role
from monitoring_core.errors import queries
from monitoring_core.errors.rules import TRANSITIONS
from monitoring_core.errors.service import change_group_status
from ui import actions as ui_actions
from ui import auth, data, fmt, trace_links, widgets

auth.require_role(Role.VIEWER)
tr, tz = widgets.current_time_range(), data.get_settings().tz
interval = widgets.chart_interval(tr)
ALL = "All"
SORTS = {
    "Last seen": "last_seen",
    "Events in range": "events",
    "Users": "users",
    "Severity": "severity",
    "First seen": "first_seen",
}
st.title("Errors")

stats = data.read_or_stop(
    queries.error_analytics, start=tr.start, end=tr.end, interval=interval, group_by="level"
)
totals = stats["totals"]
cards = st.columns(5)
with cards[0]:
    widgets.kpi_card("Error events", fmt.count(totals["events"]))
with cards[1]:
    widgets.kpi_card("Groups seen", fmt.count(totals["groups"]))
with cards[2]:
    widgets.kpi_card("Users affected", fmt.count(totals["users"]))
with cards[3]:
    widgets.kpi_card("New groups", fmt.count(stats["new_groups"]))
with cards[4]:
    widgets.kpi_card("Regressions", fmt.count(stats["regressions"]))


def _trend(by: str) -> None:
    rows = data.read_or_stop(
        queries.error_trend, start=tr.start, end=tr.end, by=by, interval=interval
    )
    if not rows:
        st.info("No errors in this range.")
        return
    frame = pd.DataFrame(rows)
    frame["bucket"] = pd.to_datetime(frame["bucket"], utc=True).dt.tz_convert(tz)
    st.bar_chart(frame.pivot_table(index="bucket", columns="key", values="count", fill_value=0))


by_level, by_service = st.tabs(["By level", "By service"])
with by_level:
    _trend("level")
with by_service:
    _trend("service")

st.subheader("Groups")
left, mid, right, sort_col = st.columns(4)
status = left.selectbox("Status", [ALL, *ErrorGroupStatus], key="errors_status")
services = data.read_or_stop(queries.list_services)
service = mid.selectbox("Service", [ALL, *services], key="errors_service")
level = right.selectbox("Level", [ALL, *ErrorLevel], key="errors_level")
sort = sort_col.selectbox("Sort by", list(SORTS), key="errors_sort")
groups = data.read_or_stop(
    queries.list_groups,
    start=tr.start,
    end=tr.end,
    status=None if status == ALL else status,
    service=None if service == ALL else service,
    level=None if level == ALL else level,
    sort=SORTS[sort],
)
if not groups:
    st.info("No error group matches in this range.")
    st.stop()
table = pd.DataFrame(groups)
table["services"] = table["services"].map(", ".join)
for column in ("first_seen", "last_seen"):
    table[column] = pd.to_datetime(table[column], utc=True).dt.tz_convert(tz)
st.dataframe(
    table[
        [
            "id",
            "severity",
            "status",
            "error_type",
            "message_template",
            "services",
            "level",
            "events",
            "event_count",
            "user_count",
            "organization_count",
            "first_seen",
            "last_seen",
        ]
    ],
    hide_index=True,
    height=widgets.table_height(len(table)),
    column_config={
        "message_template": "message",
        "events": "events in range",
        "event_count": "events ever",
        "user_count": "users",
        "organization_count": "organizations",
    },
)

labels = {g["id"]: f"#{g['id']} {g['error_type']}: {g['message_template'][:80]}" for g in groups}
group_id = st.selectbox("Group", list(labels), format_func=labels.__getitem__, key="errors_group")
detail = data.read_or_stop(queries.group_detail, group_id=group_id, start=tr.start, end=tr.end)
if detail is None:
    st.warning("This group no longer exists.")
    st.stop()
group, latest = detail["group"], detail["latest_event"]
st.markdown(
    f"{widgets.severity_badge(group['severity'])} **{fmt.md_escape(group['status'])}** · "
    f"{fmt.count(group['event_count'])} events · {fmt.count(group['user_count'])} users · "
    f"{fmt.count(group['organization_count'])} organizations"
)
st.text(f"{group['error_type']}: {group['message_template']}")
st.caption(
    f"First seen {group['first_seen'].astimezone(tz):%Y-%m-%d %H:%M}, last seen "
    f"{group['last_seen'].astimezone(tz):%Y-%m-%d %H:%M} · "
    f"services: {fmt.md_escape(', '.join(group['services']))}"
    + (
        f" · resolved in {fmt.md_escape(group['resolved_in_release'])}"
        if group["resolved_in_release"]
        else ""
    )
    + (" · recovered on its own" if group["recovered_at"] else "")
)
stack_tab, occ_tab, people_tab, tags_tab, related_tab, history_tab = st.tabs(
    ["Stack trace", "Occurrences", "Users & orgs", "Tags", "Related", "History"]
)
with stack_tab:
    st.code(
        (latest or {}).get("stack_trace") or (latest or {}).get("message") or "", language="text"
    )
    if latest:  # the latest event's trace, its logs, and its service's logs around it
        trace_links.error_links(latest["trace_id"], latest["time"], latest["service_name"])
with occ_tab:
    st.dataframe(pd.DataFrame(detail["occurrences"]), hide_index=True)
with people_tab:
    users_col, orgs_col = st.columns(2)
    users_col.dataframe(pd.DataFrame(detail["users"]), hide_index=True)
    orgs_col.dataframe(pd.DataFrame(detail["organizations"]), hide_index=True)
with tags_tab:
    st.dataframe(pd.DataFrame(detail["tags"]), hide_index=True)
with related_tab:
    if detail["related"]:
        related = pd.DataFrame(detail["related"])
        related["reasons"] = related["reasons"].map("; ".join)
        st.dataframe(
            related[["id", "error_type", "message_template", "services", "reasons"]],
            hide_index=True,
        )
    else:
        st.caption(
            "No related errors: no shared trace or request ids, no burst in another service."
        )
with history_tab:
    st.dataframe(pd.DataFrame(detail["history"]), hide_index=True)

ui_actions.show_flash("errors_flash")
if auth.has_role(Role.RESPONDER):
    user = auth.require_role(Role.RESPONDER)
    release = st.text_input("Fixed in release (optional, for resolve)", key="errors_release")
    actions = [a for a, (allowed, _) in TRANSITIONS.items() if group["status"] in allowed]
    for slot, action in zip(st.columns(len(actions)), actions, strict=True):
        if slot.button(action.capitalize(), key=f"errors_{action}"):
            ui_actions.run(
                "errors_flash",
                partial(
                    change_group_status,
                    group_id=group_id,
                    action=action,
                    actor=user_actor(user.username),
                    now=clock.now(),
                    release=release.strip() or None,
                ),
                done=f"Group #{group_id}: {action} done.",
                failed=f"Group #{group_id}: {action} refused: ",
                refused=(LookupError, ValueError),
            )
