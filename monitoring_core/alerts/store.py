"""SQL for alert rules, instances and their history. Takes a Connection, never commits.

Rule bodies use the `alert_configurations` field names of docs/API.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, update

from monitoring_core.alerts.engine import ACTIVE, AlertState
from monitoring_core.alerts.rules import RuleInvalid, parse_condition
from monitoring_core.enums import Severity
from monitoring_core.schema import (
    alert_events,
    alert_instances,
    alert_rules,
    escalation_policies,
    notification_channels,
)

__all__ = [
    "RuleNotFound",
    "active_since",
    "create_rule",
    "delete_rule",
    "get_instance",
    "get_rule",
    "instance_to_api",
    "list_active_alerts",
    "list_alert_history",
    "list_rules",
    "load_states",
    "mark_data_seen",
    "record_event",
    "rule_to_api",
    "state_of",
    "update_rule",
    "validate_rule_body",
]

_STATE_FIELDS = tuple(AlertState.__dataclass_fields__)
_WRITABLE = (
    "alert_name",
    "description",
    "metric_name",
    "condition_config",
    "severity_level",
    "notification_channels",
    "suppression_rules",
    "is_enabled",
    "weekend_escalation",
    "wedding_season_adjustment",
    "repeat_interval_minutes",
    "service_name",
    "runbook_id",
)


_NO_INSTANCE = AlertState()  # frozen: one shared value for every key without an instance


class RuleNotFound(LookupError):
    """No alert rule (or instance) with that id."""


# ---------------------------------------------------------------- rules
def _problem(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _check_channels(conn: Connection, ids: Any, problems: list) -> None:
    if not isinstance(ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in ids
    ):
        problems.append(_problem("notification_channels", "must be a list of channel ids"))
        return
    known = set(
        conn.execute(
            select(notification_channels.c.id).where(notification_channels.c.id.in_(ids))
        ).scalars()
    )
    for missing in sorted(set(ids) - known):
        problems.append(_problem("notification_channels", f"no channel with id {missing}"))


def _policy_id(conn: Connection, ref: Any, problems: list) -> int | None:
    """`escalation_policy` may be an id or a policy name (or null)."""
    if ref is None:
        return None
    column = escalation_policies.c.name if isinstance(ref, str) else escalation_policies.c.id
    found = conn.execute(select(escalation_policies.c.id).where(column == ref)).scalar()
    if found is None:
        problems.append(_problem("escalation_policy", f"no escalation policy {ref!r}"))
    return found


def mark_data_seen(
    conn: Connection, *, rule_ids: Iterable[int], now: datetime, since: datetime | None = None
) -> None:
    """Note the first evaluation that saw data for these rules (from then on, no data pages):
    rules that have not seen data at all, or not since `since` (the evaluators' start)."""
    ids = list(rule_ids)
    if ids:
        seen = alert_rules.c.data_seen_at
        stale = seen.is_(None) if since is None else (seen.is_(None) | (seen < since))
        conn.execute(
            update(alert_rules).where(alert_rules.c.id.in_(ids), stale).values(data_seen_at=now)
        )


def validate_rule_body(
    conn: Connection, body: Mapping[str, Any], *, partial: bool = False
) -> dict[str, Any]:
    """Column values for an insert/update, or RuleInvalid listing every problem."""
    p: list[dict[str, str]] = []
    values = {k: body[k] for k in _WRITABLE if k in body}
    if not partial or "alert_name" in body:
        if not isinstance(body.get("alert_name"), str) or not body["alert_name"].strip():
            p.append(_problem("alert_name", "is required"))
    if not partial or "severity_level" in body:
        if body.get("severity_level") not in set(Severity):
            p.append(_problem("severity_level", "must be critical, high, medium, low or info"))
    if not partial or "condition_config" in body:
        try:
            cond = parse_condition(body.get("condition_config"))
            values.setdefault("metric_name", cond.metric)
        except RuleInvalid as exc:
            p.extend(exc.problems)
    if "notification_channels" in body:
        _check_channels(conn, body["notification_channels"], p)
    if "escalation_policy" in body:
        values["escalation_policy_id"] = _policy_id(conn, body["escalation_policy"], p)
    for flag in ("is_enabled", "weekend_escalation", "wedding_season_adjustment"):
        if flag in body and not isinstance(body[flag], bool):
            p.append(_problem(flag, "must be true or false"))
    repeat = body.get("repeat_interval_minutes", 60)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        p.append(_problem("repeat_interval_minutes", "must be a whole number >= 1"))
    if p:
        raise RuleInvalid(p)
    return values


def create_rule(
    conn: Connection, *, body: Mapping[str, Any], created_by: str, now: datetime
) -> dict[str, Any]:
    """Insert a validated rule and return its API form."""
    values = validate_rule_body(conn, body)
    row = conn.execute(
        insert(alert_rules)
        .values(**values, created_by=created_by, created_at=now, updated_at=now)
        .returning(*alert_rules.c)
    ).one()
    return rule_to_api(dict(row._mapping))


def update_rule(
    conn: Connection, *, rule_id: int, body: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """Apply the fields given (RuleNotFound, RuleInvalid)."""
    values = validate_rule_body(conn, body, partial=True)
    if "condition_config" in values or "is_enabled" in values:
        values["data_seen_at"] = None  # a changed or re-enabled rule waits for data again
    row = conn.execute(
        update(alert_rules)
        .where(alert_rules.c.id == rule_id)
        .values(**values, updated_at=now)
        .returning(*alert_rules.c)
    ).first()
    if row is None:
        raise RuleNotFound(rule_id)
    return rule_to_api(dict(row._mapping))


def delete_rule(conn: Connection, *, rule_id: int) -> None:
    """Delete a rule with its instances and history (RuleNotFound)."""
    conn.execute(delete(alert_events).where(alert_events.c.rule_id == rule_id))
    if not conn.execute(delete(alert_rules).where(alert_rules.c.id == rule_id)).rowcount:
        raise RuleNotFound(rule_id)


def rule_to_api(row: Mapping[str, Any]) -> dict[str, Any]:
    """A rule row in the API's `alert_configurations` shape (docs/API.md)."""
    out = {k: row[k] for k in ("id", *_WRITABLE)}
    out["notification_channels"] = list(row["notification_channels"] or [])
    out["escalation_policy"] = row["escalation_policy_id"]
    out["created_by"] = row["created_by"]
    out["created_at"] = row["created_at"]
    out["updated_at"] = row["updated_at"]
    return out


def get_rule(conn: Connection, *, rule_id: int) -> dict[str, Any]:
    row = conn.execute(select(alert_rules).where(alert_rules.c.id == rule_id)).first()
    if row is None:
        raise RuleNotFound(rule_id)
    return dict(row._mapping)


def list_rules(conn: Connection, *, enabled_only: bool = False) -> list[dict[str, Any]]:
    query = select(alert_rules).order_by(alert_rules.c.id)
    if enabled_only:
        query = query.where(alert_rules.c.is_enabled)
    return [dict(r._mapping) for r in conn.execute(query)]


# ---------------------------------------------------------------- instances
def state_of(row: Mapping[str, Any] | None) -> AlertState:
    """The engine's view of an instance row (an empty state for no row)."""
    if row is None:
        return _NO_INSTANCE
    return AlertState(**{f: row[f] for f in _STATE_FIELDS})


def load_states(conn: Connection, rule_ids: Iterable[int]) -> dict[tuple[int, str], dict[str, Any]]:
    """Instance rows by (rule id, alert key)."""
    rows = conn.execute(
        select(alert_instances).where(alert_instances.c.alert_configuration_id.in_(list(rule_ids)))
    )
    return {(r.alert_configuration_id, r.alert_key): dict(r._mapping) for r in rows}


def record_event(
    conn: Connection,
    *,
    instance_id: int | None,
    rule_id: int,
    now: datetime,
    from_status: str | None,
    to_status: str,
    value: float | None = None,
    message: str = "",
    actor: str | None = None,
) -> None:
    """One row of alert history."""
    conn.execute(
        insert(alert_events).values(
            instance_id=instance_id,
            rule_id=rule_id,
            time=now,
            from_status=from_status,
            to_status=to_status,
            value=value,
            message=message,
            actor=actor,
        )
    )


def _instance_query() -> Any:
    return select(
        alert_instances,
        alert_rules.c.alert_name,
        alert_rules.c.severity_level,
        alert_rules.c.service_name,
        alert_rules.c.metric_name,
        alert_rules.c.data_seen_at,
    ).join(alert_rules, alert_rules.c.id == alert_instances.c.alert_configuration_id)


_SEVERITY_RANK = {s.value: s.rank for s in Severity}


def instance_to_api(row: Mapping[str, Any]) -> dict[str, Any]:
    """An instance in the API's `alert_instances` shape (plus what the UI needs)."""
    keys = (
        "id",
        "alert_configuration_id",
        "alert_key",
        "status",
        "trigger_count",
        "first_triggered_at",
        "last_triggered_at",
        "resolved_at",
        "trigger_value",
        "trigger_dimensions",
        "alert_name",
        "severity_level",
        "severity",
        "acknowledged_at",
        "acknowledged_by",
        "suppressed_until",
        "escalation_step",
        "incident_id",
        "service_name",
        "metric_name",
        "pending_since",
        "last_notified_at",
        "no_data_since",
        "data_seen_at",
    )
    return {k: row.get(k) for k in keys}


def get_instance(conn: Connection, *, instance_id: int, lock: bool = False) -> dict[str, Any]:
    query = _instance_query().where(alert_instances.c.id == instance_id)
    if lock:
        query = query.with_for_update(of=alert_instances)
    row = conn.execute(query).first()
    if row is None:
        raise RuleNotFound(instance_id)
    return instance_to_api(dict(row._mapping))


def list_active_alerts(conn: Connection) -> list[dict[str, Any]]:
    """Active instances (no_data ones included), most severe first, then oldest first."""
    rows = conn.execute(
        _instance_query().where(alert_instances.c.status.in_([str(s) for s in ACTIVE]))
    )
    items = [instance_to_api(dict(r._mapping)) for r in rows]
    never = datetime.max.replace(tzinfo=UTC)
    return sorted(
        items, key=lambda a: (_SEVERITY_RANK.get(a["severity"], 9), active_since(a) or never)
    )


def active_since(alert: Mapping[str, Any]) -> datetime | None:
    """When an active alert's current state began: no data from when the data stopped,
    pending from when the condition started holding, the rest from when it fired."""
    if alert["status"] == "no_data":
        return alert.get("no_data_since")
    if alert["status"] == "pending":
        return alert.get("pending_since")
    return alert.get("first_triggered_at") or alert.get("pending_since")


def list_alert_history(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    rule_id: int | None = None,
    status: str | None = None,
    severity: str | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Alert events in [start, end), newest first, with the rule's name and severity."""
    query = (
        select(
            alert_events,
            alert_rules.c.alert_name,
            alert_rules.c.severity_level,
            alert_instances.c.alert_key,
        )
        .join(alert_rules, alert_rules.c.id == alert_events.c.rule_id)
        .outerjoin(alert_instances, alert_instances.c.id == alert_events.c.instance_id)
        .where(and_(alert_events.c.time >= start, alert_events.c.time < end))
        .order_by(alert_events.c.time.desc(), alert_events.c.id.desc())
        .limit(limit)
    )
    if rule_id is not None:
        query = query.where(alert_events.c.rule_id == rule_id)
    if status:
        query = query.where(alert_events.c.to_status == status)
    if severity:
        query = query.where(alert_rules.c.severity_level == severity)
    return [dict(r._mapping) for r in conn.execute(query)]
