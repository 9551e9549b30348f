"""What people do to alerts and rules, with role checks and the audit log.

Responders acknowledge, suppress and escalate; admins manage rules. Every action is written
to the audit log with the user, to the alert's history, and to its incident's timeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select, update

from monitoring_core.alerts.escalation import parse_steps, step_due_at
from monitoring_core.alerts.evaluation import Cycle, EvalReport, notify_alert
from monitoring_core.alerts.rules import rule_from_row
from monitoring_core.alerts.silences import list_silences
from monitoring_core.alerts.store import (
    RuleNotFound,
    create_rule,
    delete_rule,
    get_instance,
    get_rule,
    record_event,
    update_rule,
)
from monitoring_core.audit import record_audit
from monitoring_core.enums import Role
from monitoring_core.incidents.store import add_timeline_entry
from monitoring_core.schema import alert_instances, incidents
from monitoring_core.schema import escalation_policies as ep
from monitoring_core.wedding_calendar import is_wedding_day

__all__ = [
    "ActionRefused",
    "PermissionDenied",
    "acknowledge_alert",
    "escalate_alert",
    "policy_for",
    "require_role",
    "rule_create",
    "rule_delete",
    "rule_update",
    "suppress_alert",
]

_RANK = {Role.VIEWER: 0, Role.RESPONDER: 1, Role.ADMIN: 2}
_ACKABLE = ("firing", "pending", "no_data", "suppressed")


class PermissionDenied(PermissionError):
    """The user's role does not allow this action."""


class ActionRefused(ValueError):
    """The alert is not in a state this action applies to."""


def require_role(role: str, minimum: Role) -> None:
    """PermissionDenied unless `role` is at least `minimum` (viewer < responder < admin)."""
    try:
        rank = _RANK[Role(role)]
    except ValueError:
        raise PermissionDenied(f"unknown role {role!r}") from None
    if rank < _RANK[minimum]:
        raise PermissionDenied(f"{minimum.value} role required")


