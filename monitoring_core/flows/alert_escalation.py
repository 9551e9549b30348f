"""Alert escalation: unacknowledged firing alerts climb their policy's steps.

The policy is `policies.store.policy_for`'s choice (on a Saturday the wedding-day policy); a
step's schedules and people are resolved to contact methods when it is sent (`oncall.routing`);
the step counter carries over, so switching policy never re-sends a step already sent. Each
step queues notifications and is written to the alert's history and its incident's timeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select, update

from monitoring_core.alerts.rules import rule_from_row
from monitoring_core.alerts.silences import list_silences
from monitoring_core.alerts.store import get_rule, instance_to_api, record_event
from monitoring_core.audit import system_actor
from monitoring_core.flows.alert_cycle import Cycle, EvalReport, notify_alert
from monitoring_core.incidents.store import add_timeline_entry
from monitoring_core.oncall.routing import recipients
from monitoring_core.policies.steps import due_steps, parse_steps
from monitoring_core.policies.store import policy_for, wedding_day_applies, wedding_min_severity
from monitoring_core.schema import alert_instances, alert_rules

__all__ = [
    "add_alert_timeline",
    "escalate_unacknowledged",
    "notify_by_hand",
    "send_escalation_step",
]

ACTOR = system_actor("escalation")


def escalate_unacknowledged(
    conn: Connection, *, now: datetime, tz: ZoneInfo, public_url: str
) -> int:
    """Send every escalation step that has come due; the number of steps sent."""
    rows = conn.execute(
        select(alert_instances, alert_rules.c.alert_name, alert_rules.c.severity_level)
        .join(alert_rules, alert_rules.c.id == alert_instances.c.alert_configuration_id)
        .where(alert_instances.c.status == "firing", alert_rules.c.is_enabled)
        .with_for_update(of=alert_instances, skip_locked=True)
    ).all()
    sent = 0
    rules: dict[int, dict] = {}
    minimum = wedding_min_severity(conn)
    for row in rows:
        alert = instance_to_api(dict(row._mapping))
        rule_id = alert["alert_configuration_id"]
        rule_row = rules.setdefault(rule_id, get_rule(conn, rule_id=rule_id))
        policy = policy_for(
            conn,
            now=now,
            tz=tz,
            policy_ids=[rule_row.get("escalation_policy_id")],
            wedding_day_eligible=wedding_day_applies(rule_row, alert["severity"], minimum),
        )
        if policy is None or alert["first_triggered_at"] is None:
            continue
        steps = parse_steps(policy["steps"])
        due = due_steps(
            steps,
            done=int(alert["escalation_step"]),
            start=alert["first_triggered_at"],
            now=now,
            repeat=bool(policy["repeat"]),
        )
        for index, step in due:
            send_escalation_step(
                conn,
                alert={**alert, "escalation_step": index},
                rule_row=rule_row,
                index=index,
                channels=recipients(conn, step.targets(), now=now, tz=tz),
                now=now,
                tz=tz,
                public_url=public_url,
                actor=ACTOR,
            )
            sent += 1
    return sent


def send_escalation_step(
    conn: Connection,
    *,
    alert: Mapping[str, Any],
    rule_row: dict[str, Any],
    index: int,
    channels: list[int],
    now: datetime,
    tz: ZoneInfo,
    public_url: str,
    actor: str,
) -> bool:
    """Notify one escalation step and move the instance's step counter past it."""
    sent = notify_by_hand(
        conn,
        alert=alert,
        rule_row=rule_row,
        kind="escalation",
        now=now,
        tz=tz,
        public_url=public_url,
        channels=channels,
        step=index,
    )
    rule_id = int(rule_row["id"])
    conn.execute(
        update(alert_instances)
        .where(alert_instances.c.id == alert["id"])
        .values(escalation_step=index + 1, last_escalated_at=now)
    )
    record_event(
        conn,
        instance_id=alert["id"],
        rule_id=rule_id,
        now=now,
        from_status=alert["status"],
        to_status=alert["status"],
        actor=actor,
        message=f"escalated to step {index + 1}" + ("" if sent else " (silenced)"),
    )
    add_alert_timeline(
        conn, alert, "escalated", f"{alert['alert_name']} escalated to step {index + 1}", actor, now
    )
    return sent


def add_alert_timeline(
    conn: Connection, alert: Mapping[str, Any], kind: str, text: str, actor: str, now: datetime
) -> None:
    if alert.get("incident_id"):
        add_timeline_entry(
            conn,
            incident_id=alert["incident_id"],
            kind=kind,
            message=text,
            actor=actor,
            now=now,
            details={"alert_instance_id": alert["id"]},
        )


def notify_by_hand(
    conn: Connection,
    *,
    alert: Mapping[str, Any],
    rule_row: dict[str, Any],
    kind: str,
    now: datetime,
    tz: ZoneInfo,
    public_url: str,
    channels: list[int] | None = None,
    step: int | None = None,
) -> bool:
    """Queue one notification about `alert` outside an evaluation cycle (escalation steps,
    resolving by hand), under the same silences; True unless a silence covered it."""
    rule = rule_from_row(rule_row)
    cycle = Cycle(
        conn, now, tz, public_url, {rule.id: rule_row}, list_silences(conn, now=now), EvalReport()
    )
    view = {**alert, "severity": alert["severity"], "threshold": rule.condition.value}
    dims = alert.get("trigger_dimensions") or {}
    return notify_alert(cycle, rule, view, dims, kind, channels=channels, step=step)
