"""Settings (admins): notification channels (test send, enable/disable, delete), escalation
policies, on-call schedules, API keys and users.

One section at a time, named in the URL (`?tab=Schedules`), so a link opens it and an action's
rerun keeps it open; only the open section's tables and forms are read and drawn (all four
together were ~1,900 elements, most of a click's time in the browser).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from monitoring_core import clock
from monitoring_core.audit import user_actor
from monitoring_core.enums import Role
from monitoring_core.notify import service as notify_service
from monitoring_core.notify.channels import (
    ChannelInUse,
    ChannelInvalid,
    ChannelNotFound,
    list_channels,
)
from monitoring_core.notify.delivery import channel_health, delivery_log
from monitoring_core.oncall.store import list_people, list_schedules
from monitoring_core.policies.service import policy_create
from monitoring_core.policies.store import list_policies
from ui import actions as ui_actions
from ui import auth, data, fmt, url_state, widgets
from ui.account_admin import keys_and_users
from ui.oncall import schedules_section

auth.require_role(Role.VIEWER)
user = auth.require_role(Role.ADMIN)
settings = data.get_settings()
now = widgets.current_now()
FLASH = "settings_flash"
SECTIONS = ["Channels", "Escalation policies", "Schedules", "API keys and users"]
ACTOR, ROLE = user_actor(user.username), user.role.value


class _TestFailed(Exception):
    """A test send that did not go through (its error is the message)."""


def _change(label: str, work: Callable[..., Any], **kwargs: Any) -> None:
    """One channel change as the API makes it (notify.service); the result shows after rerun."""
    ui_actions.run(
        FLASH,
        lambda conn: work(conn, actor=ACTOR, role=ROLE, now=clock.now(), **kwargs),
        done=label,
        refused=(ChannelInUse, ChannelInvalid, ChannelNotFound),
    )


def _test_send(engine: Engine, channel_id: int) -> None:
    """The API's test send: the attempt is recorded like any delivery."""
    result = notify_service.send_test_message(
        engine,
        channel_id=channel_id,
        public_url=settings.public_url,
        actor=ACTOR,
        role=ROLE,
        now=clock.now(),
    )
    if not result.ok:
        raise _TestFailed(result.error)


def _channel_row(channel: dict[str, Any], h: dict[str, Any]) -> None:
    cid, enabled = channel["id"], channel["is_enabled"]
    cols = st.columns([3, 2, 1, 1, 1])
    cols[0].markdown(
        f"**{fmt.md_escape(channel['name'])}** {fmt.md_code(channel['url'])}"
        + ("" if channel["is_enabled"] else " (disabled)")
    )
    cols[1].caption(
        f"24 h: {h.get('sent', 0)} sent, {h.get('failures', 0)} failed,"
        f" {h.get('skipped', 0)} skipped (disabled), {h.get('pending', 0)} retrying"
        f" · {h.get('attempts', 0)} attempts"
    )
    if cols[2].button("Test", key=f"test{cid}"):
        ui_actions.run_flow(
            FLASH,
            partial(_test_send, channel_id=cid),
            done=f"{fmt.md_escape(channel['name'])}: Test sent",
            failed=f"{fmt.md_escape(channel['name'])}: Test failed: ",
            refused=(_TestFailed, ChannelNotFound),
        )
    if cols[3].button("Disable" if enabled else "Enable", key=f"toggle{cid}"):
        _change(
            f"{fmt.md_escape(channel['name'])} {'disabled' if enabled else 'enabled'}",
            notify_service.save_channel,
            channel_id=cid,
            body={"is_enabled": not enabled},
        )
    question = (
        f"Delete the channel **{fmt.md_escape(channel['name'])}**? Rules and policies that "
        "name it stop sending to it."
    )
    if ui_actions.confirmed("Delete", question, key=f"delete{cid}", where=cols[4]):
        _change(
            f"{fmt.md_escape(channel['name'])} deleted",
            notify_service.remove_channel,
            channel_id=cid,
        )


def _delivery_log() -> None:
    """The last day's deliveries, read only when the expander's section is open."""
    log = data.read_or_stop(delivery_log, since=now - timedelta(days=1), limit=500)
    rows = [
        {
            "When": fmt.when(r.get("last_attempt_at"), data.business_tz(), now),
            "Channel": r.get("channel") or "—",
            "Outcome": fmt.label(r.get("status")),
            "Attempts": r.get("attempts"),
            "Kind": fmt.label(r.get("kind")),
            "Incident": f"#{r['incident_id']}" if r.get("incident_id") else "—",
            "Title": r.get("title") or "",
            "Error": r.get("error") or "",
        }
        for r in log
    ]
    columns = ["When", "Channel", "Outcome", "Attempts", "Kind", "Incident", "Title", "Error"]
    st.dataframe(pd.DataFrame(rows, columns=columns), hide_index=True)


