"""Testing a rule against stored history: replay the engine over a past range, send nothing.

Answers "when would it have fired?" for the rule editor and `POST …/alerts/{id}/test`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from monitoring_core.alerts import series as series_mod
from monitoring_core.alerts.engine import (
    AlertState,
    Check,
    Decision,
    Point,
    check_condition,
    effective_severity,
    evaluate,
    transition,
)
from monitoring_core.alerts.promql_rules import promql_series
from monitoring_core.alerts.rules import Rule, RuleInvalid, rule_from_row
from monitoring_core.alerts.store import RuleNotFound, get_rule
from monitoring_core.prometheus.promql.model import QueryError

__all__ = ["MAX_STEPS", "backtest"]

MAX_STEPS = 2_000
MAX_NESTING = 3  # composite of composite of …


def _step(start: datetime, end: datetime) -> timedelta:
    """One evaluation per minute, coarser for long ranges (at most MAX_STEPS)."""
    minutes = max(1, int((end - start) / timedelta(minutes=1)) // MAX_STEPS + 1)
    return timedelta(minutes=minutes)


def _windows(points: list[Point], steps: list[datetime], reach: timedelta) -> Iterator[list[Point]]:
    """Per step, the points the engine's lookback could use at that moment."""
    lo = hi = 0
    for at in steps:
        while hi < len(points) and points[hi].time <= at:
            hi += 1
        while lo < hi and points[lo].time <= at - reach:
            lo += 1
        yield points[lo:hi]


def _keyed(conn: Connection, rule: Rule, start: datetime, end: datetime) -> series_mod.Keyed:
    key = series_mod.fetch_key(rule)
    assert key is not None
    span = (end - start) + series_mod.lookback(rule)
    grouped = series_mod.fetch(conn, key, span=span, now=end, step=_step(start, end))
    return series_mod.for_rule(rule, key, grouped) or {"": ({}, [])}


def _held(
    conn: Connection, rule: Rule, steps: list[datetime], tz: ZoneInfo, depth: int = 0
) -> list[bool | None]:
    """Per step, whether the rule's condition held for any of its keys (as a cycle tells a
    composite rule about its children)."""
    if rule.condition.type == "composite":
        return [d.check.holds for d in _composite_decisions(conn, rule, steps, tz, depth + 1)]
    per_key = [
        [
            check_condition(rule, window, at, tz=tz).holds
            for at, window in zip(
                steps, _windows(points, steps, series_mod.lookback(rule)), strict=True
            )
        ]
        for _dims, points in _keyed(conn, rule, steps[0], steps[-1]).values()
    ]
    return [
        True if True in held else (False if False in held else None)
        for held in zip(*per_key, strict=True)
    ]


def _composite_decisions(
    conn: Connection, rule: Rule, steps: list[datetime], tz: ZoneInfo, depth: int
) -> list[Decision]:
    if depth > MAX_NESTING:
        raise ValueError(f"composite rules nest deeper than {MAX_NESTING} levels")
    children = {}
    for child_id in rule.condition.rules:
        try:
            child = rule_from_row(get_rule(conn, rule_id=child_id))
        except RuleNotFound:
            raise ValueError(f"no alert rule with id {child_id}") from None
        children[child_id] = _held(conn, child, steps, tz, depth)
    state, decisions = AlertState(), []
    for i, at in enumerate(steps):
        decision = evaluate(
            rule, (), state, at, tz=tz, children={c: h[i] for c, h in children.items()}
        )
        decisions.append(decision)
        state = _after(decision, at)
    return decisions


def _after(decision: Decision, at: datetime) -> AlertState:
    if decision.notify in ("firing", "repeat", "no_data"):
        return replace(decision.state, last_notified_at=at)
    return decision.state


def _promql_replay(
    conn: Connection, rule: Rule, steps: list[datetime], tz: ZoneInfo
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A PromQL rule over history: its expression as a range query at the backtest's steps,
    then per returned series the transitions a cycle at each step would have made."""
    try:
        found = promql_series(conn, rule.condition.expr, steps)
    except QueryError as exc:
        raise RuleInvalid([{"field": "condition_config.expr", "message": str(exc)}]) from None
    events, series = [], []
    for key, (_labels, values, present) in found.items():
        state = AlertState()
        for i, at in enumerate(steps):
            held = bool(present[i])
            message = f"{rule.condition.expr} {'returned' if held else 'returned nothing'}"
            check = Check(held, float(values[i]) if held else None, None, message)
            decision = transition(rule, state, check, at, severity=effective_severity(rule, at, tz))
            state = _after(decision, at)
            if decision.changed or decision.notify:
                events.append(_event(at, key, decision))
        points = [[at, float(values[i])] for i, at in enumerate(steps) if present[i]]
        series.append({"alert_key": key, "points": points})
    events.sort(key=lambda e: e["time"])
    return events, series


def _event(at: datetime, alert_key: str, decision: Decision) -> dict[str, Any]:
    return {
        "time": at,
        "alert_key": alert_key,
        "from_status": decision.from_status,
        "to_status": decision.state.status,
        "notify": decision.notify,
        "value": decision.check.value,
        "threshold": decision.check.threshold,
    }


def backtest(
    conn: Connection, rule: Rule, *, start: datetime, end: datetime, tz: ZoneInfo
) -> dict[str, Any]:
    """Transitions the rule would have made in [start, end], per alert key, and its series.

    A composite rule replays its children (read from the database by id) and combines them
    step by step; its series is the number of children holding."""
    if rule.condition.type == "external":
        message = "an external rule's alerts come from Prometheus or Grafana: no history to replay"
        raise RuleInvalid([{"field": "condition_config.type", "message": message}])
    step = _step(start, end)
    steps = [start + i * step for i in range(int((end - start) / step) + 1)]
    events: list[dict[str, Any]] = []
    if rule.condition.type == "promql":
        events, series = _promql_replay(conn, rule, steps, tz)
    elif rule.condition.type == "composite":
        decisions = _composite_decisions(conn, rule, steps, tz, depth=1)
        events = [
            _event(at, "", d)
            for at, d in zip(steps, decisions, strict=True)
            if d.changed or d.notify
        ]
        series = [
            {
                "alert_key": "",
                "points": [[at, d.check.value] for at, d in zip(steps, decisions, strict=True)],
            }
        ]
    else:
        keyed = _keyed(conn, rule, start, end)
        reach = series_mod.lookback(rule)
        for alert_key, (_dims, points) in keyed.items():
            state = AlertState()
            for at, window in zip(steps, _windows(points, steps, reach), strict=True):
                decision = evaluate(rule, window, state, at, tz=tz)
                state = _after(decision, at)
                if decision.changed or decision.notify:
                    events.append(_event(at, alert_key, decision))
        series = [
            {"alert_key": k, "points": [[p.time, p.value] for p in pts if p.time >= start]}
            for k, (_d, pts) in keyed.items()
        ]
    fired = [e for e in events if e["notify"] == "firing"]
    return {
        "step_seconds": step.total_seconds(),
        "fired_count": len(fired),
        "fired": fired,
        "events": events,
        "series": series,
    }
