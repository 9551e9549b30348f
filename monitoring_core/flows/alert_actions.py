"""What responders do to alerts: acknowledge, suppress, escalate by hand.

Each action checks the role, changes the alert, and is written to the audit log, to the
alert's history and to its incident's timeline (so it crosses alerts and incidents).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, update

from monitoring_core.alerts.service import ActionRefused
from monitoring_core.alerts.store import get_instance, get_rule, record_event
from monitoring_core.audit import actor_name, record_audit
from monitoring_core.enums import Role
from monitoring_core.flows.alert_escalation import (
    add_alert_timeline,
    notify_by_hand,
    send_escalation_step,
)
from monitoring_core.policies.steps import parse_steps, step_due_at
from monitoring_core.policies.store import policy_for, wedding_day_applies, wedding_min_severity
from monitoring_core.roles import PermissionDenied, require_role
from monitoring_core.schema import alert_instances, incidents

__all__ = [
    "ActionRefused",
    "PermissionDenied",
    "acknowledge_alert",
    "escalate_alert",
    "resolve_alert",
    "suppress_alert",
]

_ACKABLE = ("firing", "pending", "no_data", "suppressed")
_RESOLVABLE = (*_ACKABLE, "acknowledged")


def _move(
    conn: Connection,
    alert: dict[str, Any],
    *,
    to: str,
    values: dict[str, Any],
    actor: str,
    now: datetime,
    event: str,
    timeline: tuple[str, str],
    details: dict[str, Any] | None = None,
) -> None:
    """One person's action on an alert: its new state, its history row, the audit row
    (`alert.<verb>`) and, when it has an incident, the incident's timeline entry."""
    conn.execute(
        update(alert_instances).where(alert_instances.c.id == alert["id"]).values(**values)
    )
    record_event(
        conn,
        instance_id=alert["id"],
        rule_id=alert["alert_configuration_id"],
        now=now,
        from_status=alert["status"],
        to_status=to,
        actor=actor,
        message=event,
    )
    verb = {"acknowledged": "acknowledge", "suppressed": "suppress", "resolved": "resolve"}[to]
    record_audit(
        conn,
        actor=actor,
        action=f"alert.{verb}",
        target=f"alert:{alert['id']}",
        details=details,
        now=now,
    )
    add_alert_timeline(conn, alert, timeline[0], timeline[1], actor, now)


def acknowledge_alert(
    conn: Connection, *, instance_id: int, actor: str, role: str, now: datetime
) -> dict[str, Any]:
    """Acknowledge: escalation stops, repeats stop; resolving still notifies."""
    require_role(role, Role.RESPONDER)
    alert = get_instance(conn, instance_id=instance_id, lock=True)
    if alert["status"] not in _ACKABLE:
        raise ActionRefused(f"a {alert['status']} alert cannot be acknowledged")
    _move(
        conn,
        alert,
        to="acknowledged",
        values={"status": "acknowledged", "acknowledged_at": now, "acknowledged_by": actor},
        actor=actor,
        now=now,
        event=f"acknowledged by {actor_name(actor)}",
        timeline=(
            "alert_acknowledged",
            f"{alert['alert_name']} acknowledged by {actor_name(actor)}",
        ),
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
    _move(
        conn,
        alert,
        to="suppressed",
        values={"status": "suppressed", "suppressed_until": until},
        actor=actor,
        now=now,
        event=f"suppressed until {until:%Y-%m-%d %H:%M} UTC by {actor_name(actor)}: {reason}",
        timeline=(
            "note",
            f"{alert['alert_name']} suppressed {minutes:g} min by {actor_name(actor)}: {reason}",
        ),
        details={"minutes": minutes, "reason": reason},
    )
    return get_instance(conn, instance_id=instance_id)


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
    policy = policy_for(
        conn,
        now=now,
        tz=tz,
        policy_ids=[rule_row.get("escalation_policy_id")],
        wedding_day_eligible=wedding_day_applies(
            rule_row, alert["severity"], wedding_min_severity(conn)
        ),
    )
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


def resolve_alert(
    conn: Connection,
    *,
    instance_id: int,
    actor: str,
    role: str,
    now: datetime,
    tz: ZoneInfo,
    public_url: str,
    reason: str = "",
) -> dict[str, Any]:
    """Resolve by hand: the alert stops paging and its channels hear it is resolved. If the
    condition still holds, the next evaluation starts a new episode (pending, then firing)."""
    require_role(role, Role.RESPONDER)
    alert = get_instance(conn, instance_id=instance_id, lock=True)
    if alert["status"] not in _RESOLVABLE:
        raise ActionRefused(f"a {alert['status']} alert cannot be resolved")
    why = f": {reason.strip()}" if reason.strip() else ""
    _move(
        conn,
        alert,
        to="resolved",
        values={"status": "resolved", "resolved_at": now, "suppressed_until": None},
        actor=actor,
        now=now,
        event=f"resolved by hand by {actor_name(actor)}{why}",
        timeline=(
            "alert_resolved",
            f"{alert['alert_name']} resolved by hand by {actor_name(actor)}{why}",
        ),
        details={"reason": reason.strip()} if why else None,
    )
    resolved = get_instance(conn, instance_id=instance_id)
    rule_row = get_rule(conn, rule_id=alert["alert_configuration_id"])
    notify_by_hand(
        conn,
        alert=resolved,
        rule_row=rule_row,
        kind="resolved",
        now=now,
        tz=tz,
        public_url=public_url,
    )
    return resolved
