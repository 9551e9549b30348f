"""Errors: the trend by level and service, a search over groups, and one group's page like
Sentry's issue page — its event with the exception chain, frames, breadcrumbs, request, user
and tags, the event list with older/newer, tag value distributions, the trend, releases,
assignee, related groups and history.

Everything selected lives in the URL: `?group=12&event=<32 hex>&tab=Tags&q=is:regressed`
(plus the filters and the time range), so a link opens exactly that group and event, and the
browser's back and forward buttons step through what was opened.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from functools import partial
from typing import Any

import pandas as pd
import streamlit as st

from monitoring_core import clock
from monitoring_core.audit import user_actor
from monitoring_core.enums import ErrorGroupStatus, ErrorLevel, Role
from monitoring_core.errors import event_view, group_actions, group_reads, queries
from monitoring_core.errors.correlation import related_groups
from monitoring_core.errors.rules import TRANSITIONS
from monitoring_core.errors.search import SearchError, parse_search
from monitoring_core.roles import PermissionDenied
from ui import actions as ui_actions
from ui import auth, data, fmt, trace_links, url_state, widgets
from ui import error_group as view
from ui.resource_charts import bar_spec

user = auth.require_role(Role.VIEWER, organisations=True)
# A user limited to organisations reads their events only (row-level security); a group's
# stored totals ("ever") count every organisation's, so they are not shown to them, and they
# change no group (groups are shared by every organisation), whatever their role.
limited = user.organization_ids is not None
responder = auth.has_role(Role.RESPONDER) and not limited
tr, tz = widgets.current_time_range(), data.business_tz()
now = widgets.current_now()
interval = widgets.chart_interval(tr)
PAGE = "pages/errors.py"
FLASH = "errors_flash"
ALL = "All"
TABS = ["Event", "Events", "Tags", "People", "Related", "History"]
GOTO_TAB = "_errors_goto_tab"
SORTS = {
    "Last seen": "last_seen",
    "Events in range": "events",
    "Users": "users",
    "Severity": "severity",
    "First seen": "first_seen",
}
STATUS_BADGES = {
    "unresolved": ":orange-badge[Unresolved]",
    "regressed": ":red-badge[Regressed]",
    "resolved": ":green-badge[Resolved]",
    "ignored": ":gray-badge[Ignored]",
}
SEARCH_HELP = (
    "Words match the error type and message. Filters: `is:unresolved|regressed|resolved|"
    "ignored|assigned|unassigned`, `type:KeyError` (`*` wildcard), `message:text`, "
    "`service:web`, `level:frontend`, `severity:high`, `assigned:me|none|name`, and any tag "
    '`key:value` — `release:web@5.2.0`, `environment:production`, `browser:"Chrome 131"`, '
    "`user:user-7`; `!key:value` excludes."
)


def _words(name: object) -> str:
    return event_view.label(str(name)) if name else "—"


def _summary_cards() -> None:
    stats = data.read_or_stop(
        queries.error_analytics, start=tr.start, end=tr.end, interval=interval, group_by="level"
    )
    statuses = data.read_or_stop(group_reads.group_status_counts, start=tr.start, end=tr.end)
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
        widgets.kpi_card(
            "Regressed groups",
            fmt.count(statuses["regressed"]),
            help="Groups seen in this range whose status is regressed: resolved, then seen "
            f"again. {fmt.plural(stats['regressions'], 'regression')} happened in this range "
            "(search `is:regressed` to list them).",
        )


def _trend(by: str) -> None:
    rows = data.read_or_stop(
        queries.error_trend, start=tr.start, end=tr.end, by=by, interval=interval
    )
    if not rows:
        st.info("No errors in this range.")
        return
    frame = pd.DataFrame(rows)
    # the business time zone's wall clock, without a zone: Vega-Lite draws it as it is (UTC
    # scale), on the 24-hour clock (bar_spec); each bar as wide as its bucket
    start = pd.to_datetime(frame["bucket"], utc=True).dt.tz_convert(tz).dt.tz_localize(None)
    bars = pd.DataFrame(
        {
            "time": start,
            "until": start + interval,
            "series": frame["key"].map(_words) if by == "level" else frame["key"],
            "value": frame["count"],
        }
    )
    legend = "Layer" if by == "level" else "Service"
    st.vega_lite_chart(bars, bar_spec("Errors", legend), width="stretch")


def _group_table(groups: list[dict[str, Any]]) -> Any:
    table = pd.DataFrame(groups)
    shown = pd.DataFrame(
        {
            "#": table["id"],
            "Error": table["error_type"],
            "Message": table["message_template"],
            "Events in range": table["events"],
            "Users ever": table["user_count"],
            "Last seen": pd.to_datetime(table["last_seen"], utc=True).dt.tz_convert(tz),
            "Status": table["status"].map(_words),
            "Severity": table["severity"].map(_words),
            "Assignee": table["assigned_to"].fillna("—"),
            "Services": table["services"].map(", ".join),
            "Layer": table["level"].map(_words),
            "Events ever": table["event_count"],
            "First seen": pd.to_datetime(table["first_seen"], utc=True).dt.tz_convert(tz),
        }
    )
    if limited:
        shown = shown.drop(columns=["Users ever", "Events ever"])
    moment = st.column_config.DatetimeColumn(format="ddd D MMM HH:mm")
    return st.dataframe(
        shown,
        hide_index=True,
        height=widgets.table_height(len(shown)),
        column_config={
            "#": st.column_config.NumberColumn(format="%d"),
            "Message": st.column_config.TextColumn(width="large"),
            "First seen": moment,
            "Last seen": moment,
        },
        on_select="rerun",
        selection_mode="single-row",
        key="errors_groups_table",
    )


def _open_group(group_id: int) -> None:
    _go(group=str(group_id), event=None, tab=None)


def _list_view() -> None:
    _summary_cards()
    # One trend at a time (`?by=service`): st.tabs drew and queried both charts on every run.
    by = url_state.select(
        st.segmented_control,
        "Trend by",
        ["level", "service"],
        param="by",
        key="errors_trend_by",
        format_func={"level": "By layer", "service": "By service"}.__getitem__,
        label_visibility="collapsed",
        required=True,
    )
    _trend(by or "level")
    st.subheader("Groups")
    query = url_state.text(
        "Search",
        param="q",
        max_chars=500,
        key="errors_search",
        placeholder='e.g. CardError is:regressed release:payments@2.3.2 browser:"Chrome 131"',
        help=SEARCH_HELP,
    )
    try:
        search = parse_search(query, me=user.username)
    except SearchError as exc:
        st.error(f"The search cannot be read: {fmt.md_escape(exc)}.", icon=":material/search:")
        st.stop()
    left, mid, right, sort_col = st.columns(4)
    status = url_state.select(
        left.selectbox,
        "Status",
        [ALL, *ErrorGroupStatus],
        param="status",
        key="errors_status",
        format_func=lambda s: s if s == ALL else _words(s),
    )
    services = data.read_or_stop(queries.list_services)
    service = url_state.select(
        mid.selectbox, "Service", [ALL, *services], param="service", key="errors_service"
    )
    level = url_state.select(
        right.selectbox,
        "Layer",
        [ALL, *ErrorLevel],
        param="level",
        key="errors_level",
        format_func=lambda s: s if s == ALL else _words(s),
    )
    sort = url_state.select(
        sort_col.selectbox, "Sort by", list(SORTS), param="sort", key="errors_sort"
    )
    groups = data.read_or_stop(
        queries.list_groups,
        start=tr.start,
        end=tr.end,
        status=None if status == ALL else status,
        service=None if service == ALL else service,
        level=None if level == ALL else level,
        sort=SORTS[sort or "Last seen"],
        search=None if search.empty else search,
    )
    if not groups:
        st.info("No error group matches in this range.")
        return
    st.caption(
        f"{fmt.plural(len(groups), 'group')} · pick a row (or a group below) to open it; "
        "its address can be shared."
    )
    picked = _group_table(groups)
    rows = picked.selection.rows if picked is not None else []
    if rows:
        _open_group(int(groups[rows[0]]["id"]))
    labels = {
        g["id"]: f"#{g['id']} {g['error_type']}: {g['message_template'][:80]}" for g in groups
    }
    chosen = st.selectbox(
        "Open a group",
        list(labels),
        index=None,
        format_func=labels.__getitem__,
        placeholder="Choose a group…",
        key="errors_open_group",
    )
    if chosen is not None:
        _open_group(int(chosen))


def _act(label: str, work: Callable[[Any], Any], done: str) -> None:
    ui_actions.run(
        FLASH,
        work,
        done=done,
        failed=f"{label} refused: ",
        refused=(LookupError, ValueError, PermissionDenied),
    )


def _actions(group: Mapping[str, Any]) -> None:
    """Resolve / ignore / reopen and assign: the rerun keeps `?group`, `?event` and `?tab`."""
    group_id = int(group["id"])
    actor = user_actor(user.username)
    with st.container(border=True):
        release_col, assign_col = st.columns(2)
        release = release_col.text_input(
            "Fixed in release (optional, for resolve)", key="errors_release"
        )
        available = [a for a, (allowed, _) in TRANSITIONS.items() if group["status"] in allowed]
        row = st.container(horizontal=True)
        for action in available:
            if row.button(action.capitalize(), key=f"errors_{action}"):
                _act(
                    action.capitalize(),
                    partial(
                        group_actions.act_on_group,
                        group_id=group_id,
                        action=action,
                        actor=actor,
                        role=user.role.value,
                        now=clock.now(),
                        release=release.strip() or None,
                    ),
                    f"Group #{group_id}: {action} done.",
                )
        if user.organization_ids is not None:  # the scoped role cannot read the people
            return
        _assign(group, assign_col, actor)


def _assign(group: Mapping[str, Any], assign_col: Any, actor: str) -> None:
    """The assignee picker: responders and admins (assign_group checks the role again)."""
    group_id = int(group["id"])
    people = data.read_or_stop(group_actions.assignable_users)
    current = group["assigned_to"]
    options: list[str | None] = [None, *people]
    if current is not None and current not in options:
        options.append(current)
    assignee = assign_col.selectbox(
        "Assignee",
        options,
        index=options.index(current),
        format_func=lambda name: "Unassigned" if name is None else str(name),
        key=f"errors_assignee_{group_id}",
    )
    if assignee != current and assign_col.button("Assign", key="errors_assign"):
        _act(
            "Assign",
            lambda conn: group_actions.assign_group(
                conn,
                group_id=group_id,
                assignee=assignee,
                actor=actor,
                role=user.role.value,
                now=clock.now(),
            ),
            f"Group #{group_id}: "
            + (f"assigned to {fmt.md_escape(assignee)}." if assignee else "unassigned."),
        )


def _per(step: timedelta) -> str:
    seconds = int(step.total_seconds())
    if seconds < 3600:
        return f"{seconds // 60} minutes"
    if seconds < 86400:
        return "hour" if seconds == 3600 else f"{seconds // 3600} hours"
    return "day"


def _go(**params: str | None) -> None:
    """Open another selection: the URL changes (a history entry, so back returns here)."""
    for name, value in params.items():
        url_state.put(name, value)
    if "tab" in params:
        st.session_state[GOTO_TAB] = params["tab"] or TABS[0]
    st.rerun()


def _back_to_list() -> None:
    if st.button("All error groups", icon=":material/arrow_back:", key="errors_back"):
        _go(group=None, event=None, tab=None)


def _header(info: Mapping[str, Any]) -> None:
    group = info["group"]
    _back_to_list()
    st.markdown(
        f"{widgets.severity_badge(group['severity'])} "
        f"{STATUS_BADGES.get(group['status'], fmt.md_escape(group['status']))} "
        f"· #{group['id']} · {fmt.md_escape(_words(group['level']))} · "
        f"{fmt.md_escape(', '.join(group['services']))}"
    )
    st.subheader(f"{fmt.md_escape(group['error_type'])}")
    st.text(group["message_template"])
    if group["culprit"]:
        st.caption(fmt.md_code(group["culprit"]))
    trend = [n for _, n in info["trend"]]
    per = _per(info["step"])
    cards = st.columns([1, 1, 2])
    with cards[0]:
        st.metric(
            "Events in range",
            fmt.count(info["events"]),
            chart_data=trend,
            chart_type="bar",
            border=True,
            help=f"Bars: events per {per} over the range."
            + ("" if limited else f" {fmt.count(group['event_count'])} events ever."),
        )
    with cards[1]:
        widgets.kpi_card(
            "Users in range",
            fmt.count(info["users"]),
            help=None
            if limited
            else f"{fmt.count(group['user_count'])} users and "
            f"{fmt.count(group['organization_count'])} organizations ever.",
        )
    with cards[2]:
        for label, moment, release in (
            ("First seen", group["first_seen"], info["first_release"]),
            ("Last seen", group["last_seen"], info["last_release"]),
        ):
            st.markdown(
                f"**{label}** {view.ago(moment, now)} · {view.when(moment, tz, now)}  \n"
                + (f"in release {fmt.md_code(release)}" if release else "no release named")
            )
    notes = [
        f"Assigned to **{fmt.md_escape(group['assigned_to'])}**"
        if group["assigned_to"]
        else "Unassigned"
    ]
    if group["status"] == "resolved" and group["resolved_at"]:
        notes.append(
            f"resolved {view.when(group['resolved_at'], tz, now)}"
            + (
                f" by {fmt.md_escape(fmt.actor(group['resolved_by']))}"
                if group["resolved_by"]
                else ""
            )
            + (
                f" in {fmt.md_escape(group['resolved_in_release'])}"
                if group["resolved_in_release"]
                else ""
            )
        )
    if group["status"] == "regressed" and group["regressed_at"]:
        notes.append(f"regressed {view.when(group['regressed_at'], tz, now)}")
    if group["recovered_at"]:
        notes.append(f"quiet since {view.when(group['recovered_at'], tz, now)} (recovered)")
    st.markdown(" · ".join(notes))
    for incident in info["incidents"]:
        st.page_link(
            "pages/incidents.py",
            label=fmt.md_escape(
                f"Incident {incident['incident_number']}: {incident['title']} "
                f"({_words(incident['status'])})"
            ),
            icon=":material/emergency:",
            query_params={"incident": str(incident["id"])},
        )


def _nav(found: Mapping[str, Any]) -> None:
    """Oldest / Older / Newer / Newest: each puts the event in the URL (back/forward work)."""
    row = st.container(horizontal=True)
    names = (("oldest", "Oldest"), ("older", "Older"), ("newer", "Newer"), ("newest", "Newest"))
    icons = {
        "oldest": ":material/first_page:",
        "older": ":material/chevron_left:",
        "newer": ":material/chevron_right:",
        "newest": ":material/last_page:",
    }
    for name, label in names:
        target = found[name]
        if row.button(label, icon=icons[name], disabled=target is None, key=f"errors_{name}"):
            _go(event=target)


def _event_tab(group_id: int) -> None:
    asked = url_state.get("event")
    found = data.read_or_stop(group_reads.group_event, group_id=group_id, event_id=asked)
    if found is None:
        st.info("This group has no stored events (they may have passed the retention period).")
        return
    if found["asked_missing"]:
        st.warning(
            f"Event {fmt.md_code(asked)} is not one of this group's events; showing the newest."
        )
    event = found["event"]
    _nav(found)
    st.caption(
        f"Event {fmt.md_code(event['event_id'])} · {view.when(event['time'], tz, now)} "
        f"({view.ago(event['time'], now)}) · {fmt.md_escape(event['service_name'])}"
        + (f" · release {fmt.md_escape(event['release'])}" if event["release"] else "")
        + (f" · {fmt.md_escape(event['environment'])}" if event["environment"] else "")
    )
    trace_links.error_links(event["trace_id"], event["time"], event["service_name"])
    context = event["context"] if isinstance(event["context"], dict) else {}
    st.markdown("#### Exception")
    show_library = st.toggle("Show library frames", key="errors_library_frames")
    view.exception_chain(event, show_library=show_library)
    if event["stack_trace"]:
        with st.expander("Stack trace as text"):
            st.code(event["stack_trace"], language="text")
    st.markdown("#### Breadcrumbs")
    view.breadcrumbs_table(event_view.breadcrumbs(context), tz, event["time"])
    st.markdown("#### Request")
    view.request_section(context)
    people, tags_col = st.columns(2)
    with people:
        st.markdown("#### User")
        view.key_values(
            [
                (label, str(event[column]))
                for label, column in (
                    ("User", "user_id"),
                    ("Organization", "organization_id"),
                    ("Session", "session_id"),
                )
                if event[column]
            ]
            or [("User", "not sent")],
            key="Field",
        )
        st.markdown("#### Release")
        view.key_values(
            [
                ("Release", event["release"] or "—"),
                ("Environment", event["environment"] or "—"),
                ("Service", event["service_name"]),
                ("Endpoint", event["endpoint_path"] or "—"),
                ("Request ID", event["request_id"] or "—"),
                ("Trace ID", event["trace_id"] or "—"),
            ],
            key="Field",
        )
    with tags_col:
        st.markdown("#### Tags")
        tags = event.get("all_tags") or {}
        view.key_values(sorted((str(k), str(v)) for k, v in tags.items()), key="Tag")
    extra = event_view.other_context(context)
    if extra:
        st.markdown("#### Context")
        widgets.small_table(pd.DataFrame(extra, columns=["Section", "Name", "Value"]))


def _events_tab(group_id: int) -> None:
    events = data.read_or_stop(
        group_reads.group_events, group_id=group_id, start=tr.start, end=tr.end, limit=200
    )
    if not events:
        st.info("No events of this group in this range.")
        return
    frame = pd.DataFrame(events)
    shown = pd.DataFrame(
        {
            "Time": pd.to_datetime(frame["time"], utc=True).dt.tz_convert(tz),
            "Event": frame["event_id"],
            "Message": frame["message"],
            "Release": frame["release"].fillna("—"),
            "Environment": frame["environment"].fillna("—"),
            "User": frame["user_id"].fillna("—"),
            "Service": frame["service_name"],
        }
    )
    st.caption(f"The newest {fmt.plural(len(events), 'event')} in this range; pick one to open it.")
    picked = st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        column_config={"Time": st.column_config.DatetimeColumn(format="ddd D MMM HH:mm:ss")},
        on_select="rerun",
        selection_mode="single-row",
        key="errors_events_table",
    )
    rows = picked.selection.rows if picked is not None else []
    chosen = events[rows[0]]["event_id"] if rows else None
    labels = {e["event_id"]: f"{view.when(e['time'], tz, now)} · {e['event_id']}" for e in events}
    pick = st.selectbox(
        "Open an event",
        list(labels),
        index=None,
        format_func=labels.__getitem__,
        placeholder="Choose an event…",
        key="errors_open_event",
    )
    chosen = chosen or pick
    if chosen:
        _go(event=chosen, tab=None)  # the Event tab


def _tags_tab(group_id: int) -> None:
    rows = data.read_or_stop(
        group_reads.group_tags, group_id=group_id, start=tr.start, end=tr.end, per_key=5
    )
    if not rows:
        st.info("No events of this group in this range, so no tags.")
        return
    st.caption(
        "The most common values of each tag among this group's events in the range: tags the "
        "events were sent with, and environment, release, service, user, browser, OS and "
        "runtime taken from each event."
    )
    columns = st.columns(2)
    for i, (key, part) in enumerate(pd.DataFrame(rows).groupby("key", sort=False)):
        with columns[i % 2]:
            _tag_values(str(key), part)


def _tag_values(key: str, part: pd.DataFrame) -> None:
    """One tag: its top values with their share of the tagged events."""
    first = part.iloc[0]
    more = int(first["distinct"]) - len(part)
    st.markdown(
        f"**{fmt.md_escape(event_view.label(key))}** · "
        f"{fmt.plural(int(first['distinct']), 'value')} over "
        f"{fmt.plural(int(first['total']), 'event')}"
        + (f" ({more} more not shown)" if more > 0 else "")
    )
    st.dataframe(
        pd.DataFrame(
            {"Value": part["value"], "Events": part["events"], "Share": part["share"] * 100}
        ),
        hide_index=True,
        width="stretch",
        column_config={
            "Share": st.column_config.ProgressColumn(format="%.0f %%", min_value=0, max_value=100)
        },
    )


def _people_tab(group_id: int) -> None:
    found = data.read_or_stop(
        group_reads.group_people, group_id=group_id, start=tr.start, end=tr.end
    )
    users_col, orgs_col = st.columns(2)
    for column, (name, title) in zip(
        (users_col, orgs_col), (("users", "User"), ("organizations", "Organization")), strict=True
    ):
        with column:
            rows = found[name]
            if not rows:
                st.caption(f"No {name} named in this range.")
                continue
            frame = pd.DataFrame(rows)
            st.dataframe(
                pd.DataFrame(
                    {
                        title: frame["value"],
                        "Events": frame["events"],
                        "Last seen": pd.to_datetime(frame["last_seen"], utc=True).dt.tz_convert(tz),
                    }
                ),
                hide_index=True,
                width="stretch",
                column_config={
                    "Last seen": st.column_config.DatetimeColumn(format="ddd D MMM HH:mm")
                },
            )


def _related_tab(group_id: int) -> None:
    related = data.read_or_stop(related_groups, group_id=group_id, start=tr.start, end=tr.end)
    if not related:
        st.caption(
            "No related errors: no shared trace or request ids, no burst in another service."
        )
        return
    for item in related:
        title = f"#{item['id']} {item['error_type']}: {item['message_template'][:80]}"
        if st.button(
            fmt.md_escape(title), icon=":material/link:", key=f"errors_related_{item['id']}"
        ):
            _go(group=str(item["id"]), event=None, tab=None)
        st.caption(fmt.md_escape("; ".join(item["reasons"])))


def _change_words(change: Mapping[str, Any]) -> str:
    details = change["details"] if isinstance(change["details"], dict) else {}
    kind = str(change["kind"])
    if kind in ("assigned", "unassigned"):
        return f"assigned to {details.get('to')}" if details.get("to") else "unassigned"
    words = {"new": "first seen", "reopen": "reopened", "resolve": "resolved"}
    words |= {"ignore": "ignored", "regressed": "regressed", "recovered": "went quiet"}
    return words.get(kind, _words(kind).lower())


def _history_tab(group_id: int) -> None:
    history = data.read_or_stop(group_reads.group_history, group_id=group_id)
    if not history:
        st.caption("No history yet.")
        return
    widgets.small_table(
        pd.DataFrame(
            {
                "When": [view.when(h["time"], tz, now) for h in history],
                "What": [_change_words(h) for h in history],
                "Who": [fmt.actor(h["actor"], missing="the system") for h in history],
                "Release": [h["release"] or "" for h in history],
            }
        )
    )


def _group_view(group_id: int) -> None:
    info = data.read_or_stop(
        group_reads.group_header, group_id=group_id, start=tr.start, end=tr.end
    )
    if info is None:
        st.warning(f"There is no error group #{group_id} (it may have been deleted).")
        _back_to_list()
        return
    _header(info)
    ui_actions.show_flash(FLASH)
    if responder:
        _actions(info["group"])
    if goto := st.session_state.pop(GOTO_TAB, None):
        st.session_state["url_tab"] = goto  # before url_state draws the control
    tab = url_state.tabs(TABS, param="tab")
    draw: dict[str, Callable[[int], None]] = {
        "Event": _event_tab,
        "Events": _events_tab,
        "Tags": _tags_tab,
        "People": _people_tab,
        "Related": _related_tab,
        "History": _history_tab,
    }
    draw[tab](group_id)


st.title("Errors")
asked_group = url_state.get_int("group")
if asked_group is None:
    if url_state.get("group"):
        st.warning(f"{fmt.md_code(url_state.get('group'))} is not an error group number.")
    ui_actions.show_flash(FLASH)
    _list_view()
else:
    _group_view(asked_group)
