"""Testing a rule against stored history: replay the engine over a past range, send nothing.

Answers "when would it have fired?" for the rule editor and `POST …/alerts/{id}/test`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from monitoring_core.alerts import series as series_mod
from monitoring_core.alerts.engine import AlertState, evaluate
from monitoring_core.alerts.rules import Rule

__all__ = ["MAX_STEPS", "backtest"]

MAX_STEPS = 2_000


def _step(start: datetime, end: datetime) -> timedelta:
    """One evaluation per minute, coarser for long ranges (at most MAX_STEPS)."""
    minutes = max(1, int((end - start) / timedelta(minutes=1)) // MAX_STEPS + 1)
    return timedelta(minutes=minutes)


def backtest(
    conn: Connection, rule: Rule, *, start: datetime, end: datetime, tz: ZoneInfo
) -> dict[str, Any]:
    """Transitions the rule would have made in [start, end], per alert key, and its series."""
    key = series_mod.fetch_key(rule)
    if key is None:
        raise ValueError("only metric rules can be tested against history")
    span = (end - start) + series_mod.lookback(rule)
    grouped = series_mod.fetch(conn, key, span=span, now=end)
    keyed = series_mod.for_rule(rule, key, grouped) or {"": ({}, [])}
    step = _step(start, end)
    events: list[dict[str, Any]] = []
    for alert_key, (_dims, points) in keyed.items():
        state, at, lo, hi = AlertState(), start, 0, 0
        reach = series_mod.lookback(rule)
        while at <= end:  # the engine sees only the points its lookback could use
            while hi < len(points) and points[hi].time <= at:
                hi += 1
            while lo < hi and points[lo].time <= at - reach:
                lo += 1
            decision = evaluate(rule, points[lo:hi], state, at, tz=tz)
            state = decision.state
            if decision.notify in ("firing", "repeat", "no_data"):
                state = replace(state, last_notified_at=at)
            if decision.changed or decision.notify:
                events.append({"time": at, "alert_key": alert_key, "from_status": decision.from_status,
                               "to_status": state.status, "notify": decision.notify,
                               "value": decision.check.value, "threshold": decision.check.threshold})  # fmt: skip
            at += step
    series = [
        {"alert_key": k, "points": [[p.time, p.value] for p in pts if p.time >= start]}
        for k, (_d, pts) in keyed.items()
    ]
    fired = [e for e in events if e["notify"] == "firing"]
    return {"step_seconds": step.total_seconds(), "fired_count": len(fired), "fired": fired,
            "events": events, "series": series}  # fmt: skip
