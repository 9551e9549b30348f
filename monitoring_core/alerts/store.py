"""SQL for alert rules, instances and their history. Takes a Connection, never commits.

Rule bodies use the `alert_configurations` field names of docs/API.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from sqlalchemy import (
    ARRAY,
    JSON,
    BigInteger,
    Connection,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    delete,
    insert,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.sql.elements import Label

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
    "RuleRow",
    "active_since",
    "create_rule",
    "delete_rule",
    "enabled_rule_rows",
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
        ids_array = bindparam("ids", ids, type_=ARRAY(BigInteger))
        conn.execute(
            update(alert_rules)
            .where(alert_rules.c.id == any_(ids_array), stale)
            .values(data_seen_at=now)
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


class RuleRow(NamedTuple):
    version: str  # the row version's id, xmin and ctid: equal versions are equal rows
    row: dict[str, Any]  # shared between cycles: read it, never change it


# Rows this process has read, by content: a cycle re-reads only rules whose row changed.
_RULE_ROWS: dict[str, RuleRow] = {}
# A row version's identity: its transaction (xmin) and place (ctid) — two committed versions
# differ in xmin, two in one transaction in ctid (the older stays until the commit). A fifth
# of the time of hashing every row's text (md5), read by every worker twice a cycle.
_VERSION_SQL = "alert_rules.id || ':' || alert_rules.xmin || alert_rules.ctid"
_VERSIONS = text(
    f"SELECT id, {_VERSION_SQL} FROM alert_rules WHERE is_enabled ORDER BY id"  # noqa: S608
)
_VERSION: Label[Any] = literal_column(_VERSION_SQL).label("row_version")
_JSON_COLUMNS = tuple(c.name for c in alert_rules.c if isinstance(c.type, JSON))
_WHOLE = [cast(c, Text).label(c.name) if c.name in _JSON_COLUMNS else c for c in alert_rules.c]


def enabled_rule_rows(conn: Connection) -> list[RuleRow]:
    """`list_rules(enabled_only=True)` for the evaluation cycle, by id: each row's version
    is read (one short row per rule) and only rows not already held with that version are read
    whole. At 10,000 rules reading and decoding every row (three JSON columns each) twice a
    cycle was a fifth of a worker's cycle. Needs no invalidation: any change to a row (in this
    transaction or another) writes a new row version."""
    global _RULE_ROWS
    versions = conn.execute(_VERSIONS).all()
    held = _RULE_ROWS
    missing = [int(rule_id) for rule_id, version in versions if version not in held]
    fresh: dict[int, RuleRow] = {}
    if missing:  # ids as one array; JSON as text decoded by orjson (a restart reads them all)
        ids = bindparam("ids", missing, type_=ARRAY(BigInteger))
        query = select(*_WHOLE, _VERSION).where(alert_rules.c.id == any_(ids))
        for r in conn.execute(query).all():
            row = dict(r._mapping)
            for name in _JSON_COLUMNS:
                row[name] = _json_loads(row[name])
            version = str(row.pop("row_version"))
            fresh[int(row["id"])] = RuleRow(version, row)
    out = []
    for rule_id, version in versions:
        if version in held:
            out.append(held[version])
        elif rule_id in fresh:  # changed since the versions were read: the newer row
            out.append(fresh[rule_id])
    if missing or len(held) != len(out):
        _RULE_ROWS = {r.version: r for r in out}
    return out


# ---------------------------------------------------------------- instances
def state_of(row: Mapping[str, Any] | None) -> AlertState:
    """The engine's view of an instance row (an empty state for no row)."""
    if row is None:
        return _NO_INSTANCE
    state = _new(AlertState)  # as `with_changes`, without copying the empty state first
    state.__dict__.update({f: row[f] for f in _STATE_FIELDS})
    return state


_new = object.__new__


_INSTANCE_COLUMNS = tuple(c.name for c in alert_instances.c)
# Column names are the schema's own; the ids are one bound array.
_LOAD_STATES = text(
    "SELECT "  # noqa: S608
    + ", ".join(c + "::text" if c == "trigger_dimensions" else c for c in _INSTANCE_COLUMNS)
    + " FROM alert_instances WHERE alert_configuration_id = ANY(CAST(:ids AS bigint[]))"
)


def _json_loads(raw: str | None) -> Any:
    """orjson (C) for the common case; the standard library for what orjson refuses
    (integers beyond 64 bits)."""
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def load_states(conn: Connection, rule_ids: Iterable[int]) -> dict[tuple[int, str], dict[str, Any]]:
    """Instance rows by (rule id, alert key): plain tuples zipped with the column names and
    dimensions decoded by orjson (a cycle of 10,000 rules loads ~80,000 instances)."""
    ids = [int(i) for i in rule_ids]
    if not ids:
        return {}
    out = {}
    for values in conn.execute(_LOAD_STATES, {"ids": ids}).all():  # fetchall: C rows
        row = dict(zip(_INSTANCE_COLUMNS, values, strict=True))
        row["trigger_dimensions"] = _json_loads(row["trigger_dimensions"])
        out[(row["alert_configuration_id"], row["alert_key"])] = row
    return out


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
