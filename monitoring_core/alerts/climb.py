"""The escalation job: unacknowledged firing alerts climb their policy's steps.

On a Saturday the wedding-day policy (immediate, 5 and 15 minutes) replaces the rule's own;
the step counter carries over, so switching policy never re-sends a step already sent.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from monitoring_core.alerts.actions import policy_for, send_escalation_step
from monitoring_core.alerts.escalation import due_steps, parse_steps
from monitoring_core.alerts.store import get_rule, instance_to_api
from monitoring_core.schema import alert_instances, alert_rules

__all__ = ["escalate_unacknowledged"]

ACTOR = "escalation"


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
    for row in rows:
        alert = instance_to_api(dict(row._mapping))
        rule_id = alert["alert_configuration_id"]
        rule_row = rules.setdefault(rule_id, get_rule(conn, rule_id=rule_id))
        policy = policy_for(conn, rule_row, now, tz)
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
                channels=list(step.channels),
                now=now,
                tz=tz,
                public_url=public_url,
                actor=ACTOR,
            )
            sent += 1
    return sent
