"""On-call widgets: "On call now / next" (Overview, Alerts), a responder's "cover a shift"
form, and Settings → Schedules (admins: schedules with a 4-week calendar, overrides, default
routes, people's time zones and contact methods). Every change goes through
`monitoring_core.oncall.service` (role check, audit row), as the API's do.

Names are user data: shown through `fmt.md_escape` or inside dataframes, never as markup.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from monitoring_core import accounts, clock
from monitoring_core.audit import user_actor
from monitoring_core.enums import Role, Severity
from monitoring_core.notify.channels import ChannelInvalid, list_channels
from monitoring_core.oncall import queries, service, store
from monitoring_core.oncall.validate import OncallInvalid, OncallNotFound
from monitoring_core.roles import PermissionDenied
from ui import actions as ui_actions
from ui import data, fmt

__all__ = [
    "calendar_frame",
    "cover_allowed",
    "cover_form",
    "layer_frame",
    "on_call_block",
    "override_frame",
    "schedules_section",
]

_REFUSED = (OncallInvalid, OncallNotFound, store.OncallInUse, PermissionDenied, ChannelInvalid)
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
WEEKDAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
CALENDAR_DAYS = 28


def on_call_block(now: datetime, tz: ZoneInfo) -> None:
    """Who is on call now and who is next, per schedule, and anyone on call with no way to
    reach them."""
    try:
        summaries = data.read(queries.on_call_now_and_next, now=now, tz=tz)
        people = data.read(store.list_people)
    except data.DatabaseProblem:
        st.caption("On call: cannot be read right now.")
        return
    if not summaries:
        st.caption("On call: no schedule yet (Settings → Schedules); alerts follow their rules.")
        return
    reachable = {p["id"]: any(c["is_enabled"] for c in p["contacts"]) for p in people}
    lines = []
    for item in summaries:
        current, following = item["now"], item["next"]
        who = fmt.md_escape(current["username"] or "nobody")
        line = f"**{fmt.md_escape(item['name'])}** · on call now: **{who}**"
        if following is not None:
            nxt = fmt.md_escape(following["username"] or "nobody")
            until = fmt.md_escape(fmt.when(current["ends_at"], tz, now))
            line += f" until {until} · next: **{nxt}**"
        if current["user_id"] is not None and not reachable.get(current["user_id"]):
            line += " · :orange[no enabled contact method: pages to this rota reach nobody]"
        lines.append(line)
    st.markdown("  \n".join(lines))


def cover_form(flash: str, me: accounts.User, now: datetime, tz: ZoneInfo) -> None:
    """A responder's own on-call details (time zone, contact methods) and putting themselves
    on call for a while (a swap, a colleague's holiday)."""
    _my_details(flash, me)
    schedules = data.read(store.list_schedules)
    if not schedules:
        return
    names = {s["id"]: s["name"] for s in schedules}
    with st.expander("Cover a shift yourself"), st.form("cover_shift"):
        picked = st.selectbox("Schedule", list(names), format_func=lambda i: names[i])
        day = st.date_input("From (day)", now.astimezone(tz).date(), key="cover_day")
        at = st.time_input("From (time, business time zone)", time(9, 0), key="cover_time")
        hours = st.number_input("Hours", 1, 24 * 14, 24, key="cover_hours")
        reason = st.text_input("Reason", key="cover_reason")
        if st.form_submit_button("Put me on call"):
            starts = datetime.combine(day, at, tzinfo=tz)
            body = {"user_id": me.id, "starts_at": starts.isoformat(),
                    "ends_at": (starts + timedelta(hours=int(hours))).isoformat(),
                    "reason": reason}  # fmt: skip
            _do(flash, me, service.add_override, "You are on call for that time",
                schedule_id=int(picked or 0), body=body)  # fmt: skip


def _my_details(flash: str, me: accounts.User) -> None:
    mine = next((p for p in data.read(store.list_people) if p["id"] == me.id), None)
    if mine is None:
        return
    with st.expander("My contact methods and time zone"), st.form("my_oncall"):
        for contact in mine["contacts"]:
            state = "" if contact["is_enabled"] else " (disabled)"
            st.markdown(f"{fmt.md_escape(contact['name'])} {fmt.md_code(contact['url'])}{state}")
        label = st.text_input("Label", "phone", key="my_label")
        url = st.text_input("Apprise URL (e.g. ntfy://…, mailto://…)", key="my_url")
        zone = st.text_input("Time zone", mine["time_zone"] or "", key="my_tz")
        add, set_tz = st.columns(2)
        if add.form_submit_button("Add contact method"):
            _do(flash, me, service.add_contact_method, "Contact method added", user_id=me.id,
                body={"label": label, "url": url})  # fmt: skip
        if set_tz.form_submit_button("Set time zone"):
            _do(flash, me, service.set_time_zone, "Time zone set", user_id=me.id,
                time_zone=zone.strip() or None)  # fmt: skip


def _do(flash: str, me: accounts.User, work: Any, done: str, **kwargs: Any) -> None:
    actor, role = user_actor(me.username), me.role.value
    ui_actions.run(
        flash,
        lambda conn: work(conn, actor=actor, role=role, now=clock.now(), **kwargs),
        done=done,
        refused=_REFUSED,
        failed="Not saved: ",
    )


def calendar_frame(spans: list[dict[str, Any]], first_day: date, tz: ZoneInfo) -> pd.DataFrame:
    """Four weeks, Monday first: each cell the day and who is on call ("ann → ben 10:00")."""
    days = queries.calendar_days(spans, first_day=first_day, days=CALENDAR_DAYS, tz=tz)
    rows = []
    for week in range(0, CALENDAR_DAYS, 7):
        cells = {}
        for entry in days[week : week + 7]:
            people = entry["people"]
            text = people[0][0] + "".join(f" → {name} {at}" for name, at in people[1:])
            cells[WEEKDAYS[entry["day"].weekday()]] = f"{_day(entry['day'])} · {text}"
        rows.append({"Week of": _day(days[week]["day"]), **cells})
    return pd.DataFrame(rows)


def _day(day: date) -> str:
    return f"{day.day} {day:%b}"


def _clock(at: time | str) -> str:
    return at.strftime("%H:%M") if isinstance(at, time) else str(at)[:5]


def _handoff(layer: dict[str, Any]) -> str:
    at = _clock(layer["handoff_time"])
    if layer["rotation"] == "daily":
        return f"every day at {at}"
    return f"{WEEKDAY_NAMES[layer['handoff_weekday']]} {at}"


def layer_frame(layers: list[dict[str, Any]], names: dict[int, str]) -> pd.DataFrame:
    """A schedule's layers as read: rotation, handoff day and time, first shift, people in
    turn and the days it covers in words (no weekday numbers or snake_case headers)."""
    rows = [
        {
            "Layer": layer["name"] or f"Level {layer['level']}",
            "Level": layer["level"],
            "Rotation": fmt.label(layer["rotation"]),
            "Handoff": _handoff(layer),
            "First shift": f"{_day(layer['starts_on'])} {layer['starts_on']:%Y}",
            "People, in turn": ", ".join(names.get(m, f"#{m}") for m in layer["members"]),
            "Days": ", ".join(WEEKDAYS[d] for d in sorted(layer["active_days"])) or "Every day",
        }
        for layer in layers
    ]
    columns = ["Layer", "Level", "Rotation", "Handoff", "First shift", "People, in turn", "Days"]
    return pd.DataFrame(rows, columns=columns)


def override_frame(overrides: list[dict[str, Any]], tz: ZoneInfo, now: datetime) -> pd.DataFrame:
    """A schedule's overrides: who, from and until when (`fmt.when`), why and who added it."""
    rows = [
        {
            "#": o["id"],
            "Person": o["username"],
            "From": fmt.when(o["starts_at"], tz, now),
            "Until": fmt.when(o["ends_at"], tz, now),
            "Reason": o["reason"] or "",
            "Added by": fmt.actor(o["created_by"]),
        }
        for o in overrides
    ]
    return pd.DataFrame(rows, columns=["#", "Person", "From", "Until", "Reason", "Added by"])


def schedules_section(flash: str, me: accounts.User, now: datetime, tz: ZoneInfo) -> None:
    """Settings → Schedules (the page is admins')."""
    st.subheader("Schedules")
    st.caption(
        f"Handoffs are wall-clock times in the business time zone ({tz.key}); the higher layer "
        "wins where it covers; an override wins over every layer."
    )
    people = data.read_or_stop(store.list_people)
    names = {p["id"]: p["username"] for p in people if p["is_active"]}
    local_today = now.astimezone(tz).date()
    monday = local_today - timedelta(days=local_today.weekday())
    start = datetime.combine(monday, time(0), tzinfo=tz)
    for schedule in data.read_or_stop(store.list_schedules):
        _schedule(flash, me, schedule, names, start, now, tz)
    _new_schedule_form(flash, me, names, local_today)
    _routes(flash, me, names)
    _people(flash, me, people, tz)


def _schedule(
    flash: str,
    me: accounts.User,
    schedule: dict[str, Any],
    names: dict[int, str],
    start: datetime,
    now: datetime,
    tz: ZoneInfo,
) -> None:
    sid = schedule["id"]
    st.markdown(
        f"**{fmt.md_escape(schedule['name'])}** (id {sid}) {fmt.md_escape(schedule['description'])}"
    )
    st.dataframe(layer_frame(schedule["layers"], names), hide_index=True)
    end = start + timedelta(days=CALENDAR_DAYS)
    spans = data.read(queries.schedule_spans, schedule_id=sid, start=start, end=end, tz=tz)
    st.dataframe(calendar_frame(spans, start.date(), tz), hide_index=True)
    overrides = data.read(store.overrides_of, schedule_id=sid, since=start)
    if overrides:
        st.dataframe(override_frame(overrides, tz, now), hide_index=True)
    with st.form(f"override_{sid}"):
        cols = st.columns(4)
        who = cols[0].selectbox("Person", list(names), format_func=lambda i: names[i])
        day = cols[1].date_input("From", start.date() + timedelta(days=7), key=f"ov_day{sid}")
        hours = cols[2].number_input("Hours", 1, 24 * 31, 24, key=f"ov_hours{sid}")
        reason = cols[3].text_input("Reason", key=f"ov_reason{sid}")
        labels = {0: "None"} | {
            o["id"]: f"#{o['id']} · {o['username']} from {fmt.when(o['starts_at'], tz, now)}"
            for o in overrides
        }
        remove = st.selectbox("Override to remove", list(labels), format_func=labels.__getitem__,
                              key=f"ov_rm{sid}")  # fmt: skip
        add, drop = st.columns(2)
        if add.form_submit_button("Add override"):
            starts = datetime.combine(day, time(9, 0), tzinfo=tz)
            body = {"user_id": who, "starts_at": starts.isoformat(), "reason": reason,
                    "ends_at": (starts + timedelta(hours=int(hours))).isoformat()}  # fmt: skip
            _do(flash, me, service.add_override, "Override added", schedule_id=sid, body=body)
        if drop.form_submit_button("Remove override") and remove:
            _do(flash, me, service.remove_override, "Override removed", override_id=int(remove))


def _new_schedule_form(flash: str, me: accounts.User, names: dict[int, str], today: date) -> None:
    with st.expander("New schedule (one layer; add more through the API)"), st.form("new_sched"):
        name = st.text_input("Name", key="sched_name")
        cols = st.columns(4)
        rotation = cols[0].selectbox(
            "Rotation", ["weekly", "daily"], key="sched_rot", format_func=fmt.label
        )
        weekday = cols[1].selectbox("Handoff day", range(7), format_func=WEEKDAY_NAMES.__getitem__)
        at = cols[2].time_input("Handoff time", time(9, 0), key="sched_time")
        starts = cols[3].date_input("First shift", today, key="sched_start")
        members = st.multiselect("People, in turn", list(names), format_func=names.__getitem__)
        if st.form_submit_button("Add schedule"):
            layer = {"rotation": rotation, "handoff_weekday": weekday,
                     "handoff_time": at.strftime("%H:%M"), "starts_on": starts.isoformat(),
                     "members": members}  # fmt: skip
            _do(flash, me, service.save_schedule, "Schedule added", schedule_id=None,
                body={"name": name, "layers": [layer]})  # fmt: skip


def _routes(flash: str, me: accounts.User, names: dict[int, str]) -> None:
    st.markdown("**Default routes** (for rules that name no channel)")
    routes = data.read_or_stop(store.list_routes)
    schedules = {s["id"]: s["name"] for s in data.read_or_stop(store.list_schedules)}
    channels = {c["id"]: c["name"] for c in data.read_or_stop(list_channels)}
    shown = [
        {"At or above": fmt.label(r["min_severity"]),
         "Schedules": ", ".join(schedules.get(i, f"#{i}") for i in r["targets"].get("schedules", [])),
         "People": ", ".join(names.get(i, f"#{i}") for i in r["targets"].get("users", [])),
         "Channels": ", ".join(channels.get(i, f"#{i}") for i in r["targets"].get("channels", []))}
        for r in routes
    ]  # fmt: skip
    if shown:
        st.dataframe(pd.DataFrame(shown), hide_index=True)
    else:
        st.warning("No default route: an alert whose rule names no channel reaches nobody.")
    with st.form("route"):
        cols = st.columns(3)
        severity = cols[0].selectbox(
            "At or above", [s.value for s in Severity], key="route_sev", format_func=fmt.label
        )
        picked = cols[1].multiselect("Schedules", list(schedules),
                                     format_func=schedules.__getitem__)  # fmt: skip
        users = cols[2].multiselect("People", list(names), format_func=names.__getitem__)
        if st.form_submit_button("Save route"):
            body = {"min_severity": severity, "targets": {"schedules": picked, "users": users}}
            _do(flash, me, service.save_route, "Route saved", body=body)


def _people(flash: str, me: accounts.User, people: list[dict[str, Any]], tz: ZoneInfo) -> None:
    st.markdown("**People: time zones and contact methods** (URLs are secrets, shown masked)")
    shown = [
        {"Id": p["id"], "User": p["username"], "Role": fmt.label(p["role"]),
         "Time zone": p["time_zone"] or f"business ({tz.key})",
         "Contact methods": "; ".join(
             c["url"] + ("" if c["is_enabled"] else " (disabled)") for c in p["contacts"])}
        for p in people if p["is_active"]
    ]  # fmt: skip
    st.dataframe(pd.DataFrame(shown), hide_index=True)
    names = {p["id"]: p["username"] for p in people if p["is_active"]}
    with st.form("contact"):
        cols = st.columns([2, 2, 4, 2])
        who = cols[0].selectbox("Person", list(names), format_func=names.__getitem__)
        label = cols[1].text_input("Label", "webhook", key="contact_label")
        url = cols[2].text_input("Apprise URL", key="contact_url")
        zone = cols[3].text_input("Time zone (blank: business)", key="contact_tz")
        add, set_tz = st.columns(2)
        if add.form_submit_button("Add contact method"):
            _do(flash, me, service.add_contact_method, "Contact method added",
                user_id=int(who or 0), body={"label": label, "url": url})  # fmt: skip
        if set_tz.form_submit_button("Set time zone"):
            _do(flash, me, service.set_time_zone, "Time zone set", user_id=int(who or 0),
                time_zone=zone.strip() or None)  # fmt: skip


def _role_at_least(me: accounts.User, role: Role) -> bool:
    return me.role.rank >= role.rank


def cover_allowed(me: accounts.User | None) -> bool:
    """Responders and admins may put themselves on call."""
    return me is not None and _role_at_least(me, Role.RESPONDER)