def _channels_section() -> None:
    st.subheader("Notification channels")
    channels = data.read_or_stop(list_channels)
    since = now - timedelta(days=1)
    health = {h["id"]: h for h in data.read_or_stop(channel_health, since=since)}
    for channel in channels:
        _channel_row(channel, health.get(channel["id"], {}))
    with st.expander("Delivery log (24 h): each notification's outcome, as on incident timelines"):
        _delivery_log()
    with st.form("new_channel"):
        name = st.text_input("Name", key="channel_name")
        url = st.text_input(
            "Apprise URL (e.g. slack://…, mailto://…, json://host/path)", key="channel_url"
        )
        if st.form_submit_button("Add channel"):
            ui_actions.run(
                FLASH,
                lambda conn: notify_service.save_channel(
                    conn,
                    channel_id=None,
                    body={"name": name, "url": url},
                    actor=ACTOR,
                    role=ROLE,
                    now=clock.now(),
                ),
                done=lambda saved: f"Channel {fmt.md_escape(saved['name'])} added",
                refused=(ChannelInvalid,),
            )


def _steps_words(steps: list[dict[str, Any]], names: dict[str, dict[int, str]]) -> str:
    """`at once: Ops webhook, on call in Primary; after 15 min: jo` (names, not ids)."""
    words = {"channels": "{}", "users": "{}", "schedules": "on call in {}"}

    def step(s: dict[str, Any]) -> str:
        who = [
            words[kind].format(names[kind].get(i, f"#{i}"))
            for kind in ("channels", "users", "schedules")
            for i in s.get(kind) or []
        ]
        minutes = int(s.get("after_minutes") or 0)
        when = "at once" if minutes == 0 else f"after {fmt.duration(minutes * 60)}"
        return f"{when}: {', '.join(who) or 'nobody'}"

    return "; ".join(step(s) for s in steps) or "—"


def _policies_section() -> None:
    st.subheader("Escalation policies")
    policies = data.read_or_stop(list_policies)
    names = {
        "channels": {c["id"]: c["name"] for c in data.read_or_stop(list_channels)},
        "schedules": {s["id"]: s["name"] for s in data.read_or_stop(list_schedules)},
        "users": {p["id"]: p["username"] for p in data.read_or_stop(list_people)},
    }
    rows = [
        {
            "Policy": p["name"],
            "Steps": _steps_words(p["steps"] or [], names),
            "Repeats": "Yes" if p["repeat"] else "No",
            "On Saturdays": "Yes" if p["is_wedding_day"] else "No",
        }
        for p in policies
    ]
    columns = ["Policy", "Steps", "Repeats", "On Saturdays"]
    st.dataframe(pd.DataFrame(rows, columns=columns), hide_index=True, width="stretch")
    with st.form("new_policy"):
        policy_name = st.text_input("Name", key="policy_name")
        steps = st.text_area(
            "Steps (JSON)",
            '[{"after_minutes": 0, "schedules": [], "users": [], "channels": []}]',
            key="policy_steps",
            help="Each step pages channel ids, people (user ids: their contact methods) and "
            "schedules (schedule ids: whoever is on call then); ids are listed under Schedules.",
        )
        wedding = st.checkbox("Use on Saturdays (wedding-day policy)")
        if st.form_submit_button("Add policy"):

            def add_policy(conn: Connection) -> dict[str, Any]:
                body = {"name": policy_name, "steps": json.loads(steps), "is_wedding_day": wedding}
                return policy_create(conn, body=body, actor=ACTOR, role=ROLE, now=clock.now())

            ui_actions.run(
                FLASH,
                add_policy,
                done=f"Policy {fmt.md_escape(policy_name)} added",
                failed="Policy not added: ",
                refused=(ValueError, IntegrityError),
            )


st.title("Settings")
ui_actions.show_flash(FLASH)
section = url_state.tabs(SECTIONS, param="tab")
if section == "Escalation policies":
    _policies_section()
elif section == "Schedules":
    schedules_section(FLASH, user, now, data.business_tz())
elif section == "API keys and users":
    keys_and_users(FLASH, user)
else:
    _channels_section()
