"""Storing the engine's decisions: one instance per (rule, alert key), history in alert_events.

An evaluation cycle can move thousands of instances at once (every pending or firing key
changes its value and count each cycle), so `save_decisions` writes them in three statements
whatever their number: an `INSERT … SELECT FROM json_to_recordset(…)` for new instances, an
`UPDATE … FROM json_to_recordset(…)` for existing ones, and an `INSERT … SELECT` of history
rows. Each statement's rows travel as one JSON document built by orjson (in C): binding one
Postgres array per column cost psycopg a Python call per element, about half of a
10,000-rule cycle's writing. Non-finite floats travel as the strings Postgres reads
('Infinity', 'NaN'). Takes a Connection, never commits.
"""

# Column names below are this module's own constants; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, select, text, tuple_

from monitoring_core.alerts.engine import AlertState, Decision
from monitoring_core.schema import alert_instances

__all__ = ["DecisionWrite", "only_counted", "save_decision", "save_decisions"]

_STATE = tuple(AlertState.__dataclass_fields__)
_TYPES = {
    "status": "text",
    "pending_since": "timestamptz",
    "first_triggered_at": "timestamptz",
    "last_triggered_at": "timestamptz",
    "trigger_count": "int",
    "resolved_at": "timestamptz",
    "acknowledged_at": "timestamptz",
    "suppressed_until": "timestamptz",
    "last_notified_at": "timestamptz",
    "trigger_value": "float8",
    "no_data_since": "timestamptz",
    "severity": "text",
}
assert set(_TYPES) == {*_STATE, "severity"}  # a new state field must be stored here too
# Firing after any of these starts a new episode: escalation starts over.
_RESTARTS = (None, "resolved", "expired", "pending", "no_data")


@dataclass(frozen=True)
class DecisionWrite:
    rule_id: int
    alert_key: str
    dimensions: Mapping[str, Any]
    decision: Decision
    instance_id: int | None = None  # known when the instance exists
    # Only `_COUNTED` moved (a key still holding, same status and severity): a narrow update
    counted: bool = False


def _recordset(columns: Mapping[str, str]) -> str:
    """`json_to_recordset(:rows) AS u(col type, …)`: the rows of one JSON parameter."""
    typed = ", ".join(f"{c} {t}" for c, t in columns.items())
    return f"json_to_recordset(CAST(:rows AS json)) AS u({typed})"


def _float(value: Any) -> float | str | None:
    """A float for JSON: Postgres reads 'Infinity', '-Infinity' and 'NaN' from strings."""
    if value is None:
        return None
    value = float(value)
    return (
        value
        if math.isfinite(value)
        else str(value).replace("inf", "Infinity").replace("nan", "NaN")
    )


def _state_row(w: DecisionWrite) -> dict[str, Any]:
    state = w.decision.state
    row = {f: getattr(state, f) for f in _STATE}
    row["trigger_value"] = _float(row["trigger_value"])
    row["severity"] = w.decision.severity
    return row


def _number_like(value: Any) -> float:
    if isinstance(value, float):  # a float subclass (numpy.float64) orjson does not take
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json(rows: list[dict[str, Any]]) -> str:
    return orjson.dumps(rows, default=_number_like).decode()


def _insert_new(conn: Connection, writes: Sequence[DecisionWrite], now: datetime) -> dict:
    """New instances; (rule, key) -> id. A key another evaluator inserted meanwhile is left
    out here and updated by the caller."""
    columns = {"rule_id": "bigint", "alert_key": "text", "dims": "jsonb", **_TYPES}
    rows = []
    for w in writes:
        row = _state_row(w)
        row.update(rule_id=w.rule_id, alert_key=w.alert_key, dims=dict(w.dimensions))
        rows.append(row)
    state_cols = ", ".join(_TYPES)
    sql = (
        f"INSERT INTO alert_instances (alert_configuration_id, alert_key, trigger_dimensions, "
        f"last_evaluated_at, escalation_step, {state_cols}) "
        f"SELECT u.rule_id, u.alert_key, u.dims, :now, 0, "
        f"{', '.join('u.' + c for c in _TYPES)} FROM {_recordset(columns)} "
        "ON CONFLICT (alert_configuration_id, alert_key) DO NOTHING "
        "RETURNING id, alert_configuration_id, alert_key"
    )
    result = conn.execute(text(sql), {"rows": _json(rows), "now": now})
    return {(r[1], r[2]): int(r[0]) for r in result}


# What a key still firing (or acknowledged) changes each cycle; the rest of its row stays.
_COUNTED = ("last_triggered_at", "trigger_count", "trigger_value")


def only_counted(before: AlertState, after: AlertState) -> bool:
    """Whether `after` differs from `before` in `_COUNTED` fields alone (then the write may
    be `counted`)."""
    was, now = before.__dict__, after.__dict__
    return all(was[f] == now[f] for f in _OTHER)


_OTHER = tuple(f for f in _STATE if f not in _COUNTED)