def _timeline(
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


def acknowledge_alert(
    conn: Connection, *, instance_id: int, actor: str, role: str, now: datetime
) -> dict[str, Any]:
    """Acknowledge: escalation stops, repeats stop; resolving still notifies."""
    require_role(role, Role.RESPONDER)
    alert = get_instance(conn, instance_id=instance_id, lock=True)
    if alert["status"] not in _ACKABLE:
        raise ActionRefused(f"a {alert['status']} alert cannot be acknowledged")
    conn.execute(
        update(alert_instances)
        .where(alert_instances.c.id == instance_id)
        .values(status="acknowledged", acknowledged_at=now, acknowledged_by=actor)
    )
    record_event(
        conn,
        instance_id=instance_id,
        rule_id=alert["alert_configuration_id"],
        now=now,
        from_status=alert["status"],
        to_status="acknowledged",
        actor=actor,
        message=f"acknowledged by {actor}",
    )
    record_audit(
        conn, actor=actor, action="alert.acknowledge", target=f"alert:{instance_id}", now=now
    )
    _timeline(
        conn,
        alert,
        "alert_acknowledged",
        f"{alert['alert_name']} acknowledged by {actor}",
        actor,
        now,
    )
    if alert.get("incident_id"):
        conn.execute(
            update(incidents)
            .where(incidents.c.id == alert["incident_id"], incidents.c.acknowledged_at.is_(None))
            .values(acknowledged_at=now, updated_at=now)
        )
    return get_instance(conn, instance_id=instance_id)


def suppress_alert(
    conn: Connection,
    *,
    instance_id: int,
    actor: str,
    role: str,
    now: datetime,
    minutes: float,
    reason: str,
) -> dict[str, Any]:
    """Suppress for `minutes`: no notifications; state is still evaluated and recorded."""
    require_role(role, Role.RESPONDER)
    if not 0 < minutes <= 7 * 24 * 60:
        raise ActionRefused("minutes must be between 1 and 10080")
    if not reason.strip():
        raise ActionRefused("a reason is required")
    alert = get_instance(conn, instance_id=instance_id, lock=True)
    if alert["status"] not in (*_ACKABLE, "acknowledged"):
        raise ActionRefused(f"a {alert['status']} alert cannot be suppressed")
    until = now + timedelta(minutes=minutes)
    conn.execute(
        update(alert_instances)
        .where(alert_instances.c.id == instance_id)
        .values(status="suppressed", suppressed_until=until)
    )
    record_event(
        conn,
        instance_id=instance_id,
        rule_id=alert["alert_configuration_id"],
        now=now,
        from_status=alert["status"],
        to_status="suppressed",
        actor=actor,
        message=f"suppressed until {until.isoformat()}: {reason}",
    )
    record_audit(
        conn,
        actor=actor,
        action="alert.suppress",
        target=f"alert:{instance_id}",
        details={"minutes": minutes, "reason": reason},
        now=now,
    )
    _timeline(
        conn,
        alert,
        "note",
        f"{alert['alert_name']} suppressed {minutes:g} min by {actor}: {reason}",
        actor,
        now,
    )
    return get_instance(conn, instance_id=instance_id)


def policy_for(
    conn: Connection, rule_row: Mapping[str, Any], now: datetime, tz: ZoneInfo
) -> Mapping[str, Any] | None:
    """On Saturdays the wedding-day policy; otherwise the rule's own (or none)."""
    if is_wedding_day(now, tz):
        wedding = conn.execute(select(ep).where(ep.c.is_wedding_day).order_by(ep.c.id)).first()
        if wedding is not None:
            return dict(wedding._mapping)
    if rule_row.get("escalation_policy_id") is None:
        return None
    row = conn.execute(select(ep).where(ep.c.id == rule_row["escalation_policy_id"])).first()
    return dict(row._mapping) if row is not None else None


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
    rule = rule_from_row(rule_row)
    cycle = Cycle(
        conn, now, tz, public_url, {rule.id: rule_row}, list_silences(conn, now=now), EvalReport()
    )
    view = {**alert, "severity": alert["severity"], "threshold": rule.condition.value}
    sent = notify_alert(
        cycle,
        rule,
        view,
        alert.get("trigger_dimensions") or {},
        "escalation",
        channels=channels,
        step=index,
    )
    conn.execute(
        update(alert_instances)
        .where(alert_instances.c.id == alert["id"])
        .values(escalation_step=index + 1, last_escalated_at=now)
    )
    record_event(
        conn,
        instance_id=alert["id"],
        rule_id=rule.id,
        now=now,
        from_status=alert["status"],
        to_status=alert["status"],
        actor=actor,
        message=f"escalated to step {index + 1}" + ("" if sent else " (silenced)"),
    )
    _timeline(
        conn, alert, "escalated", f"{alert['alert_name']} escalated to step {index + 1}", actor, now
    )
    return sent


def escalate_alert(
    conn: Connection,
    *,
    instance_id: int,
    actor: str,
    role: str,
    now: datetime,
    tz: ZoneInfo,
    public_url: str,
) -> dict[str, Any]:
    """Climb one step now, whatever the policy's timing (responders' "escalate" button)."""
    require_role(role, Role.RESPONDER)
    alert = get_instance(conn, instance_id=instance_id, lock=True)
    if alert["status"] not in ("firing", "acknowledged", "pending", "no_data"):
        raise ActionRefused(f"a {alert['status']} alert cannot be escalated")
    rule_row = get_rule(conn, rule_id=alert["alert_configuration_id"])
    policy = policy_for(conn, rule_row, now, tz)
    steps = parse_steps(policy["steps"]) if policy else []
    if not steps:
        raise ActionRefused("the rule has no escalation policy with steps")
    index = int(alert["escalation_step"])
    if step_due_at(steps, index, start=now, repeat=bool(policy and policy["repeat"])) is None:
        index = len(steps) - 1  # exhausted: re-page the last step
    send_escalation_step(
        conn,
        alert=alert,
        rule_row=rule_row,
        index=index,
        channels=list(steps[index % len(steps)].channels),
        now=now,
        tz=tz,
        public_url=public_url,
        actor=actor,
    )
    record_audit(
        conn,
        actor=actor,
        action="alert.escalate",
        target=f"alert:{instance_id}",
        details={"step": index + 1},
        now=now,
    )
    return get_instance(conn, instance_id=instance_id)


def rule_create(
    conn: Connection, *, body: Mapping[str, Any], actor: str, role: str, now: datetime
) -> dict[str, Any]:
    require_role(role, Role.ADMIN)
    rule = create_rule(conn, body=body, created_by=actor, now=now)
    record_audit(
        conn,
        actor=actor,
        action="alert_rule.create",
        target=f"rule:{rule['id']}",
        details={"alert_name": rule["alert_name"]},
        now=now,
    )
    return rule


def rule_update(
    conn: Connection, *, rule_id: int, body: Mapping[str, Any], actor: str, role: str, now: datetime
) -> dict[str, Any]:
    require_role(role, Role.ADMIN)
    rule = update_rule(conn, rule_id=rule_id, body=body, now=now)
    record_audit(
        conn,
        actor=actor,
        action="alert_rule.update",
        target=f"rule:{rule_id}",
        details={"fields": sorted(body)},
        now=now,
    )
    return rule


def rule_delete(conn: Connection, *, rule_id: int, actor: str, role: str, now: datetime) -> None:
    require_role(role, Role.ADMIN)
    delete_rule(conn, rule_id=rule_id)
    record_audit(conn, actor=actor, action="alert_rule.delete", target=f"rule:{rule_id}", now=now)


__all__ += ["RuleNotFound", "send_escalation_step"]
