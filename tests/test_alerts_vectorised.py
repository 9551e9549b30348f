"""`engine.evaluate_keys` on array views (the live cycle's raw reads, checked for all keys of
a rule at once in numpy) against the same series as plain lists (the per-key path): random
series and threshold rules must give identical decisions, and every key the arrays call quiet
must be one the per-key path leaves exactly as it was (no state change, nothing to notify);
keys still firing are decided from the arrays too (their values summed exactly)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from monitoring_core.alerts.engine import (
    AlertState,
    Columns,
    Known,
    Point,
    Points,
    effective_severity,
    evaluate,
    evaluate_keys,
)
from monitoring_core.alerts.rules import Rule, parse_condition

TZ = ZoneInfo("Europe/London")
EPOCH, US = datetime(1970, 1, 1, tzinfo=UTC), timedelta(microseconds=1)
STEP = timedelta(seconds=10)
MOMENTS = [
    datetime(2026, 3, 10, 12, 0, 3, 250_000, tzinfo=UTC),  # a Tuesday out of season
    datetime(2026, 6, 13, 9, 30, tzinfo=UTC),  # a Saturday in peak season
    datetime(2026, 8, 4, 23, 59, 59, tzinfo=UTC),
]
OPERATORS = [
    "greater_than",
    "less_than",
    "greater_than_or_equal",
    "less_than_or_equal",
    "equals",
    "not_equals",
]
AGGREGATIONS = ["avg", "sum", "count", "min", "max", "p95", "p50"]
STATES = [None, "resolved", "expired", "firing", "pending", "no_data", "acknowledged"]


def _block(rng: random.Random, now: datetime, keys: int) -> tuple[list[Points], list[list[Point]]]:
    """`keys` series on a 10 s grid ending at `now` (the last stamp is `now` itself, as a
    cycle's partial bucket), as views of one block and as plain lists."""
    since = now - timedelta(minutes=20)
    stamps = [min(since + (i + 1) * STEP, now) for i in range(122)]
    numbers: list[int] = []
    values: list[float] = []
    starts = [0]
    pool = [50.0, 100.0, 100.0, 250.5]  # repeated values: averages and sums hit limits exactly
    for _ in range(keys):
        chosen = sorted(rng.sample(range(len(stamps)), rng.randint(1, 40)))
        if rng.random() < 0.3:  # some series stopped a while ago
            chosen = [n for n in chosen if n < 60] or chosen[:1]
        for n in chosen:
            x = rng.choice(pool) if rng.random() < 0.4 else rng.gammavariate(4.0, 30.0)
            if rng.random() < 0.02:
                x = rng.choice([float("nan"), float("inf")])
            numbers.append(n)
            values.append(x)
        starts.append(len(numbers))
    stamps_us = np.array([(s - EPOCH) // US for s in stamps])
    nums = np.asarray(numbers, dtype=np.int64)
    block = Columns(stamps, nums, stamps_us[nums], np.asarray(values), np.asarray(starts))
    plain = [
        [Point(stamps[numbers[r]], values[r]) for r in range(lo, hi)]
        for lo, hi in zip(starts[:-1], starts[1:], strict=True)
    ]
    return block.series(), plain


def _rule(rng: random.Random, grouped: bool) -> Rule:
    cfg: dict[str, Any] = {
        "type": "threshold",
        "metric": "m",
        "aggregation": rng.choice(AGGREGATIONS),
        "operator": rng.choice(OPERATORS),
        "value": rng.choice([100.0, 50.0, 250.5, rng.uniform(0, 400), 0.0]),
        "window_minutes": rng.choice([1, 2, 5, 10, 0.5]),
        "duration_minutes": rng.choice([0, 2]),
    }
    if grouped:
        cfg["group_by"] = ["k"]
    return Rule(
        7,
        "r",
        rng.choice(["low", "medium", "high"]),
        parse_condition(cfg),
        weekend_escalation=rng.random() < 0.5,
        wedding_season_adjustment=rng.random() < 0.5,
    )


def _known(rng: random.Random, rule: Rule, now: datetime, key: str) -> Known | None:
    status = rng.choice(STATES)
    if status is None:
        return None
    state = AlertState(
        status=status,
        pending_since=now - timedelta(minutes=3) if status == "pending" else None,
        last_triggered_at=now - timedelta(minutes=1),
        trigger_count=3,
        no_data_since=now - timedelta(minutes=9) if rng.random() < 0.2 else None,
    )
    severity = effective_severity(rule, now, TZ) if rng.random() < 0.8 else "critical"
    return Known(state, severity, {"k": key})


def test_array_views_decide_as_the_per_key_path() -> None:
    rng = random.Random(19)
    quiet = moved = still = 0
    for trial in range(400):
        now = MOMENTS[trial % len(MOMENTS)]
        grouped = trial % 4 != 0
        views, plain = _block(rng, now, rng.randint(1, 25) if grouped else 1)
        rule = _rule(rng, grouped)
        keys = [f"k=k{i}" if grouped else "" for i in range(len(views))]
        dims = [{"k": f"k{i}"} if grouped else {} for i in range(len(views))]
        known = {k: kn for k in keys if (kn := _known(rng, rule, now, k)) is not None}
        if grouped and rng.random() < 0.3:  # a known key absent from this evaluation
            gone = _known(rng, rule, now, "gone")
            if gone is not None:
                known["k=gone"] = gone
        fast = evaluate_keys(
            rule, dict(zip(keys, zip(dims, views, strict=True), strict=True)), known, now, tz=TZ
        )
        slow = evaluate_keys(
            rule, dict(zip(keys, zip(dims, plain, strict=True), strict=True)), known, now, tz=TZ
        )
        assert not slow.quiet  # plain lists: every key one by one
        by_key = {d.key: d for d in slow}
        # repr: a NaN value (the per-key path's, for a window holding NaN) equals itself there
        assert repr(sorted(fast)) == repr(sorted(slow))
        assert len(fast) == len(slow)
        for key, _dims, points, before in fast.quiet:
            state = before.state if before is not None else AlertState()
            plain_points = list(points)
            decision = evaluate(rule, plain_points, state, now, tz=TZ)
            assert decision.check.holds is False
            assert decision.state == state and decision.notify is None
            assert not decision.changed
            assert before is None or before.severity == decision.severity
            assert repr(by_key[key].decision) == repr(decision)
        for key, before in known.items():  # keys still firing: decided from the arrays
            after = by_key[key].decision
            held = before.state.status in ("firing", "acknowledged") and after.check.holds
            still += bool(held and before.state.no_data_since is None and key != "k=gone")
        quiet += len(fast.quiet)
        moved += len(fast.moved)
    assert quiet > 250 and moved > 1000 and still > 250  # every path exercised


def test_views_read_like_lists() -> None:
    views, plain = _block(random.Random(3), MOMENTS[0], 4)
    for view, points in zip(views, plain, strict=True):
        assert len(view) == len(points) and list(view) == points and view == points
        assert view[-1] == points[-1] and view[1:3] == points[1:3]
        assert view.newest_us() == (points[-1].time - EPOCH) // US
