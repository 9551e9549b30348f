"""Reads for one alert's page (`pages/alert.py`): the rule and its condition in words, the
value the engine compared over time, labels, matching silences, runbook, incident, and the
notification and escalation log. Reads only; every value is a bound parameter.

The graph's values come from the engine itself: the rule's series is read the way a cycle or
the backtest reads it (`series.fetch_key` / `fetch` / `for_rule`) and `engine.check_condition`
is asked at each step, so the line is exactly the value compared with the threshold.
PromQL and composite rules take the backtest's series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, or_, select

from monitoring_core.alerts import series as series_mod
from monitoring_core.alerts.backtest import MAX_STEPS, backtest
from monitoring_core.alerts.backtest_kinds import anomaly_source
from monitoring_core.alerts.backtest_quiet import regression
from monitoring_core.alerts.backtest_regression import regression_rule_source
from monitoring_core.alerts.engine import ACTIVE, check_condition
from monitoring_core.alerts.rules import Condition, RuleInvalid, parse_condition, rule_from_row
from monitoring_core.alerts.signals import is_windowed, signal
from monitoring_core.alerts.silences import alert_labels, is_active, matches
from monitoring_core.alerts.store import (
    RuleNotFound,
    get_instance,
    get_rule,
    list_active_alerts,
    rule_to_api,
)
from monitoring_core.schema import (
    alert_events,
    alert_rules,
    escalation_policies,
    incident_alerts,
    incidents,
    metric_catalog,
    notification_channels,
    notification_deliveries,
    notification_outbox,
    runbooks,
    silences,
    users,
)

__all__ = [
    "OPERATOR_WORDS",
    "aggregation_words",
    "alert_detail",
    "condition_series",
    "condition_words",
    "instance_events",
    "labels_of",
    "notification_log",
    "periods",
    "silence_preview",
    "unit_suffix",
]

OPERATOR_WORDS = {
    "greater_than": "above",
    "less_than": "below",
    "greater_than_or_equal": "at or above",
    "less_than_or_equal": "at or below",
    "equals": "equal to",
    "not_equals": "not equal to",
}
_AGGREGATION_WORDS = {"avg": "average", "min": "minimum", "max": "maximum", "sum": "sum"}
_FIRING = ("firing", "acknowledged", "suppressed")
LOG_LIMIT = 200


def _minutes(value: float) -> str:
    if value >= 60 and value % 60 == 0:
        hours = int(value // 60)
        return f"{hours} h"
    return f"{value:g} min"


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def aggregation_words(name: str) -> str:
    """`average`, `p95` …"""
    return _AGGREGATION_WORDS.get(name, name)


def unit_suffix(unit: str) -> str:
    """` ms` after a number; nothing for a unit that is a description (`1 up / 0 down`,
    `ratio 0–1`): those are named once, next to the signal."""
    return f" {unit}" if unit and " " not in unit else ""


def _scope(cond: Condition) -> str:
    parts = []
    if cond.filters:
        parts.append("where " + " and ".join(f"{k} = {v}" for k, v in sorted(cond.filters.items())))
    if cond.group_by:
        parts.append("one alert per " + ", ".join(cond.group_by))
    return (", " + ", ".join(parts)) if parts else ""


def _for(cond: Condition) -> str:
    return f", for at least {_minutes(cond.duration_minutes)}" if cond.duration_minutes > 0 else ""


def condition_words(cond: Condition, unit: str = "") -> str:
    """The condition as a sentence: what is measured, how it is compared, over what window,
    for how long, and per what (plain text; the page escapes it)."""
    unit_text = unit_suffix(unit)
    operator = OPERATOR_WORDS.get(cond.operator, cond.operator)
    window = _minutes(cond.window_minutes)
    kind = cond.type
    if kind == "threshold":
        text = (
            f"{aggregation_words(cond.aggregation)} of {cond.metric} over the last {window} "
            f"is {operator} {_number(cond.value)}{unit_text}"
        )
    elif kind == "pattern":
        text = (
            f"the number of matching error events in the last {window} "
            f"is {operator} {_number(cond.value)}"
        )
    elif kind == "absence":
        text = f"{cond.metric} has sent no data for {window}"
    elif kind == "anomaly":
        side = {"above": "above", "below": "below"}.get(cond.direction, "above or below")
        now_and_then = (
            "over the last hour is more than {z} robust standard deviations {side} the same "
            "hour of the past {weeks} weeks"
            if is_windowed(cond.metric)
            else "this hour so far is more than {z} robust standard deviations {side} the "
            "same minutes of that hour in the past {weeks} weeks"
        ).format(z=f"{cond.z_threshold:g}", side=side, weeks=cond.weeks)
        text = f"{aggregation_words(cond.aggregation)} of {cond.metric} {now_and_then}"
    elif kind == "rate_of_change":
        change_unit = " %" if cond.change_mode == "percent" else unit_text
        text = (
            f"{aggregation_words(cond.aggregation)} of {cond.metric} changes by {operator} "
            f"{_number(cond.value)}{change_unit} within {window}"
        )
    elif kind == "composite":
        joined = f" {cond.logic.upper()} ".join(f"rule #{r}" for r in cond.rules)
        return f"fires when {joined} hold" + ("s" if cond.logic == "or" else "")
    elif kind == "promql":
        return f"fires for every series the PromQL expression {cond.expr} returns{_for(cond)}"
    else:
        return "received from Prometheus, Grafana or an Alertmanager webhook"
    recovery = (
        f"; resolves only once past {_number(cond.recovery_value)}{unit_text}"
        if cond.recovery_value is not None
        else ""
    )
    return f"fires when {text}{_for(cond)}{_scope(cond)}{recovery}"


def _unit(conn: Connection, cond: Condition | None) -> str:
    if cond is None:
        return ""
    if cond.type == "pattern":
        return "events"
    if cond.type == "absence":
        return "min without data"
    found = signal(cond.metric)
    if found is not None:
        return found.unit
    if not cond.metric:
        return ""
    stored = conn.execute(
        select(metric_catalog.c.unit).where(metric_catalog.c.name == cond.metric)
    ).scalar()
    return str(stored or "")


def labels_of(alert: Mapping[str, Any], rule_row: Mapping[str, Any]) -> dict[str, str]:
    """The labels silences are matched with (the same as the evaluation cycle's)."""
    return alert_labels(
        rule_id=int(rule_row["id"]),
        alert_name=str(rule_row["alert_name"]),
        severity=str(alert["severity"]),
        service=rule_row.get("service_name"),
        dimensions=alert.get("trigger_dimensions") or {},
    )


def _silences_matching(
    conn: Connection, labels: Mapping[str, str], now: datetime, tz: ZoneInfo
) -> list[dict[str, Any]]:
    rows = conn.execute(select(silences).where(silences.c.ends_at > now).order_by(silences.c.id))
    out = []
    for row in rows:
        silence = dict(row._mapping)
        if is_active(silence, now, tz) and matches(silence["matchers"], labels):
            out.append(silence)
    return out


def _runbook(conn: Connection, rule_row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The rule's runbook, or one attached to the rule by `alert_rule_id`."""
    query = select(runbooks.c.id, runbooks.c.title, runbooks.c.description, runbooks.c.steps)
    if rule_row.get("runbook_id") is not None:
        query = query.where(runbooks.c.id == rule_row["runbook_id"])
    else:
        query = query.where(runbooks.c.alert_rule_id == rule_row["id"])
    row = conn.execute(query.order_by(runbooks.c.id).limit(1)).first()
    return dict(row._mapping) if row else None


def _incident(conn: Connection, alert: Mapping[str, Any]) -> dict[str, Any] | None:
    linked = select(incident_alerts.c.incident_id).where(
        incident_alerts.c.alert_instance_id == alert["id"]
    )
    query = (
        select(
            incidents.c.id,
            incidents.c.incident_number,
            incidents.c.title,
            incidents.c.status,
            incidents.c.severity,
        )
        .where(
            or_(
                incidents.c.id == alert.get("incident_id"),
                incidents.c.id.in_(linked.scalar_subquery()),
            )
        )
        .order_by(incidents.c.id.desc())
        .limit(1)
    )
    row = conn.execute(query).first()
    return dict(row._mapping) if row else None


def _policy_name(conn: Connection, policy_id: int | None) -> str | None:
    if policy_id is None:
        return None
    query = select(escalation_policies.c.name).where(escalation_policies.c.id == policy_id)
    return conn.execute(query).scalar()


def _channel_names(conn: Connection, ids: Sequence[int]) -> list[str]:
    if not ids:
        return []
    query = (
        select(notification_channels.c.name)
        .where(notification_channels.c.id.in_(list(ids)))
        .order_by(notification_channels.c.name)
    )
    return list(conn.execute(query).scalars())


def alert_detail(
    conn: Connection, *, instance_id: int, now: datetime, tz: ZoneInfo
) -> dict[str, Any] | None:
    """Everything the alert page shows about one instance at `now`, or None when there is no
    such instance. `condition` is None (and `condition_problem` says why) for a rule whose
    stored condition no longer parses."""
    try:
        alert = get_instance(conn, instance_id=instance_id)
        rule_row = get_rule(conn, rule_id=int(alert["alert_configuration_id"]))
    except RuleNotFound:
        return None
    try:
        cond: Condition | None = parse_condition(rule_row["condition_config"])
        problem = ""
    except RuleInvalid as exc:
        cond, problem = None, str(exc)
    unit = _unit(conn, cond)
    labels = labels_of(alert, rule_row)
    return {
        "alert": alert,
        "rule": rule_to_api(rule_row),
        "condition": cond,
        "condition_problem": problem,
        "words": condition_words(cond, unit) if cond else "",
        "unit": unit,
        "labels": labels,
        "silenced_by": _silences_matching(conn, labels, now, tz),
        "runbook": _runbook(conn, rule_row),
        "incident": _incident(conn, alert),
        "policy": _policy_name(conn, rule_row.get("escalation_policy_id")),
        "channels": _channel_names(conn, rule_row.get("notification_channels") or []),
    }


def notification_log(
    conn: Connection, *, instance_id: int, limit: int = LOG_LIMIT
) -> list[dict[str, Any]]:
    """Every notification queued for this alert, one row per delivery attempt (a queued one
    not yet tried is one row with no attempt), newest first: when, kind, channel, the person
    owning the channel, the outcome and the attempt's error."""
    o, d, c = notification_outbox, notification_deliveries, notification_channels
    query = (
        select(
            o.c.id.label("outbox_id"),
            o.c.kind,
            o.c.title,
            o.c.created_at.label("queued_at"),
            o.c.status.label("outbox_status"),
            o.c.attempts,
            o.c.sent_at,
            o.c.last_error,
            c.c.name.label("channel"),
            users.c.username.label("person"),
            d.c.attempted_at,
            d.c.status.label("attempt_status"),
            d.c.latency_ms,
            d.c.error,
        )
        .join(c, c.c.id == o.c.channel_id)
        .outerjoin(users, users.c.id == c.c.user_id)
        .outerjoin(d, d.c.outbox_id == o.c.id)
        .where(o.c.alert_instance_id == instance_id)
        .order_by(d.c.attempted_at.desc().nulls_first(), o.c.created_at.desc(), o.c.id.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def instance_events(
    conn: Connection, *, instance_id: int, limit: int = LOG_LIMIT
) -> list[dict[str, Any]]:
    """The instance's history (state changes, actions, escalation steps), oldest first."""
    query = (
        select(
            alert_events.c.time,
            alert_events.c.from_status,
            alert_events.c.to_status,
            alert_events.c.value,
            alert_events.c.message,
            alert_events.c.actor,
        )
        .where(alert_events.c.instance_id == instance_id)
        .order_by(alert_events.c.time.desc(), alert_events.c.id.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in reversed(conn.execute(query).all())]


def periods(
    events: Sequence[Mapping[str, Any]], alert: Mapping[str, Any], *, now: datetime
) -> list[dict[str, Any]]:
    """Spans of time the alert spent pending and firing (acknowledged and suppressed count as
    firing), from its history (oldest first); a span still open ends at `now`. Pure."""
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for event in events:
        status = str(event["to_status"])
        kind = "firing" if status in _FIRING else ("pending" if status == "pending" else None)
        if current is not None and current["kind"] == kind:
            continue
        if current is not None:
            current["end"] = event["time"]
            out.append(current)
            current = None
        if kind is not None:
            current = {"kind": kind, "start": event["time"], "end": None}
    if current is None and not events and alert["status"] in ACTIVE:
        since = alert.get("first_triggered_at") or alert.get("pending_since")
        if since is not None:  # history aged out: the instance still knows when it began
            kind = "pending" if alert["status"] == "pending" else "firing"
            current = {"kind": kind, "start": since, "end": None}
    if current is not None:
        current["end"] = now
        out.append(current)
    return out


def _step(start: datetime, end: datetime) -> timedelta:
    minutes = max(1, int((end - start) / timedelta(minutes=1)) // MAX_STEPS + 1)
    return timedelta(minutes=minutes)


def condition_series(
    conn: Connection,
    *,
    instance_id: int,
    start: datetime,
    end: datetime,
    tz: ZoneInfo,
) -> dict[str, Any]:
    """The value the engine compared at each step of [start, end] for this alert (its own
    alert key), with the threshold it was compared against (None where a line would mislead:
    anomaly, composite, PromQL). `note` says what the values are."""
    empty: dict[str, Any] = {"points": [], "thresholds": [], "note": ""}
    try:
        alert = get_instance(conn, instance_id=instance_id)
        rule = rule_from_row(get_rule(conn, rule_id=int(alert["alert_configuration_id"])))
    except (RuleNotFound, RuleInvalid):
        return empty
    cond = rule.condition
    if cond.type == "external":
        return {**empty, "note": "an external alert carries no series of its own"}
    if cond.type in ("promql", "composite"):
        replay = backtest(conn, rule, start=start, end=end, tz=tz)
        found: list[list[Any]] = next(
            (s["points"] for s in replay["series"] if s["alert_key"] == alert["alert_key"]), []
        )
        note = "children holding" if cond.type == "composite" else "expression value"
        return {
            "points": [(t, v) for t, v in found if v is not None],
            "thresholds": [],
            "note": note,
        }
    key = series_mod.fetch_key(rule)
    if key is None:
        return empty
    step = _step(start, end)
    steps = [start + i * step for i in range(int((end - start) / step) + 1)]
    if key.kind == "hour" or regression(rule, key):
        # an anomaly rule reads a different series at each step (the hour so far and the same
        # minutes of past weeks), a regression rule the flags of that moment: the backtest's
        # source gives each one, as a cycle read it
        at_step, _classes = (
            anomaly_source(conn, rule, key, steps)
            if key.kind == "hour"
            else regression_rule_source(conn, rule, key, steps, [cond.value])
        )
        checks = [
            (at, check_condition(rule, at_step(at).get(alert["alert_key"], ({}, []))[1], at,
                                 tz=tz))
            for at in steps
        ]  # fmt: skip
    else:
        span = (end - start) + series_mod.lookback(rule)
        grouped = series_mod.fetch(conn, key, span=span, now=end, step=step)
        keyed = series_mod.for_rule(rule, key, grouped)
        _dims, points = keyed.get(alert["alert_key"], ({}, []))
        checks = [(at, check_condition(rule, points, at, tz=tz)) for at in steps]
    values = [(at, c.value) for at, c in checks if c.value is not None]
    lined = cond.type in ("threshold", "pattern", "absence", "rate_of_change")
    thresholds = [(at, c.threshold) for at, c in checks if lined and c.threshold is not None]
    note = {
        "threshold": f"{aggregation_words(cond.aggregation)} over {_minutes(cond.window_minutes)}",
        "pattern": f"matching events in {_minutes(cond.window_minutes)}",
        "absence": "minutes since the last data",
        "rate_of_change": f"change over {_minutes(cond.window_minutes)}",
        "anomaly": "the hour's value so far",
    }.get(cond.type, "")
    return {"points": values, "thresholds": thresholds, "note": note}


def silence_preview(
    conn: Connection, *, matchers: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The active alerts a silence with these matchers would cover (name, key, status)."""
    query = select(alert_rules.c.id, alert_rules.c.alert_name, alert_rules.c.service_name)
    rules = {int(r.id): dict(r._mapping) for r in conn.execute(query)}
    out = []
    for alert in list_active_alerts(conn):
        rule_row = rules.get(int(alert["alert_configuration_id"]))
        if rule_row is not None and matches(matchers, labels_of(alert, rule_row)):
            out.append(
                {
                    "id": alert["id"],
                    "alert_name": alert["alert_name"],
                    "alert_key": alert["alert_key"],
                    "status": alert["status"],
                }
            )
    return out
