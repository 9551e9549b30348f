"""Alerts: active alerts (acknowledge, suppress, escalate), history, rules, silences."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from monitoring_core import clock
from monitoring_core.alerts import queries, service
from monitoring_core.alerts.rules import RuleInvalid
from monitoring_core.alerts.silences import list_silences
from monitoring_core.alerts.store import active_since, list_active_alerts
from monitoring_core.audit import user_actor
from monitoring_core.enums import AlertStatus, Role, Severity
from monitoring_core.flows import alert_actions as actions
from ui import actions as ui_actions
from ui import auth, data, fmt, rule_editor, url_state, widgets
from ui import oncall as oncall_ui

user = auth.require_role(Role.VIEWER)
settings = data.get_settings()
now, tr, tz = widgets.current_now(), widgets.current_time_range(), data.business_tz()
responder, admin = auth.has_role(Role.RESPONDER), auth.has_role(Role.ADMIN)


def act(label: str, action: Callable[..., Any], **kwargs: Any) -> None:
    """Run an action as the signed-in user in one transaction, then reload fresh data."""
    ui_actions.run(
        "alerts_flash",
        lambda conn: action(
            conn, actor=user_actor(user.username), role=user.role.value, now=clock.now(), **kwargs
        ),
        done=f"{label} done",
        failed=f"{label} failed: ",
        refused=(actions.ActionRefused, actions.PermissionDenied, RuleInvalid, ValueError),
    )


def _age(moment: datetime | None) -> str:
    # max(0, …): the page's clock is floored to the refresh interval, so a state that began
    # within it would read as "-1 min".
    minutes = max(0, int((now - moment).total_seconds() // 60)) if moment else 0
    return fmt.duration(timedelta(minutes=minutes))  # "12 min", "3 h 5 min", "7 d 4 h"


def _with_no_data(cfg: Any, mode: str) -> Any:
    """The picked no-data choice, unless the JSON already says (validation reports the rest)."""
    if isinstance(cfg, dict) and "no_data_state" not in cfg and "no_data" not in cfg:
        return {**cfg, "no_data_state": mode}
    return cfg


def _summary(alert: Mapping[str, Any]) -> str:
    since = active_since(alert)
    if alert["status"] != "no_data":
        return (
            f"{fmt.label(alert['status']).lower()} for {_age(since)} "
            f"(since {fmt.when(since, tz, now)}), value {fmt.number(alert['trigger_value'])}"
        )
    if alert["data_seen_at"] is None:
        return "waiting for its first data (not notified)"
    stopped = f" (since {fmt.when(since, tz, now)})" if since else ""
    return f"no data for {_age(since)}{stopped}"


def _alert_card(alert: Mapping[str, Any], focused: bool) -> None:
    with st.container(border=True):
        key = f" · {fmt.md_escape(alert['alert_key'])}" if alert["alert_key"] else ""
        st.markdown(
            f"{widgets.severity_badge(alert['severity'])} "
            f"**{fmt.md_escape(alert['alert_name'])}**{key} — {_summary(alert)}"
        )
        st.page_link(  # the alert's own page: condition, graph, notification log
            "pages/alert.py",
            label=f"Open alert #{alert['id']}",
            icon=":material/open_in_new:",
            query_params={"instance": str(alert["id"])},
        )
        if not responder:
            return
        aid = alert["id"]
        left, middle, resolve, right = st.columns([1, 1, 1, 3])
        if left.button("Acknowledge", key=f"ack{aid}", disabled=alert["status"] == "acknowledged"):
            act("Acknowledge", actions.acknowledge_alert, instance_id=aid)
        if resolve.button("Resolve", key=f"res{aid}"):
            act(
                "Resolve",
                actions.resolve_alert,
                instance_id=aid,
                tz=tz,
                public_url=settings.public_url,
            )
        if middle.button("Escalate", key=f"esc{aid}"):
            act(
                "Escalate",
                actions.escalate_alert,
                instance_id=aid,
                tz=tz,
                public_url=settings.public_url,
            )
        with right.popover("Suppress", width="stretch" if focused else "content"):
            minutes = st.number_input("Minutes", 5, 10080, 60, key=f"min{aid}")
            reason = st.text_input("Reason", key=f"why{aid}")
            if st.button("Suppress", key=f"sup{aid}"):
                act(
                    "Suppress",
                    actions.suppress_alert,
                    instance_id=aid,
                    minutes=float(minutes),
                    reason=reason,
                )


st.title("Alerts")
ui_actions.show_flash("alerts_flash")
oncall_ui.on_call_block(now, tz)
if responder:
    oncall_ui.cover_form("alerts_flash", user, now, tz)
view = url_state.tabs(["Active", "History", "Rules", "Silences"], param="tab")


def _history() -> None:
    c1, c2 = st.columns(2)
    status = url_state.select(
        c1.selectbox,
        "Status",
        ["", *(s.value for s in AlertStatus)],
        param="status",
        format_func=lambda v: fmt.label(v) if v else "Any",
    )
    severity = url_state.select(
        c2.selectbox,
        "Severity",
        ["", *(s.value for s in Severity)],
        param="severity",
        format_func=lambda v: v.capitalize() if v else "Any",
    )
    frame = data.read_or_stop(
        queries.history_frame,
        start=tr.start,
        end=widgets.events_until(tr),  # an action taken a moment ago is listed at once
        status=status or None,
        severity=severity or None,
    )
    shown = pd.DataFrame(
        {
            "Time": [fmt.when(t, tz, now) for t in frame["time"]],
            "Alert": frame["alert_name"],
            "Labels": frame["alert_key"].fillna(""),
            "Severity": frame["severity_level"].str.capitalize(),
            "Change": [
                f"{fmt.label(a) if isinstance(a, str) and a else 'New'} → {fmt.label(b)}"
                for a, b in zip(frame["from_status"], frame["to_status"], strict=True)
            ],
            "Value": [fmt.number(v) for v in frame["value"]],
            "By": [fmt.actor(a) for a in frame["actor"]],
            "Message": frame["message"].fillna(""),
        }
    )
    st.dataframe(shown, hide_index=True, height=widgets.table_height(len(shown)))


def _matchers(matchers: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"{m.get('name')}{'=~' if m.get('is_regex') else '='}{m.get('value')}" for m in matchers
    )


def _silences() -> None:
    moment = clock.now()  # not the page's 30 s clock: a silence just ended is gone at once
    running = [s for s in data.read_or_stop(list_silences, now=now) if s["ends_at"] > moment]
    if not running:
        st.caption("No silence is running or planned.")
    for silence in running:
        with st.container(border=True):
            left, right = st.columns([5, 1])
            when = (
                f"until {fmt.when(silence['ends_at'], tz, now)}"
                if silence["starts_at"] <= moment
                else f"from {fmt.when(silence['starts_at'], tz, now)} "
                f"to {fmt.when(silence['ends_at'], tz, now)}"
            )
            repeat = " · repeats" if silence["recurrence"] else ""
            left.markdown(
                f"**#{silence['id']}** {fmt.md_code(_matchers(silence['matchers']))} {when}{repeat}"
                f" · by {fmt.md_escape(fmt.actor(silence['created_by']))}"
                f"{' · ' + fmt.md_escape(silence['reason']) if silence['reason'] else ''}"
            )
            if responder and right.button("End now", key=f"silence_end_{silence['id']}"):
                act("End silence", service.silence_end, silence_id=silence["id"])


if view == "Active":
    alerts = data.read_or_stop(list_active_alerts)
    focus = st.query_params.get("instance")
    alerts.sort(key=lambda a: str(a["id"]) != focus)  # a notification's link shows its alert first
    groups = queries.split_active(alerts)
    no_data = groups.pop("no_data")
    alerting = [a for rows in groups.values() for a in rows]
    st.caption(
        f"{len(alerting)} firing, pending, acknowledged or suppressed, most severe and oldest "
        f"first; {len(no_data)} with no data"
    )
    for alert in alerting:
        _alert_card(alert, str(alert["id"]) == focus)
    if not alerting:
        st.success("Nothing is firing.", icon=":material/check_circle:")
    if no_data:
        st.subheader("No data")
        st.caption(
            "Rules whose data stopped, aged from when it stopped; not counted as firing. "
            "A rule that has not yet seen any data is listed but never notified."
        )
        for alert in no_data:
            _alert_card(alert, str(alert["id"]) == focus)

elif view == "History":
    _history()
elif view == "Rules":
    rule_editor.rules_tab(admin=admin, act=act, tr=tr, rules=data.read_or_stop(queries.rules_frame))

else:
    _silences()
    if responder:
        with st.form("new_silence"):
            label = st.selectbox(
                "Match label",
                ["service", "alertname", "severity", "endpoint"],
                format_func=lambda v: "Alert name" if v == "alertname" else v.capitalize(),
            )
            value = st.text_input("Value (regular expression)", key="silence_value")
            hours = st.number_input("For how many hours", 1, 24 * 14, 2)
            reason = st.text_input("Reason", key="silence_reason")
            if st.form_submit_button("Add silence"):
                start = clock.now()
                act(
                    "Add silence",
                    service.silence_create,
                    matchers=[{"name": label, "value": value, "is_regex": True}],
                    starts_at=start,
                    ends_at=start + timedelta(hours=hours),
                    reason=reason,
                )
