"""Demo alerting: a local webhook channel, the default and wedding-day escalation policies,
rules on the demo's metrics (from the templates where they fit), silences, and a past of
alert episodes (fired, acknowledged, resolved) written as history."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, insert

from monitoring_core.alerts.rules import TEMPLATES
from monitoring_core.alerts.silences import create_silence
from monitoring_core.alerts.store import create_rule, record_event
from monitoring_core.audit import system_actor, user_actor
from monitoring_core.notify.channels import create_channel
from monitoring_core.schema import alert_instances, escalation_policies

__all__ = ["load"]

ACTOR = system_actor("demo")
# Nothing listens here until you run a receiver (see README): the channel starts disabled so
# the demo does not raise "channel keeps failing" self-alerts.
WEBHOOK = "json://127.0.0.1:9099/alerts"


def _rules(channel: int, default: int) -> list[dict[str, Any]]:
    def threshold(metric: str, value: float, **cfg: Any) -> dict[str, Any]:
        return {
            "type": "threshold",
            "metric": metric,
            "aggregation": cfg.pop("aggregation", "max"),
            "operator": cfg.pop("operator", "greater_than"),
            "value": value,
            "duration_minutes": cfg.pop("duration", 5),
            "window_minutes": 5,
            **cfg,
        }

    rules: list[dict[str, Any]] = [
        {
            "alert_name": "Payment webhooks backing up",
            "severity_level": "critical",
            "service_name": "payments",
            "condition_config": threshold("queue_depth", 30, filters={"queue": "payment_webhooks"}),
            "weekend_escalation": True,
        },
        {
            "alert_name": "Database pool nearly full",
            "severity_level": "high",
            "condition_config": threshold(
                "db_connections", 90, aggregation="avg", filters={"pool": "primary"}
            ),
        },
        {
            "alert_name": "Photo processing backlog",
            "severity_level": "medium",
            "service_name": "photos",
            "condition_config": threshold("queue_depth", 40, filters={"queue": "photo_processing"}),
            "wedding_season_adjustment": True,
        },
        # a robust z-score needs a few weeks: against one week any difference is infinite
        {
            "alert_name": "Active users anomaly",
            "severity_level": "low",
            "condition_config": {
                "type": "anomaly",
                "metric": "active_users",
                "aggregation": "avg",
                "z_threshold": 6,
                "weeks": 4,
                "min_baseline": 3,
            },
        },
        {
            "alert_name": "Active users heartbeat",
            "severity_level": "high",
            "condition_config": {"type": "absence", "metric": "active_users", "window_minutes": 10},
        },
        {**TEMPLATES["service_unavailable"]},
        {**TEMPLATES["payment_failures"]},
    ]
    for rule in rules:
        rule.update(notification_channels=[channel], escalation_policy=default)
    return rules


def _history(
    conn: Connection, rule: dict[str, Any], *, days: int, now: datetime, rng: np.random.Generator
) -> int:
    """A few past episodes of one rule: firing, mostly acknowledged, then resolved."""
    instance_id = conn.execute(
        insert(alert_instances)
        .values(
            alert_configuration_id=rule["id"],
            alert_key="",
            status="resolved",
            severity=rule["severity_level"],
        )
        .returning(alert_instances.c.id)
    ).scalar_one()
    written, count, first, last = 0, 0, now, now
    for day in sorted(rng.choice(days, size=min(days, 3), replace=False), reverse=True):
        start = now - timedelta(days=int(day) + 1, hours=float(rng.uniform(0, 20)))
        end = start + timedelta(minutes=float(rng.uniform(8, 90)))
        steps: list[tuple[datetime, str | None, str, str | None]] = [(start, None, "firing", None)]
        if rng.random() < 0.7:
            steps.append(
                (
                    start + timedelta(minutes=float(rng.uniform(1, 6))),
                    "firing",
                    "acknowledged",
                    user_actor("sam"),
                )
            )
        steps.append((end, steps[-1][2], "resolved", None))
        for at, before, after, actor in steps:
            record_event(
                conn,
                instance_id=instance_id,
                rule_id=rule["id"],
                now=at,
                from_status=before,
                to_status=after,
                # past the threshold; an anomaly rule has none to go past: no value
                value=(
                    float(limit) * 1.3
                    if (limit := rule["condition_config"].get("value")) is not None
                    else None
                ),
                actor=actor,
                message="demo history",
            )
            written += 1
        count, first, last = count + 1, start, end
    conn.execute(
        alert_instances.update()
        .where(alert_instances.c.id == instance_id)
        .values(
            trigger_count=count,
            first_triggered_at=first,
            last_triggered_at=last,
            resolved_at=last,
            last_evaluated_at=last,
        )
    )
    return written


def load(conn: Connection, *, days: int, now: datetime, rng: np.random.Generator) -> dict[str, int]:
    channel = create_channel(
        conn, body={"name": "Local webhook", "url": WEBHOOK, "tags": ["demo"], "is_enabled": False}
    )["id"]
    policies = [
        (
            "Default",
            [
                {"after_minutes": 0, "channels": [channel]},
                {"after_minutes": 15, "channels": [channel]},
                {"after_minutes": 60, "channels": [channel]},
            ],
            False,
        ),
        (
            "Wedding day",
            [
                {"after_minutes": 0, "channels": [channel]},
                {"after_minutes": 5, "channels": [channel]},
                {"after_minutes": 15, "channels": [channel]},
            ],
            True,
        ),
    ]
    ids = [
        conn.execute(
            insert(escalation_policies)
            .values(name=n, steps=s, is_wedding_day=w)
            .returning(escalation_policies.c.id)
        ).scalar_one()
        for n, s, w in policies
    ]
    events = 0
    for body in _rules(channel, ids[0]):
        rule = create_rule(conn, body=body, created_by=ACTOR, now=now - timedelta(days=days))
        events += _history(conn, rule, days=days, now=now, rng=rng)
    create_silence(
        conn,
        matchers=[{"name": "service", "value": "photos"}],
        starts_at=now - timedelta(days=days),
        ends_at=now + timedelta(days=365),
        reason="Tuesday deploys",
        created_by=ACTOR,
        recurrence={"weekday": 1, "start": "02:00", "end": "03:00"},
    )
    return {
        "notification_channels": 1,
        "escalation_policies": 2,
        "alert_rules": 7,
        "alert_events": events,
        "silences": 1,
    }
