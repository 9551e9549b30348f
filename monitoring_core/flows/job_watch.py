"""A worker job that keeps failing raises the system's own alert.

A job whose newest JOB_FAILING_AFTER runs all failed fires the built-in rule "Worker job
failing" (key `job:NAME`), notified on every enabled channel with the last error; its next
successful run resolves it. Like the channel self-alert (`flows/notification_delivery.py`) the
rule is created disabled: this flow drives it, not rule evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, text

from monitoring_core.alerts.engine import Check, Decision, self_alert_state
from monitoring_core.alerts.store import load_states
from monitoring_core.alerts.writes import save_decision
from monitoring_core.audit import system_actor
from monitoring_core.health.watch import JOB_FAILING_AFTER, failing_jobs
from monitoring_core.notify.outbox import enqueue, outbox_rows
from monitoring_core.notify.templates import Message
from monitoring_core.schema import alert_rules, notification_channels

__all__ = ["JOB_RULE_NAME", "JobWatchReport", "ensure_job_rule", "watch_failing_jobs"]

JOB_RULE_NAME = "Worker job failing"
JOB_RULE_OWNER = system_actor("worker")  # tells the built-in rule from a namesake
_PREFIX = "job:"
_RAISED = ("firing", "acknowledged")  # an acknowledged alert is not fired again


@dataclass
class JobWatchReport:
    fired: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    failing: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.failing)} jobs failing, fired {len(self.fired)}, "
            f"resolved {len(self.resolved)}"
        )


def ensure_job_rule(conn: Connection) -> int:
    """The built-in rule's id, created on first use."""
    found = conn.execute(
        select(alert_rules.c.id).where(
            alert_rules.c.alert_name == JOB_RULE_NAME, alert_rules.c.created_by == JOB_RULE_OWNER
        )
    ).scalar()
    if found is not None:
        return int(found)
    values = {
        "alert_name": JOB_RULE_NAME,
        "description": "Raised by the worker when one of its jobs keeps failing.",
        "condition_config": {"type": "absence", "metric": "job_runs"},
        "severity_level": "high",
        "is_enabled": False,
        "created_by": JOB_RULE_OWNER,
    }
    return int(
        conn.execute(insert(alert_rules).values(values).returning(alert_rules.c.id)).scalar_one()
    )


def watch_failing_jobs(conn: Connection, now: datetime, *, public_url: str) -> JobWatchReport:
    """Fire the self-alert for newly failing jobs and resolve it for recovered ones."""
    report, rule_id = JobWatchReport(), ensure_job_rule(conn)
    failing = {job["job"]: job for job in failing_jobs(conn, threshold=JOB_FAILING_AFTER)}
    report.failing = sorted(failing)
    states = load_states(conn, [rule_id])
    firing = {
        key[1][len(_PREFIX) :]: row for key, row in states.items() if row["status"] in _RAISED
    }
    for job in sorted(failing.keys() - firing.keys()):
        instance_id = _save(conn, rule_id, job, states.get((rule_id, _PREFIX + job)), True, now)
        _notify(conn, instance_id, failing[job], now, public_url)
        report.fired.append(job)
    for job in sorted(firing.keys() - failing.keys()):
        if _last_run_ok(conn, job):
            _save(conn, rule_id, job, firing[job], False, now)
            report.resolved.append(job)
    return report


def _last_run_ok(conn: Connection, job: str) -> bool:
    newest = text("SELECT ok FROM job_runs WHERE job = :j ORDER BY started_at DESC LIMIT 1")
    return bool(conn.execute(newest, {"j": job}).scalar())


def _save(
    conn: Connection, rule_id: int, job: str, row: dict[str, Any] | None, fire: bool, now: datetime
) -> int:
    before = row["status"] if row else None
    state = self_alert_state(fire, row, now)
    message = f"{JOB_FAILING_AFTER}+ failed runs" if fire else "the job runs again"
    decision = Decision(state, Check(fire, None, None, message), "high", from_status=before)
    instance_id = save_decision(
        conn,
        rule_id=rule_id,
        alert_key=_PREFIX + job,
        dimensions={"job": job},
        decision=decision,
        now=now,
        instance_id=row["id"] if row else None,
    )
    assert instance_id is not None
    return instance_id


def _notify(
    conn: Connection, instance_id: int, job: dict[str, Any], now: datetime, public_url: str
) -> None:
    channels = conn.execute(
        select(notification_channels.c.id).where(notification_channels.c.is_enabled)
    ).scalars()
    error = str(job["last_error"] or "")[:500]
    message = Message(
        f"[FIRING] HIGH: worker job {job['job']} keeps failing",
        f"The last {job['failures']} runs of {job['job']} failed.\nLast error: {error}\n"
        f"See the Health page: {public_url.rstrip('/')}/monitoring-health",
        "failure",
    )
    rows = outbox_rows(
        channel_ids=list(channels),
        message=message,
        kind="self",
        idempotency_key=f"self:{instance_id}:{now.isoformat()}",
        now=now,
        alert_instance_id=instance_id,
    )
    enqueue(conn, rows)
