"""Alerts from Prometheus, Grafana or an Alertmanager webhook become alert instances here.

Each `alertname` has one rule of type `external` (created on first sight, enabled, no channels
of its own so the default route applies; an admin may edit it to route, escalate or disable
it: alerts for a disabled rule are ignored). Each label set is one instance of it (key: the
labels but `alertname`, sorted), so a re-sent alert updates the same instance. A firing alert
fires at once (its sender already waited its `for:`), is re-sent while it fires, and resolves
when it arrives with an `endsAt` in the past or when `endsAt` passes without a re-send
(`expire_external`, run by the worker). From there on it is one of ours: silences, repeat
notifications, escalation, an incident for a critical one, acknowledgement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, insert, select, text

from monitoring_core.alerts.engine import ACTIVE, Check, transition
from monitoring_core.alerts.rules import Rule, rule_from_row
from monitoring_core.alerts.silences import list_silences
from monitoring_core.alerts.store import load_states, state_of
from monitoring_core.alerts.writes import DecisionWrite
from monitoring_core.audit import system_actor
from monitoring_core.flows.alert_cycle import Cycle, EvalReport
from monitoring_core.flows.alert_cycle import _store as store_pending_decisions
from monitoring_core.prometheus.alertmanager import ExternalAlert, alert_key, severity_of
from monitoring_core.schema import alert_instances, alert_rules

__all__ = ["ExternalReport", "ensure_external_rules", "expire_external", "receive_alerts"]

ACTOR = system_actor("alertmanager")


@dataclass
class ExternalReport:
    received: int = 0
    fired: int = 0
    resolved: int = 0
    ignored: int = 0  # for a disabled rule, or resolving an alert that is not active
    rules_created: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def ensure_external_rules(
    conn: Connection, first: Mapping[str, ExternalAlert], report: ExternalReport
) -> dict[str, dict[str, Any]]:
    """The external rule row of each alert name, created (enabled, no channels) if missing."""
    rows: dict[str, dict[str, Any]] = {}
    for name in sorted(first):
        # Two receivers creating the same rule at once would make two: serialise per name.
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('external_rule'), hashtext(:n))"),
            {"n": name},
        )
        found = conn.execute(
            select(alert_rules)
            .where(
                alert_rules.c.alert_name == name,
                alert_rules.c.condition_config["type"].astext == "external",
            )
            .order_by(alert_rules.c.id)
            .limit(1)
        ).first()
        if found is None:
            values = {
                "alert_name": name,
                "description": "Alerts of this name received from Prometheus or Grafana.",
                "condition_config": {"type": "external"},
                "severity_level": severity_of(first[name].labels),
                "is_enabled": True,
                "created_by": ACTOR,
                "service_name": first[name].labels.get("service"),
            }
            found = conn.execute(insert(alert_rules).values(values).returning(alert_rules)).one()
            report.rules_created += 1
        rows[name] = dict(found._mapping)
    return rows


def _latest(alerts: Sequence[ExternalAlert]) -> dict[tuple[str, str], ExternalAlert]:
    """One alert per (name, label set): the last one sent wins."""
    return {(a.name, alert_key(a.labels)): a for a in alerts}


def receive_alerts(
    conn: Connection,
    alerts: Sequence[ExternalAlert],
    *,
    now: datetime,
    tz: ZoneInfo,
    public_url: str,
) -> ExternalReport:
    """Fire, refresh or resolve one instance per alert, in the caller's transaction."""
    report = ExternalReport(received=len(alerts))
    latest = _latest(alerts)
    rows = ensure_external_rules(conn, {name: a for (name, _k), a in latest.items()}, report)
    by_id = {int(row["id"]): row for row in rows.values() if row["is_enabled"]}
    states = load_states(conn, by_id)
    cycle = Cycle(conn, now, tz, public_url, by_id, list_silences(conn, now=now), EvalReport())
    ends: dict[tuple[int, str], datetime | None] = {}
    for (name, key), alert in latest.items():
        row = rows[name]
        if not row["is_enabled"]:
            report.ignored += 1
            continue
        rule = rule_from_row(row)
        instance = states.get((rule.id, key))
        if not _move(cycle, rule, key, alert, instance, now, report):
            continue
        ends[(rule.id, key)] = None if alert.resolved else alert.ends_at
    store_pending_decisions(cycle)
    _set_ends(conn, ends)
    return report


def _move(
    cycle: Cycle,
    rule: Rule,
    key: str,
    alert: ExternalAlert,
    instance: dict[str, Any] | None,
    now: datetime,
    report: ExternalReport,
) -> bool:
    state = state_of(instance)
    if alert.resolved and state.status not in ACTIVE:
        report.ignored += 1  # resolving what is not active here (or never was): nothing to do
        return False
    message = alert.summary or f"{alert.name} ({'resolved' if alert.resolved else 'firing'})"
    check = Check(not alert.resolved, None, None, message[:500])
    decision = transition(rule, state, check, now, severity=severity_of(alert.labels))
    dims = {k: v for k, v in alert.labels.items() if k != "alertname"}
    write = DecisionWrite(rule.id, key, dims, decision, instance["id"] if instance else None)
    cycle.pending.append((rule, write, instance))
    if alert.resolved:
        report.resolved += 1
    else:
        report.fired += 1
    return True


_SET_ENDS = text(
    """
    UPDATE alert_instances i SET external_ends_at = u.ends
    FROM unnest(CAST(:rules AS bigint[]), CAST(:keys AS text[]), CAST(:ends AS timestamptz[]))
        AS u(rule_id, key, ends)
    WHERE i.alert_configuration_id = u.rule_id AND i.alert_key = u.key
    """
)


def _set_ends(conn: Connection, ends: Mapping[tuple[int, str], datetime | None]) -> None:
    if ends:
        conn.execute(
            _SET_ENDS,
            {
                "rules": [rule for rule, _key in ends],
                "keys": [key for _rule, key in ends],
                "ends": list(ends.values()),
            },
        )


def expire_external(conn: Connection, *, now: datetime, tz: ZoneInfo, public_url: str) -> int:
    """Resolve every active external alert whose `endsAt` passed without a re-send."""
    due = conn.execute(
        select(alert_instances, alert_rules.c.alert_name)
        .join(alert_rules, alert_rules.c.id == alert_instances.c.alert_configuration_id)
        .where(
            alert_instances.c.external_ends_at <= now,
            alert_instances.c.status.in_([str(s) for s in ACTIVE]),
        )
        .with_for_update(of=alert_instances, skip_locked=True)
    ).all()
    if not due:
        return 0
    alerts = [
        ExternalAlert(
            {"alertname": row.alert_name, **(row.trigger_dimensions or {})},
            {"summary": "not re-sent by its endsAt"},
            row.first_triggered_at or now,
            row.external_ends_at,
            resolved=True,
        )
        for row in due
    ]
    report = receive_alerts(conn, alerts, now=now, tz=tz, public_url=public_url)
    return report.resolved
