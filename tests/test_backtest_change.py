"""Rate of change rules on a metric's sums and counts in a backtest: every step, the raw
points and the 1-minute rollups read once (`backtest_change`).

Eighty minutes of `orders` from two shops at random moments (a Poisson number every
10 s: bucket counts and sums that vary), one shop's orders falling away for a quarter of an
hour and coming back in a rush, its order values jumping for ten minutes; rolled up, then
later the raw points of the first 40 minutes deleted (as retention does after 14 days: the
backtest reads the rollups there). Rules: counts falling in percent by shop, sums jumping in
absolute terms and in percent, a count over a window longer than `series.RAW_MAX` (the
rollups, then the raw tail). The live engine runs committed cycles every minute, then every
15 s over the last 30 minutes; the backtest tells the same, skipping or not, with far fewer
steps evaluated than the range has (it used to step such rules at most 2,000 times).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, text

from monitoring_core.alerts.backtest import backtest
from monitoring_core.alerts.rules import rule_from_row
from monitoring_core.alerts.store import get_rule
from monitoring_core.partitions import ensure_partitions
from monitoring_core.rollups import run_rollups
from tests.backtest_support import replayed_as_live, saved_rules
from tests.rollup_fixtures import add_points, add_series
from tests.test_backtest_live import NOW, TZ, ordered

START = NOW - timedelta(minutes=80)
MIN = timedelta(minutes=1)
CHANGE = {"type": "rate_of_change", "metric": "orders", "window_minutes": 3}
RULES: dict[str, dict[str, Any]] = {
    "orders fall by shop": {**CHANGE, "aggregation": "count", "operator": "less_than",
                            "value": -60, "group_by": ["shop"], "expire_minutes": 10},
    "order value jumps": {**CHANGE, "aggregation": "sum", "change_mode": "absolute",
                          "value": 400, "filters": {"shop": "a"}},
    # the same read as the rule above (a cycle reads a metric, aggregation and dimensions
    # once, over the longest of their windows): the same window
    "value up by shop": {**CHANGE, "aggregation": "sum", "value": 150,
                         "group_by": ["shop"], "duration_minutes": 1},
    # a long window: the newest raw bucket's count against the minute's 25 minutes before
    "rush over 25 min": {**CHANGE, "aggregation": "count", "change_mode": "absolute",
                         "operator": "less_than", "value": -15, "window_minutes": 25,
                         "filters": {"shop": "a"}},
}  # fmt: skip


def _orders(engine: Engine) -> None:
    rng = np.random.default_rng(51)
    first = NOW - timedelta(minutes=110)
    rows: dict[str, list[tuple[datetime, float]]] = {"a": [], "b": []}
    for i in range(110 * 6):
        base = first + timedelta(seconds=10 * i)
        ago = (NOW - base) / MIN
        for shop, rate in (("a", 1.5), ("b", 0.8)):
            if shop == "a" and 30 < ago <= 45:
                rate = 0.1  # falling away for a quarter of an hour
            if shop == "a" and 26 < ago <= 30:
                rate = 5.0  # then a rush
            for _ in range(int(rng.poisson(rate))):
                at = base + timedelta(seconds=float(rng.uniform(0, 10)))
                value = float(rng.uniform(20, 120))
                if shop == "a" and 50 < ago <= 60:
                    value *= 4  # bigger orders for ten minutes
                rows[shop].append((at, round(value, 2) if shop == "a" else value))
    with engine.begin() as conn:
        ensure_partitions(conn, start=first, end=NOW, tables=("metric_points",))
        for shop, points in rows.items():
            add_points(conn, add_series(conn, "orders", {"shop": shop}), points,
                       ingested_at=first)  # fmt: skip
    run_rollups(engine, NOW, safety_lag=timedelta(0))


@pytest.fixture
def change_rules(engine: Engine) -> dict[str, int]:
    _orders(engine)
    return saved_rules(engine, START, RULES, repeat_minutes=6)


def test_every_minute_the_backtest_tells_what_the_live_cycles_did(
    engine: Engine, change_rules: dict[str, int]
) -> None:
    replays, _changes = replayed_as_live(engine, change_rules, START, NOW, MIN)
    assert all(r["fired_count"] >= 1 for r in replays.values()), {
        n: r["fired_count"] for n, r in replays.items()}  # fmt: skip
    evaluated = {name: r["evaluated_steps"] for name, r in replays.items()}
    assert sum(evaluated.values()) < 0.5 * 81 * len(evaluated), evaluated


def test_where_raw_points_are_gone_it_replays_the_rollups_skipping_only_what_changes_nothing(
    engine: Engine, change_rules: dict[str, int]
) -> None:
    """Retention took the first 40 minutes' raw points (a cycle back then read them): the
    backtest reads the 1-minute rollups there, as `_live_series` does, and skipping the
    steps `backtest_change` finds certain gives the same events as evaluating every one."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM metric_points WHERE time < :t"), {"t": START + 40 * MIN})
    evaluated, fired = {}, 0
    with engine.connect() as conn:
        for name, rule_id in change_rules.items():
            rule = rule_from_row(get_rule(conn, rule_id=rule_id))
            for step in (MIN, timedelta(seconds=15)):
                replay = backtest(conn, rule, start=START, end=NOW, tz=TZ, step=step)
                every = backtest(conn, rule, start=START, end=NOW, tz=TZ, step=step,
                                 skip_quiet=False)  # fmt: skip
                assert ordered(replay["events"]) == ordered(every["events"]), (name, step)
                evaluated[(name, step)] = (replay["evaluated_steps"], every["evaluated_steps"])
                fired += sum(e["time"] < START + 40 * MIN for e in replay["fired"])
    assert fired >= 2  # the rollups' minutes tell changes too
    assert sum(a for a, _b in evaluated.values()) < 0.5 * sum(b for _a, b in evaluated.values())


def test_at_the_default_step_it_agrees_with_cycles_every_15_s(
    engine: Engine, change_rules: dict[str, int]
) -> None:
    replayed_as_live(engine, change_rules, NOW - timedelta(minutes=30), NOW)


EQUALITIES: dict[str, dict[str, Any]] = {
    "exactly 3 orders in 5 min by shop": {"type": "threshold", "metric": "orders",
                                          "aggregation": "count", "operator": "equals",
                                          "value": 3, "window_minutes": 5,
                                          "group_by": ["shop"]},
    "any order in 5 min at a": {"type": "threshold", "metric": "orders",
                                "aggregation": "count", "operator": "not_equals",
                                "value": 0, "window_minutes": 5, "filters": {"shop": "a"},
                                "repeat_interval_minutes": 30},
}  # fmt: skip


def test_equality_thresholds_are_replayed_at_every_step_too(engine: Engine) -> None:
    """`equals` is certainly False where the window's bounds leave out the value, and
    `not_equals` certainly True there (they stepped at most 2,000 times): every minute and
    every 15 s, the same as the live cycles."""
    _orders(engine)
    ids = saved_rules(engine, START, EQUALITIES, repeat_minutes=10)
    replays, _changes = replayed_as_live(engine, ids, START, NOW, MIN)
    assert all(r["fired_count"] >= 1 for r in replays.values())
    for name, replay in replays.items():
        assert replay["evaluated_steps"] < replay["every_step_evaluated"] / 2, (name, replay)
