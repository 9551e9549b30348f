"""Testing a rule against stored history: replay the engine over a past range, send nothing.

Answers "when would it have fired?" for the rule editor and `POST …/alerts/{id}/test`.

The replay is the live cycle run at each step with a frozen clock: the same per-rule code
(`engine.evaluate_keys`: present, absent and "no data at all" keys, each instance's state
carried from step to step, notification stamps as the cycle writes them) over the series
the cycle would have read at that moment. For rules whose window the cycle reads from raw
points (`series.RAW_MAX`), the raw points of the whole range are read once (up to
RAW_LIMIT) and each step's series is built by the cycle's own `SeriesReader` from the
points in that step's span, so a backtest and the cycles that ran at its steps agree
(`tests/test_backtest_live.py` runs both over the same history). Other rules read their
series once for the range (rollups, signals at every step) and slice it per step.

Steps are multiples of the step from the epoch, so two backtests with the same step look at
the same moments. What the replay cannot know: silences (a silenced notification does not
stamp `last_notified_at`, so repeats come at other times), points that arrived late, and
whether a rule had seen data before the range (no data is notified as if it had).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Connection

from monitoring_core.alerts import series as series_mod
from monitoring_core.alerts.engine import (
    AlertState,
    Check,
    Decision,
    Known,
    Point,
    check_condition,
    effective_severity,
    evaluate,
    evaluate_keys,
    transition,
)
from monitoring_core.alerts.promql_rules import promql_series
from monitoring_core.alerts.raw import RawMetric, read_raw
from monitoring_core.alerts.rules import Rule, RuleInvalid, rule_from_row
from monitoring_core.alerts.store import RuleNotFound, get_rule
from monitoring_core.prometheus.promql.model import QueryError
from monitoring_core.rollup_read import floor_to
from monitoring_core.timerange import TimeRange

__all__ = ["MAX_STEPS", "RAW_LIMIT", "backtest", "steps_of"]

MAX_STEPS = 2_000
MAX_NESTING = 3  # composite of composite of …
RAW_LIMIT = 2_000_000  # raw points of a metric read at once for a replay; beyond: rollups
MINUTE = timedelta(minutes=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _step(start: datetime, end: datetime) -> timedelta:
    """One evaluation per minute, coarser for long ranges (at most MAX_STEPS)."""
    minutes = max(1, int((end - start) / timedelta(minutes=1)) // MAX_STEPS + 1)
    return timedelta(minutes=minutes)


def steps_of(start: datetime, end: datetime) -> list[datetime]:
    """The moments a backtest of [start, end] evaluates at: multiples of its step since the
    epoch (the same moments for every backtest with that step)."""
    step = _step(start, end)
    first = _EPOCH + -((_EPOCH - start) // step) * step  # start rounded up to a step
    return [first + i * step for i in range(int((end - first) / step) + 1)]


def _epoch_s(moment: datetime) -> float:
    """Seconds since the epoch exactly as the points reader computes them (µs / 1e6)."""
    return ((moment - _EPOCH) // _US) / 1e6


def _live_series(
    conn: Connection, rule: Rule, steps: list[datetime]
) -> Iterator[series_mod.Keyed] | None:
    """Per step, the series the live cycle would have read at that moment (None: the rule
    does not read metric points by the minute).

    A window up to `series.RAW_MAX` is built from the raw points in its span; a longer one
    from the 1-minute rollups before the last `RAW_TAIL` and the raw points since
    (`series.long_window`, as the cycle). The raw points of the whole range are read once
    when there are at most RAW_LIMIT of them, else each step reads its own as a cycle does."""
    key = series_mod.fetch_key(rule)
    span = series_mod.lookback(rule)
    if key is None or key.kind != "minute":
        return None
    raw_span = series_mod.RAW_TAIL if key.long else span
    raw_at = _raw_source(conn, key.metric, steps, raw_span)
    rollups = _rollup_source(conn, key, steps, span) if key.long else None

    def per_step() -> Iterator[series_mod.Keyed]:
        for at in steps:
            reader = series_mod.SeriesReader(conn, at, views=True)
            reader.raw_cache[key.metric] = raw_at(at)
            if rollups is None:
                grouped = reader.fetch(key, span)
            else:
                raw_from = floor_to(at - series_mod.RAW_TAIL, MINUTE)
                tail = reader._raw_points(key, reader.raw_cache[key.metric], raw_from)
                grouped = series_mod.long_window(
                    rollups(floor_to(at - span, MINUTE), at), tail, raw_from, at
                )
            yield series_mod.for_rule(rule, key, grouped)

    return per_step()


def _raw_source(
    conn: Connection, metric: str, steps: list[datetime], raw_span: timedelta
) -> Callable[[datetime], RawMetric | None]:
    """`at -> what raw.read_raw returns at at` (points in (since, at], since a minute floor)."""
    since = floor_to(steps[0] - raw_span, MINUTE)
    raw = read_raw(conn, {metric: since}, now=steps[-1], limit=RAW_LIMIT)[metric]
    if raw is None:  # too many for one read: each step reads its own, as a cycle does

        def own(at: datetime) -> RawMetric | None:
            wanted = {metric: floor_to(at - raw_span, MINUTE)}
            return read_raw(conn, wanted, now=at, limit=series_mod.RAW_LIMIT)[metric]

        return own
    order = np.argsort(raw.t, kind="stable")
    t, v, s = raw.t[order], raw.v[order], raw.s[order]

    def sliced(at: datetime) -> RawMetric | None:
        lo = int(np.searchsorted(t, _epoch_s(floor_to(at - raw_span, MINUTE)), side="right"))
        hi = int(np.searchsorted(t, _epoch_s(at), side="right"))
        if hi - lo > series_mod.RAW_LIMIT:  # the cycle's read gives up: rollups
            return None
        return RawMetric(raw.dims, t[lo:hi], v[lo:hi], s[lo:hi])

    return sliced


def _rollup_source(
    conn: Connection, key: series_mod.FetchKey, steps: list[datetime], span: timedelta
) -> Callable[[datetime, datetime], dict[tuple, dict[datetime, float]]]:
    """`(lo, hi) -> the 1-minute rollups in [lo, hi) per group`, read once for the range (what
    the cycle's `query_metric` over (now − span, now] gives at each step)."""
    reader = series_mod.SeriesReader(conn, steps[-1])
    read = reader._rollups(key, TimeRange(steps[0] - span, steps[-1]))
    groups = {
        values: (sorted(buckets), [buckets[b] for b in sorted(buckets)])
        for values, buckets in read.items()
    }

    def between(lo: datetime, hi: datetime) -> dict[tuple, dict[datetime, float]]:
        out = {}
        for values, (times, xs) in groups.items():
            a, b = bisect.bisect_left(times, lo), bisect.bisect_left(times, hi)
            if b > a:
                out[values] = dict(zip(times[a:b], xs[a:b], strict=True))
        return out

    return between


def _sliced(
    keyed: series_mod.Keyed, steps: list[datetime], reach: timedelta
) -> Iterator[series_mod.Keyed]:
    """Per step, each key's points within `reach` before it; a key without any is absent
    (as a cycle's read leaves out a group with no points)."""
    windows = {k: (dims, _windows(points, steps, reach)) for k, (dims, points) in keyed.items()}
    for _at in steps:
        out: series_mod.Keyed = {}
        for k, (dims, it) in windows.items():
            window = next(it)
            if window:
                out[k] = (dims, window)
        yield out


def _windows(
    points: Sequence[Point], steps: list[datetime], reach: timedelta
) -> Iterator[Sequence[Point]]:
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


def _replay(
    conn: Connection, rule: Rule, steps: list[datetime], tz: ZoneInfo
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The live cycle's decisions for this rule at each step (see the module docstring);
    series: per alert key the value the engine compared at each step, or (read from the
    rollups) the points of the range."""
    per_step = _live_series(conn, rule, steps)
    series: list[dict[str, Any]] | None = None
    if per_step is None:
        keyed = _keyed(conn, rule, steps[0], steps[-1])
        per_step = _sliced(keyed, steps, series_mod.lookback(rule))
        series = [
            {"alert_key": k, "points": [[p.time, p.value] for p in pts if p.time >= steps[0]]}
            for k, (_d, pts) in keyed.items()
        ]
    known: dict[str, Known] = {}
    events: list[dict[str, Any]] = []
    values: dict[str, list[list[Any]]] = {}
    for at, keyed_now in zip(steps, per_step, strict=True):
        for key, dims, decision, present in evaluate_keys(rule, keyed_now, known, at, tz=tz):
            if present and decision.check.value is not None:
                values.setdefault(key, []).append([at, decision.check.value])
            if decision.state.status is None:  # a quiet key the cycle would not store
                continue
            known[key] = Known(_after(decision, at), decision.severity, dims)
            if decision.changed or decision.notify:
                events.append(_event(at, key, decision))
    if series is None:
        series = [{"alert_key": k, "points": pts} for k, pts in values.items()] or [
            {"alert_key": "", "points": []}
        ]
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
    steps = steps_of(start, end)
    if not steps:
        return {"step_seconds": step.total_seconds(), "fired_count": 0, "fired": [],
                "events": [], "series": []}  # fmt: skip
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
        events, series = _replay(conn, rule, steps, tz)
    fired = [e for e in events if e["notify"] == "firing"]
    return {
        "step_seconds": step.total_seconds(),
        "fired_count": len(fired),
        "fired": fired,
        "events": events,
        "series": series,
    }
