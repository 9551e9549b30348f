"""Incident escalation: unacknowledged SEV1/SEV2 incidents climb their escalation policy.

- Which policy: `policies.store.policy_for` over the incident's own `escalation_policy_id`,
  then its first linked alert rule's (on a Saturday the wedding-day policy; failing all, the
  policy named "Default"). No policy: nothing to page.
- Before acknowledgement the steps come due from `detected_at` (`policies.steps.due_steps`). While a
  linked alert is still firing, its own climb pages the same people, so the incident waits and
  starts from the alert's step counter afterwards (nobody is paged twice for one step).
- After acknowledgement, an incident not yet mitigating re-pages the next step (the last one
  once the policy is exhausted) every `reescalate_minutes` of its response target
  (SEV1 30, SEV2 60; Saturdays 15 and 30) — "acknowledged and then forgotten" is caught.
- Acknowledging (or mitigating, resolving) stops it: the decision reads only the row.
Each page is an outbox row per channel plus an `escalated` timeline entry.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, select, update

from monitoring_core.audit import actor_name, system_actor
from monitoring_core.enums import IncidentStatus, Role
from monitoring_core.incidents.lifecycle import (
    ACTIVE_STATUSES,
    ESCALATED_SEVERITIES,
    TransitionRefused,
    response_target,
)
from monitoring_core.incidents.service import IncidentNotFound
from monitoring_core.incidents.store import add_timeline_entry
from monitoring_core.notify.outbox import enqueue, outbox_rows
from monitoring_core.notify.templates import Message, inert
from monitoring_core.oncall.routing import recipients
from monitoring_core.policies.steps import Step, due_steps, parse_steps
from monitoring_core.policies.store import policy_for
from monitoring_core.roles import require_role
from monitoring_core.schema import (
    alert_instances,
    alert_rules,
    incident_alerts,
    incidents,
    notification_channels,
)
from monitoring_core.wedding_calendar import is_wedding_day

__all__ = [
    "ACTOR",
    "Page",
    "escalate_incident_by_hand",
    "escalate_incidents",
    "incident_link",
    "incident_policy",
    "pages_due",
]

ACTOR = system_actor("escalation")


@dataclass(frozen=True)
class Page:
    index: int  # the policy step paged (0-based)
    channels: tuple[int, ...]
    reason: str  # unacknowledged | not_mitigated | by_hand
    step: Step | None = None  # its people and schedules, resolved when sent (oncall.routing)


def pages_due(
    incident: Mapping[str, Any],
    steps: Sequence[Step],
    *,
    now: datetime,
    repeat: bool,
    is_saturday: bool,
    alert_firing: bool = False,
    done: int | None = None,
) -> list[Page]:
    """The pages an incident needs at `now` (pure)."""
    if not steps or incident["severity"] not in ESCALATED_SEVERITIES:
        return []
    if incident["status"] not in ACTIVE_STATUSES:
        return []
    done = int(incident["escalation_step"]) if done is None else done
    if incident["acknowledged_at"] is None:
        if alert_firing:
            return []
        due = due_steps(steps, done=done, start=incident["detected_at"], now=now, repeat=repeat)
        return [Page(i, s.channels, "unacknowledged", s) for i, s in due]
    if incident["status"] == IncidentStatus.MITIGATING:
        return []
    target = response_target(incident["severity"], is_saturday=is_saturday)
    if target.reescalate_minutes is None:
        return []
    since = incident["acknowledged_at"]
    if incident.get("last_escalated_at") is not None:
        since = max(since, incident["last_escalated_at"])  # the clock restarts at each re-page
    if now - since < timedelta(minutes=target.reescalate_minutes):
        return []
    index = min(done, len(steps) - 1)
    return [Page(index, steps[index].channels, "not_mitigated", steps[index])]


def incident_policy(
    conn: Connection, incident: Mapping[str, Any], now: datetime, tz: ZoneInfo
) -> dict[str, Any] | None:
    """The policy to climb now: `policy_for` over the incident's own, then its first rule's."""
    rule_policy = conn.execute(
        select(alert_rules.c.escalation_policy_id)
        .join(alert_instances, alert_instances.c.alert_configuration_id == alert_rules.c.id)
        .join(incident_alerts, incident_alerts.c.alert_instance_id == alert_instances.c.id)
        .where(incident_alerts.c.incident_id == incident["id"])
        .where(alert_rules.c.escalation_policy_id.is_not(None))
        .order_by(alert_instances.c.id)
        .limit(1)
    ).scalar()
    return policy_for(
        conn, now=now, tz=tz, policy_ids=[incident.get("escalation_policy_id"), rule_policy]
    )


def _alert_state(conn: Connection, incident_id: int) -> tuple[bool, int]:
    """(a linked alert is still firing, the highest step its climb reached)."""
    row = conn.execute(
        select(
            func.bool_or(alert_instances.c.status == "firing"),
            func.max(alert_instances.c.escalation_step),
        )
        .join(incident_alerts, incident_alerts.c.alert_instance_id == alert_instances.c.id)
        .where(incident_alerts.c.incident_id == incident_id)
    ).one()
    return bool(row[0]), int(row[1] or 0)


def incident_link(public_url: str, incident_id: int) -> str:
    return f"{public_url.rstrip('/')}/response-incidents?incident={incident_id}"


_WHY_PAGED = {
    "unacknowledged": "nobody has acknowledged yet",
    "not_mitigated": "acknowledged but still not mitigated",
    "by_hand": "escalated by hand",
}
_WHY_TIMELINE = {
    "unacknowledged": "not acknowledged",
    "not_mitigated": "still not mitigated",
    "by_hand": "by hand",
}


def _message(incident: Mapping[str, Any], page: Page, public_url: str) -> Message:
    why = _WHY_PAGED[page.reason]
    number, name = incident["incident_number"], inert(incident["title"])
    title = f"[ESCALATED] {incident['severity']}: {number} {name}"
    body = "\n".join(
        [
            f"Incident: {incident['incident_number']} ({incident['status']})",
            f"Severity: {incident['severity']} · wedding impact: {incident['wedding_impact']}",
            f"Services: {inert(', '.join(incident['affected_services'] or [])) or 'n/a'}",
            f"Detected: {incident['detected_at'].isoformat()}",
            f"Escalation step {page.index + 1}: {why}",
            f"Open: {incident_link(public_url, int(incident['id']))}",
        ]
    )
    return Message(title, body, "failure")


def _send(
    conn: Connection,
    incident: Mapping[str, Any],
    page: Page,
    policy: Mapping[str, Any],
    now: datetime,
    public_url: str,
    actor: str = ACTOR,
    tz: ZoneInfo | None = None,
) -> None:
    key = f"incident:{incident['id']}:step:{page.index}"
    if page.reason == "not_mitigated":
        key = f"incident:{incident['id']}:again:{now.isoformat()}"
    elif page.reason == "by_hand":  # each press of the button is a page of its own
        key = f"incident:{incident['id']}:by_hand:{now.isoformat()}:{secrets.token_hex(4)}"
    wanted = list(page.channels)
    if page.step is not None and tz is not None:  # the on-call person's, the people's contacts
        wanted = recipients(conn, page.step.targets(), now=now, tz=tz)
    # A channel deleted after the policy was written is skipped, not a failed job for everyone.
    known = set(
        conn.execute(
            select(notification_channels.c.id).where(notification_channels.c.id.in_(wanted))
        ).scalars()
    )
    channels = [c for c in wanted if c in known]
    rows = outbox_rows(
        channel_ids=channels,
        message=_message(incident, page, public_url),
        kind="escalation",
        idempotency_key=key,
        now=now,
        incident_id=int(incident["id"]),
    )
    ids = enqueue(conn, rows)
    conn.execute(
        update(incidents)
        .where(incidents.c.id == incident["id"])
        .values(escalation_step=page.index + 1, last_escalated_at=now)
    )
    why = _WHY_TIMELINE[page.reason]
    if page.reason == "by_hand":
        why = f"by {actor_name(actor)}"
    add_timeline_entry(
        conn,
        incident_id=int(incident["id"]),
        kind="escalated",
        actor=actor,
        now=now,
        message=f"Escalated to step {page.index + 1} of {policy['name']} ({why}); "
        f"{len(ids)} notification(s) queued",
        details={
            "step": page.index + 1,
            "policy": policy["name"],
            "reason": page.reason,
            "channels": channels,
            "outbox_ids": ids,
        },
    )


def escalate_incidents(conn: Connection, *, now: datetime, tz: ZoneInfo, public_url: str) -> int:
    """Page every escalation that has come due; the number of pages sent."""
    rows = conn.execute(
        select(incidents)
        .where(
            incidents.c.severity.in_([s.value for s in ESCALATED_SEVERITIES]),
            incidents.c.status.in_([s.value for s in ACTIVE_STATUSES]),
        )
        .order_by(incidents.c.id)
        .with_for_update(skip_locked=True)
    ).all()
    saturday, sent = is_wedding_day(now, tz), 0
    for row in rows:
        incident = dict(row._mapping)
        policy = incident_policy(conn, incident, now, tz)
        if policy is None:
            continue
        firing, alert_step = _alert_state(conn, incident["id"])
        done = max(int(incident["escalation_step"]), alert_step)
        for page in pages_due(
            incident,
            parse_steps(policy["steps"]),
            now=now,
            repeat=bool(policy["repeat"]),
            is_saturday=saturday,
            alert_firing=firing,
            done=done,
        ):
            _send(conn, incident, page, policy, now, public_url, tz=tz)
            incident["escalation_step"] = page.index + 1
            sent += 1
    return sent


def escalate_incident_by_hand(
    conn: Connection,
    *,
    incident_id: int,
    actor: str,
    role: str,
    now: datetime,
    tz: ZoneInfo,
    public_url: str,
) -> dict[str, Any]:
    """Page the incident's next escalation step now, whatever the policy's timing (the last
    step again once the policy is exhausted); on the timeline with who asked."""
    require_role(role, Role.RESPONDER)
    row = conn.execute(
        select(incidents).where(incidents.c.id == incident_id).with_for_update()
    ).first()
    if row is None:
        raise IncidentNotFound(incident_id)
    incident = dict(row._mapping)
    if incident["status"] not in ACTIVE_STATUSES:
        raise TransitionRefused(f"a {incident['status']} incident cannot be escalated")
    policy = incident_policy(conn, incident, now, tz)
    steps = parse_steps(policy["steps"]) if policy else []
    if policy is None or not steps:
        raise TransitionRefused("no escalation policy with steps applies to this incident")
    index = min(int(incident["escalation_step"]), len(steps) - 1)
    page = Page(index, steps[index].channels, "by_hand", steps[index])
    _send(conn, incident, page, policy, now, public_url, actor=actor, tz=tz)
    return {"incident_id": incident_id, "step": index + 1, "policy": policy["name"]}
