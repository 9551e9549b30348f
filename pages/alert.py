"""Alert: one alert on a page of its own (`?instance=N`, the address notifications link to):
its rule and condition in words, the value the engine compared with the threshold over time
with the firing periods marked, labels, silences covering it, runbook, incident, the
notification and escalation log, and the responder actions of the Alerts page."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from monitoring_core import clock
from monitoring_core.alerts import detail, service
from monitoring_core.alerts.rules import RuleInvalid
from monitoring_core.alerts.signals import is_windowed
from monitoring_core.alerts.store import active_since, list_active_alerts
from monitoring_core.audit import user_actor
from monitoring_core.enums import Role
from monitoring_core.flows import alert_actions as actions
from ui import actions as ui_actions
from ui import auth, charts, data, fmt, widgets

user = auth.require_role(Role.VIEWER)
settings = data.get_settings()
now, tz = widgets.current_now(), data.business_tz()
responder = auth.has_role(Role.RESPONDER)
FLASH = "alert_flash"
SPANS = {"1h": timedelta(hours=1), "6h": timedelta(hours=6), "24h": timedelta(days=1)}
SPANS["7d"] = timedelta(days=7)
MAX_ID = 2**63 - 1
_OUTCOMES = {
    "sent": "delivered",
    "failed": "failed",
    "skipped": "skipped (channel disabled)",
    "retrying": "failed, will retry",
    "sending": "sending",
    "pending": "queued",
}


def act(label: str, action: Callable[..., Any], **kwargs: Any) -> None:
    """Run an action as the signed-in user in one transaction; the rerun keeps `?instance`."""
    ui_actions.run(
        FLASH,
        lambda conn: action(
            conn, actor=user_actor(user.username), role=user.role.value, now=clock.now(), **kwargs
        ),
        done=f"{label} done",
        failed=f"{label} failed: ",
        refused=(actions.ActionRefused, actions.PermissionDenied, RuleInvalid, ValueError),
    )


def _asked() -> int | None:
    raw = st.query_params.get("instance") or ""
    return int(raw) if raw.isdigit() and 0 < int(raw) <= MAX_ID else None


def _when(moment: datetime | None) -> str:
    """`Tue 2 Dec 14:05` in the business time zone (the year when it is not this one)."""
    if moment is None:
        return "—"
    local = moment.astimezone(tz)
    year = "" if local.year == now.astimezone(tz).year else f" {local.year}"
    return f"{local:%a} {local.day} {local:%b}{year} {local:%H:%M}"


def _age(moment: datetime | None) -> str:
    if moment is None:
        return ""
    minutes = max(0, int((now - moment).total_seconds() // 60))
    if minutes >= 24 * 60:
        return f"{minutes // (24 * 60)} d {minutes % (24 * 60) // 60} h"
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "ms":
        return fmt.milliseconds(value)
    if unit.startswith("ratio 0"):
        return fmt.percent(value)
    if unit == "min without data":  # an absence rule's value: minutes since the last point
        return f"{fmt.number(value)} min"
    return f"{fmt.number(value)}{detail.unit_suffix(unit)}"


def _picker() -> None:
    """No (or no such) instance asked for: pick one by number or from the active ones."""
    picked = st.number_input("Alert number", min_value=1, value=None, step=1, key="alert_pick")
    if picked:
        st.query_params["instance"] = str(int(picked))
        st.rerun()
    alerts = data.read_or_stop(list_active_alerts)
    if not alerts:
        st.caption("Nothing is active right now.")
    for alert in alerts:
        key = f" · {alert['alert_key']}" if alert["alert_key"] else ""
        st.page_link(
            "pages/alert.py",
            label=fmt.md_escape(f"#{alert['id']} {alert['alert_name']}{key} ({alert['status']})"),
            icon=":material/notifications_active:",
            query_params={"instance": str(alert["id"])},
        )


def _state(info: Mapping[str, Any]) -> None:
    alert, rule = info["alert"], info["rule"]
    status = str(alert["status"])
    since = {"resolved": alert["resolved_at"], "acknowledged": alert["acknowledged_at"]}.get(
        status, active_since(alert)
    )
    words = f"**{status.replace('_', ' ').capitalize()}**"
    if since is not None:
        words += f" since {_when(since)} ({_age(since)})"
    if status == "acknowledged" and alert["acknowledged_by"]:
        words += f" by {fmt.md_escape(fmt.actor(alert['acknowledged_by']))}"
    if status == "suppressed" and alert["suppressed_until"]:
        words += f" · suppressed until {_when(alert['suppressed_until'])}"
    if alert["first_triggered_at"] and status in ("acknowledged", "suppressed"):
        words += f" · fired {_when(alert['first_triggered_at'])}"
    if alert["trigger_value"] is not None:
        words += f" · last value {_value(alert['trigger_value'], info['unit'])}"
    st.markdown(words)
    for silence in info["silenced_by"]:
        reason = f": {fmt.md_escape(silence['reason'])}" if silence["reason"] else ""
        by = fmt.md_escape(fmt.actor(silence["created_by"], missing="someone"))
        st.warning(
            f"Silenced by silence #{silence['id']}{reason} (by {by}, until "
            f"{_when(silence['ends_at'])}): no notifications are sent while it lasts.",
            icon=":material/notifications_off:",
        )
    if not rule["is_enabled"]:
        st.info("Its rule is disabled.", icon=":material/pause_circle:")


def _silence_form(info: Mapping[str, Any]) -> None:
    """Silence from here: matchers from this alert's labels, with a preview of what they
    cover now."""
    aid = info["alert"]["id"]
    labels: dict[str, str] = info["labels"]
    defaults = {"alertname", *(info["alert"].get("trigger_dimensions") or {})}
    with st.popover("Silence", width="stretch"):
        chosen = [
            name
            for name, value in sorted(labels.items())
            if st.checkbox(
                fmt.md_escape(f"{name} = {value}"), value=name in defaults, key=f"sl_{aid}_{name}"
            )
        ]
        matchers = [{"name": n, "value": labels[n], "is_regex": False} for n in chosen]
        hours = st.number_input("Hours", 1, 24 * 14, 2, key=f"sl_hours_{aid}")
        reason = st.text_input("Reason", key=f"sl_reason_{aid}")
        if not matchers:
            st.caption("Pick at least one label.")
            return
        covered = data.read_or_stop(detail.silence_preview, matchers=matchers)
        names = ", ".join(
            fmt.md_escape(
                f"#{a['id']} {a['alert_name']}" + (f" ({a['alert_key']})" if a["alert_key"] else "")
            )
            for a in covered[:10]
        )
        more = f" and {len(covered) - 10} more" if len(covered) > 10 else ""
        st.caption(
            f"Covers {fmt.plural(len(covered), 'active alert')} now: {names or 'none'}{more}"
        )
        if st.button("Add silence", key=f"sl_add_{aid}"):
            start = clock.now()
            act(
                "Silence",
                service.silence_create,
                matchers=matchers,
                starts_at=start,
                ends_at=start + timedelta(hours=int(hours)),
                reason=reason,
            )


def _actions(info: Mapping[str, Any]) -> None:
    alert = info["alert"]
    aid, status = alert["id"], alert["status"]
    ack, res, esc, sup, sil = st.columns(5)
    if ack.button(
        "Acknowledge",
        key="alert_ack",
        disabled=status not in ("firing", "pending", "no_data", "suppressed"),
        width="stretch",
    ):
        act("Acknowledge", actions.acknowledge_alert, instance_id=aid)
    if res.button("Resolve", key="alert_res", disabled=status == "resolved", width="stretch"):
        act(
            "Resolve", actions.resolve_alert, instance_id=aid, tz=tz, public_url=settings.public_url
        )
    if esc.button(
        "Escalate",
        key="alert_esc",
        disabled=status not in ("firing", "acknowledged", "pending", "no_data"),
        width="stretch",
    ):
        act(
            "Escalate",
            actions.escalate_alert,
            instance_id=aid,
            tz=tz,
            public_url=settings.public_url,
        )
    suppressible = status in ("firing", "pending", "no_data", "suppressed", "acknowledged")
    with sup.popover("Suppress", width="stretch", disabled=not suppressible):
        minutes = st.number_input("Minutes", 5, 10080, 60, key="alert_sup_min")
        reason = st.text_input("Reason", key="alert_sup_why")
        if st.button("Suppress", key="alert_sup"):
            act(
                "Suppress",
                actions.suppress_alert,
                instance_id=aid,
                minutes=float(minutes),
                reason=reason,
            )
    with sil:
        _silence_form(info)


def _facts(info: Mapping[str, Any]) -> None:
    cond, rule, unit = info["condition"], info["rule"], info["unit"]
    st.subheader("Condition")
    if cond is None:
        st.error(f"The rule's condition cannot be read: {fmt.md_escape(info['condition_problem'])}")
        return
    st.markdown(f"This alert {fmt.md_escape(info['words'])}.")
    rows: list[tuple[str, str]] = [("Rule", f"#{rule['id']} {rule['alert_name']}")]
    if cond.metric:
        rows.append(("Signal", cond.metric + (f" ({unit})" if unit else "")))
    if cond.type in ("threshold", "rate_of_change", "anomaly"):
        rows.append(("Aggregation", detail.aggregation_words(cond.aggregation)))
    if cond.type in ("threshold", "pattern", "rate_of_change"):
        rows.append(("Operator", detail.OPERATOR_WORDS.get(cond.operator, cond.operator)))
        threshold_unit = (
            "%" if cond.type == "rate_of_change" and cond.change_mode == "percent" else unit
        )
        rows.append(("Threshold", _value(cond.value, threshold_unit)))
    if cond.type == "anomaly":  # an hour, whatever window_minutes says
        sliding = is_windowed(cond.metric)
        rows.append(("Window", "the last hour" if sliding else "the hour so far"))
        same = "the same hour" if sliding else "the same minutes"
        rows.append(("Baseline", f"{same} of the past {cond.weeks} weeks "
                                 f"(at least {cond.min_baseline} with data)"))  # fmt: skip
        rows.append(("Threshold", f"{cond.z_threshold:g} robust standard deviations"))
    elif cond.type not in ("composite", "promql", "external"):
        rows.append(("Window", f"{cond.window_minutes:g} min"))
    rows.append(
        (
            "Must hold for",
            f"{cond.duration_minutes:g} min" if cond.duration_minutes else "fires at once",
        )
    )
    if cond.group_by:
        rows.append(("One alert per", ", ".join(cond.group_by)))
    if cond.filters:
        rows.append(
            ("Only where", ", ".join(f"{k} = {v}" for k, v in sorted(cond.filters.items())))
        )
    rows.append(("No data means", cond.no_data.replace("_", " ")))
    rows.append(("Repeats every", f"{rule['repeat_interval_minutes']} min while firing"))
    rows.append(("Channels", ", ".join(info["channels"]) or "the default route for its severity"))
    rows.append(("Escalation policy", info["policy"] or "none"))
    widgets.small_table(pd.DataFrame(rows, columns=["Field", "Value"]))


def _graph(info: Mapping[str, Any], history: list[dict[str, Any]]) -> None:
    alert = info["alert"]
    st.subheader("Signal")
    began = active_since(alert) or alert.get("first_triggered_at")
    default = next(
        (k for k, span in SPANS.items() if began is None or now - began < span * 0.75), "7d"
    )
    choice = st.segmented_control("Span", list(SPANS), default=default, key="alert_span") or default
    start = now - SPANS[choice]
    try:
        found = data.read(
            detail.condition_series, instance_id=int(alert["id"]), start=start, end=now, tz=tz
        )
    except data.DatabaseProblem:
        st.warning("The signal could not be read; the rest of the page is fine.")
        return
    except RuleInvalid as exc:
        st.info(fmt.md_escape(str(exc)))
        return
    spans = [p for p in detail.periods(history, alert, now=now) if p["end"] > start]
    fig = go.Figure()
    points = found["points"]
    unit = info["unit"]
    if points:
        times = [t.astimezone(tz).replace(tzinfo=None) for t, _v in points]
        fig.add_scatter(
            x=times, y=[v for _t, v in points], name=found["note"] or "value", mode="lines"
        )
    if found["thresholds"]:
        times = [t.astimezone(tz).replace(tzinfo=None) for t, _v in found["thresholds"]]
        fig.add_scatter(
            x=times,
            y=[v for _t, v in found["thresholds"]],
            name="threshold",
            mode="lines",
            line={"dash": "dash", "color": "#d62728"},
        )
    for span in spans:
        fig.add_vrect(
            x0=max(span["start"], start).astimezone(tz).replace(tzinfo=None),
            x1=span["end"].astimezone(tz).replace(tzinfo=None),
            fillcolor="#d62728" if span["kind"] == "firing" else "#ff7f0e",
            opacity=0.15,
            line_width=0,
            annotation_text=span["kind"],
            annotation_position="top left" if span["kind"] == "firing" else "bottom left",
        )
    fig.update_layout(
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        height=320,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1},
        hovermode="x unified",
        yaxis_title=unit,
        xaxis_range=[
            start.astimezone(tz).replace(tzinfo=None),
            now.astimezone(tz).replace(tzinfo=None),
        ],
    )
    charts.readable_time_axis(fig)
    if not points:
        external = found["note"].startswith("an external")
        st.caption(
            "An external alert carries no series of its own."
            if external
            else "No values for this alert's series in this span."
        )
    st.plotly_chart(fig, config=charts.PLOTLY_CONFIG, key="alert_graph")
    firing = [s for s in spans if s["kind"] == "firing"]
    st.caption(
        f"{found['note'].capitalize() or 'Value'} as the engine compared it, "
        f"{fmt.plural(len(firing), 'firing period')} shaded red (pending orange); "
        f"times in {tz.key}."
    )


def _labels(info: Mapping[str, Any]) -> None:
    st.subheader("Labels")
    st.markdown(" ".join(fmt.md_code(f"{k}={v}") for k, v in sorted(info["labels"].items())))


def _runbook_and_incident(info: Mapping[str, Any]) -> None:
    incident, book = info["incident"], info["runbook"]
    st.subheader("Incident and runbook")
    if incident:
        st.page_link(
            "pages/incidents.py",
            label=fmt.md_escape(
                f"{incident['incident_number']} · {incident['severity']} · {incident['status']} · "
                f"{incident['title']}"
            ),
            icon=":material/emergency:",
            query_params={"incident": str(incident["id"])},
        )
    else:
        st.caption("No incident is linked to this alert.")
    if not book:
        st.caption("Its rule names no runbook.")
        return
    st.markdown(f"**Runbook:** {fmt.md_escape(book['title'])}")
    if book["description"]:
        st.caption(fmt.md_escape(book["description"]))
    steps = book["steps"] or []
    st.markdown(
        "\n".join(
            f"{i}. {fmt.md_escape(s.get('title') or 'step')} ({fmt.md_escape(s.get('kind') or 'manual')})"
            for i, s in enumerate(steps, 1)
        )
        or "No steps."
    )
    if incident:
        st.caption("Its steps are run from the incident (link above).")


def _log(rows: list[dict[str, Any]]) -> None:
    st.subheader("Notifications")
    if not rows:
        st.caption("No notification has been queued for this alert.")
        return
    frame = pd.DataFrame(
        {
            "When": [_when(r["attempted_at"] or r["queued_at"]) for r in rows],
            "What": [str(r["kind"]).replace("_", " ") for r in rows],
            "Channel": [r["channel"] for r in rows],
            "Person": [r["person"] or "" for r in rows],
            "Outcome": [
                _OUTCOMES.get(r["attempt_status"] or r["outbox_status"], r["attempt_status"] or "")
                for r in rows
            ],
            "Took": [
                fmt.milliseconds(r["latency_ms"]) if r["latency_ms"] is not None else ""
                for r in rows
            ],
            "Error": [r["error"] or "" for r in rows],
        }
    )
    if not frame["Person"].any():  # no channel here is a person's own contact method
        frame = frame.drop(columns="Person")
    widgets.small_table(frame)


def _history(events: list[dict[str, Any]], unit: str) -> None:
    st.subheader("History and escalation")
    if not events:
        st.caption("No history recorded.")
        return
    newest = list(reversed(events))
    frame = pd.DataFrame(
        {
            "When": [_when(e["time"]) for e in newest],
            "Change": [
                f"{(e['from_status'] or 'new').replace('_', ' ')} → {e['to_status'].replace('_', ' ')}"
                if e["from_status"] != e["to_status"]
                else e["to_status"].replace("_", " ")
                for e in newest
            ],
            "Value": [_value(e["value"], unit) if e["value"] is not None else "" for e in newest],
            "What": [e["message"] or "" for e in newest],
            "By": [fmt.actor(e["actor"]) for e in newest],
        }
    )
    widgets.small_table(frame)


st.page_link("pages/alerts.py", label="All alerts", icon=":material/arrow_back:")
ui_actions.show_flash(FLASH)
asked = _asked()
info = data.read_or_stop(detail.alert_detail, instance_id=asked, now=now, tz=tz) if asked else None
if info is None:
    st.title("Alert")
    if st.query_params.get("instance"):
        shown = fmt.md_escape(st.query_params.get("instance"))
        st.warning(
            f"There is no alert {shown}: it may have been deleted with its rule.",
            icon=":material/search_off:",
        )
    else:
        st.info("Pick an alert by its number, or open one of the active alerts below.")
    _picker()
    st.stop()

alert = info["alert"]
key = f" · {fmt.md_escape(alert['alert_key'])}" if alert["alert_key"] else ""
st.markdown(
    f"# {widgets.severity_badge(alert['severity'])} {fmt.md_escape(alert['alert_name'])}{key}"
)
st.caption(f"Alert #{alert['id']} of rule #{alert['alert_configuration_id']}")
_state(info)
if responder:
    _actions(info)
history = data.read_or_stop(detail.instance_events, instance_id=int(alert["id"]))
_facts(info)
_graph(info, history)
_labels(info)
_runbook_and_incident(info)
_log(data.read_or_stop(detail.notification_log, instance_id=int(alert["id"])))
_history(history, info["unit"])