def _update_counted(conn: Connection, writes: Sequence[DecisionWrite], now: datetime) -> None:
    """Counted writes: three columns a row instead of every state column (the bulk of a
    large cycle's writes are keys that stay firing)."""
    columns = {"id": "bigint", **{c: _TYPES[c] for c in _COUNTED}}
    rows = []
    for w in writes:
        state = w.decision.state
        rows.append({
            "id": w.instance_id,
            "last_triggered_at": state.last_triggered_at,
            "trigger_count": state.trigger_count,
            "trigger_value": _float(state.trigger_value),
        })  # fmt: skip
    sets = ", ".join(f"{c} = u.{c}" for c in _COUNTED)
    sql = (
        f"UPDATE alert_instances a SET {sets}, last_evaluated_at = :now "
        f"FROM {_recordset(columns)} WHERE a.id = u.id"
    )
    conn.execute(text(sql), {"rows": _json(rows), "now": now})


def _update_existing(conn: Connection, writes: Sequence[DecisionWrite], now: datetime) -> None:
    columns = {"id": "bigint", "restart": "bool", **_TYPES}
    rows = []
    for w in writes:
        row = _state_row(w)
        row["id"] = w.instance_id
        row["restart"] = w.decision.state.status == "firing" and w.decision.from_status in _RESTARTS
        rows.append(row)
    sets = ", ".join(f"{c} = u.{c}" for c in _TYPES)
    sql = (
        f"UPDATE alert_instances a SET {sets}, last_evaluated_at = :now, "
        "escalation_step = CASE WHEN u.restart THEN 0 ELSE a.escalation_step END, "
        "last_escalated_at = CASE WHEN u.restart THEN NULL ELSE a.last_escalated_at END, "
        "acknowledged_by = CASE WHEN u.restart THEN NULL ELSE a.acknowledged_by END "
        f"FROM {_recordset(columns)} WHERE a.id = u.id"
    )
    conn.execute(text(sql), {"rows": _json(rows), "now": now})


_EVENT_TYPES = {
    "instance_id": "bigint",
    "rule_id": "bigint",
    "from_status": "text",
    "to_status": "text",
    "value": "float8",
    "message": "text",
}


def _insert_events(conn: Connection, events: list[dict[str, Any]], now: datetime) -> None:
    """History rows (status changes), one statement."""
    sql = (
        "INSERT INTO alert_events (instance_id, rule_id, time, from_status, to_status, value, "
        f"message, actor) SELECT u.instance_id, u.rule_id, :now, u.from_status, u.to_status, "
        f"u.value, u.message, NULL FROM {_recordset(_EVENT_TYPES)}"
    )
    conn.execute(text(sql), {"rows": _json(events), "now": now})


def _existing_ids(conn: Connection, writes: Sequence[DecisionWrite]) -> dict:
    pairs = [(w.rule_id, w.alert_key) for w in writes]
    c = alert_instances.c
    query = select(c.id, c.alert_configuration_id, c.alert_key)
    rows = conn.execute(query.where(tuple_(c.alert_configuration_id, c.alert_key).in_(pairs)))
    return {(r[1], r[2]): int(r[0]) for r in rows}


def save_decisions(
    conn: Connection, writes: Sequence[DecisionWrite], *, now: datetime
) -> list[int | None]:
    """Store every decision (upsert by rule and key) and log status changes; per write its
    instance id, or None for a quiet rule with no instance (status None)."""
    stored = [w for w in writes if w.decision.state.status is not None]
    updates = [w for w in stored if w.instance_id is not None]
    ids = {(w.rule_id, w.alert_key): w.instance_id for w in updates}
    new = [w for w in stored if w.instance_id is None]
    if new:
        ids.update(_insert_new(conn, new, now))
        raced = [w for w in new if (w.rule_id, w.alert_key) not in ids]
        if raced:  # inserted by someone else since we looked: update those rows instead
            found = _existing_ids(conn, raced)
            ids.update(found)
            updates += [
                replace(w, instance_id=found[(w.rule_id, w.alert_key)])
                for w in raced
                if (w.rule_id, w.alert_key) in found
            ]
    counted = [w for w in updates if w.counted]
    if counted:
        _update_counted(conn, counted, now)
    if len(counted) < len(updates):
        _update_existing(conn, [w for w in updates if not w.counted], now)
    events = [
        {
            "instance_id": ids[(w.rule_id, w.alert_key)],
            "rule_id": w.rule_id,
            "from_status": w.decision.from_status,
            "to_status": w.decision.state.status,
            "value": _float(w.decision.check.value),
            "message": w.decision.check.message,
        }
        for w in stored
        if w.decision.changed and (w.rule_id, w.alert_key) in ids
    ]
    if events:
        _insert_events(conn, events, now)
    return [ids.get((w.rule_id, w.alert_key)) if w.decision.state.status else None for w in writes]


def save_decision(
    conn: Connection,
    *,
    rule_id: int,
    alert_key: str,
    dimensions: Mapping[str, Any],
    decision: Decision,
    now: datetime,
    instance_id: int | None = None,
) -> int | None:
    """One decision (see `save_decisions`)."""
    write = DecisionWrite(rule_id, alert_key, dimensions, decision, instance_id)
    return save_decisions(conn, [write], now=now)[0]
