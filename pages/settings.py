"""Settings (admins): notification channels (test send, enable/disable, delete) and escalation
policies."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from monitoring_core import clock
from monitoring_core.audit import record_audit, user_actor
from monitoring_core.enums import Role
from monitoring_core.notify.channels import (
    ChannelInUse,
    ChannelInvalid,
    ChannelNotFound,
    create_channel,
    delete_channel,
    get_channel,
    list_channels,
    update_channel,
)
from monitoring_core.notify.delivery import channel_health
from monitoring_core.notify.templates import render_test
from monitoring_core.notify.transport import send
from monitoring_core.policies.store import create_policy, list_policies
from ui import actions as ui_actions
from ui import auth, data, widgets

auth.require_role(Role.VIEWER)
user = auth.require_role(Role.ADMIN)
settings = data.get_settings()
now = widgets.current_now()
FLASH = "settings_flash"

st.title("Settings")
ui_actions.show_flash(FLASH)

st.subheader("Notification channels")
channels = data.read_or_stop(list_channels)
health = {h["id"]: h for h in data.read_or_stop(channel_health, since=now - timedelta(days=1))}


def _audited(
    action: str, target: str | Callable[[Any], str], work: Callable[[Connection], Any]
) -> Callable[[Connection], Any]:
    """`work` followed by its audit row (`target`, or `target(result)`), in one transaction."""

    def both(conn: Connection) -> Any:
        result = work(conn)
        record_audit(
            conn,
            actor=user_actor(user.username),
            action=action,
            now=clock.now(),
            target=target(result) if callable(target) else target,
        )
        return result

    return both


def _change(label: str, action: str, channel_id: int, work: Callable[[Connection], Any]) -> None:
    """One channel change with its audit row; what happened shows after the rerun."""
    ui_actions.run(
        FLASH,
        _audited(action, f"channel:{channel_id}", work),
        done=label,
        refused=(ChannelInUse, ChannelNotFound),
    )


for channel in channels:
    h = health.get(channel["id"], {})
    cid, enabled = channel["id"], channel["is_enabled"]
    cols = st.columns([3, 2, 1, 1, 1])
    cols[0].markdown(
        f"**{channel['name']}** `{channel['url']}`"
        + ("" if channel["is_enabled"] else " (disabled)")
    )
    cols[1].caption(f"24 h: {h.get('attempts', 0)} attempts, {h.get('failures', 0)} failed")
    if cols[2].button("Test", key=f"test{channel['id']}"):
        with data.get_engine().connect() as conn:
            row = get_channel(conn, channel_id=channel["id"])
        message = render_test(row["name"], public_url=settings.public_url)
        result = send(row["url"], title=message.title, body=message.body)
        kind, text = (
            ("success", "Test sent") if result.ok else ("error", f"Test failed: {result.error}")
        )
        st.session_state[FLASH] = (kind, f"{channel['name']}: {text}")
        st.rerun()
    if cols[3].button("Disable" if enabled else "Enable", key=f"toggle{cid}"):
        toggle = partial(update_channel, channel_id=cid, body={"is_enabled": not enabled})
        _change(
            f"{channel['name']} {'disabled' if enabled else 'enabled'}", "channel.save", cid, toggle
        )
    if cols[4].button("Delete", key=f"delete{cid}"):
        _change(
            f"{channel['name']} deleted",
            "channel.delete",
            cid,
            partial(delete_channel, channel_id=cid),
        )

with st.form("new_channel"):
    name = st.text_input("Name", key="channel_name")
    url = st.text_input(
        "Apprise URL (e.g. slack://…, mailto://…, json://host/path)", key="channel_url"
    )
    if st.form_submit_button("Add channel"):
        add = partial(create_channel, body={"name": name, "url": url})
        ui_actions.run(
            FLASH,
            _audited("channel.save", lambda saved: f"channel:{saved['id']}", add),
            done=lambda saved: f"Channel {saved['name']} added",
            refused=(ChannelInvalid,),
        )

st.subheader("Escalation policies")
policies = data.read_or_stop(list_policies)
st.dataframe(
    pd.DataFrame(policies, columns=["id", "name", "steps", "repeat", "is_wedding_day"]),
    hide_index=True,
)
with st.form("new_policy"):
    policy_name = st.text_input("Name", key="policy_name")
    steps = st.text_area(
        "Steps (JSON)", '[{"after_minutes": 0, "channels": []}]', key="policy_steps"
    )
    wedding = st.checkbox("Use on Saturdays (wedding-day policy)")
    if st.form_submit_button("Add policy"):

        def add_policy(conn: Connection) -> dict[str, Any]:
            body = {"name": policy_name, "steps": json.loads(steps), "is_wedding_day": wedding}
            return create_policy(conn, body)

        ui_actions.run(
            FLASH,
            _audited("policy.create", policy_name, add_policy),
            done=f"Policy {policy_name} added",
            failed="Policy not added: ",
            refused=(ValueError, IntegrityError),
        )
