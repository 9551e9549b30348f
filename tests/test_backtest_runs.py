"""Rules replayed key by key (`backtest_runs`), flapping ones too (they used to fall back to
capped steps), and rates of change on a metric computed exactly at every step
(`backtest_change.change_source`).

Eighty minutes of `latency` from two regions, a point every 4 to 12 s with values in the
noise (a +10 % change within 3 minutes is there most of the time: the rules flap), one
region climbing for twelve minutes, the other silent for six, rolled up. Rules: a rate of
change of the average in percent by region, of the maximum in absolute terms with a
duration and repeats, of the sum with a `recovery_value` (a firing instance waits to be
past it: the engine step by step), of the minimum, and of the p95 (each bucket's from its
points, each minute's from its histogram where raw points are gone). The backtest replays them key by
key at the live cadence, however often they change. The live engine runs committed cycles
every minute, and every 15 s over the last half hour; the backtest tells the same status
changes and notifications, and the same events as every step evaluated (the step-by-step
replay, nothing skipped)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine

from monitoring_core.alerts import backtest as backtest_mod
from monitoring_core.alerts.backtest import backtest
from monitoring_core.alerts.backtest_change import change_source
from monitoring_core.alerts.backtest_runs import DISPLAY_POINTS, _thinned
from monitoring_core.alerts.rules import rule_from_row
from monitoring_core.alerts.store import get_rule
from tests.backtest_support import (
    add_latency,
    drop_raw_before,
    engine_agrees,
    minute_rule,
    replayed_as_live,
    saved_rules,
    silent_six_minutes,
    spied,
)
from tests.test_backtest_live import NOW, TZ, ordered

START = NOW - timedelta(minutes=80)
MIN = timedelta(minutes=1)
CHANGE = {"type": "rate_of_change", "metric": "latency", "window_minutes": 3,
          "group_by": ["region"]}  # fmt: skip
RULES: dict[str, dict[str, Any]] = {
    "avg up 10 % by region": {**CHANGE, "aggregation": "avg", "value": 10},
    "max up 30 ms, for a minute": {**CHANGE, "aggregation": "max", "change_mode": "absolute",
                                   "value": 30, "duration_minutes": 1},
    "sum up 15 %, recovering below 5 %": {**CHANGE, "aggregation": "sum", "value": 15,
                                          "recovery_value": 5},
    "min down 20 ms": {**CHANGE, "aggregation": "min", "change_mode": "absolute",
                       "operator": "less_than", "value": -20, "expire_minutes": 5},
    "p95 up 10 % by region": {**CHANGE, "aggregation": "p95", "value": 10},
}  # fmt: skip


def _latency(engine: Engine) -> None:
    rng = np.random.default_rng(23)
    regions = {}
    for region, level in (("a", 80.0), ("b", 120.0)):
        at = np.cumsum(rng.uniform(4, 12, 1_200))
        at = at[at < 110 * 60]
        values = rng.normal(level, level * 0.12, len(at)).round(3)
        if region == "a":  # climbing for twelve minutes: changes that last, and repeat
            ramp = (at >= 88 * 60) & (at < 100 * 60)
            values = np.where(ramp, values + 0.5 * (at - 88 * 60), values).round(3)
        regions[region] = silent_six_minutes(at, values) if region == "b" else (at, values)
    add_latency(engine, NOW - timedelta(minutes=110), NOW, regions)


@pytest.fixture
def flapping(engine: Engine) -> dict[str, int]:
    _latency(engine)
    return saved_rules(engine, START, RULES, repeat_minutes=4)


def test_flapping_rules_replayed_key_by_key_tell_what_the_live_cycles_did(
    engine: Engine, flapping: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = spied(monkeypatch, backtest_mod, "replay_by_key")
    replays, changes = replayed_as_live(engine, flapping, NOW - timedelta(minutes=30), NOW)
    assert len(calls) == len(RULES)  # each key by key, none stepped coarsely
    assert all(r["step_seconds"] == 15 and not r["coarse"] for r in replays.values())
    fired = {name: r["fired_count"] for name, r in replays.items()}
    assert fired.pop("max up 30 ms, for a minute") >= 1  # the climb
    assert all(n >= 10 for n in fired.values()), fired  # the others flap
    # the duration (pending first) and the repeats were exercised
    climb = replays["max up 30 ms, for a minute"]["events"]
    assert {"pending", "firing"} <= {e["to_status"] for e in climb}, climb
    assert "repeat" in {e["notify"] for e in climb}, climb
    assert changes[flapping["max up 30 ms, for a minute"]]


def test_every_minute_over_the_whole_range_the_exact_changes_agree_too(
    engine: Engine, flapping: dict[str, int]
) -> None:
    """A step asked for is replayed step by step (the busy limit is for the default step),
    each step's two points from `change_source`: the same as cycles every minute."""
    replays, _changes = replayed_as_live(engine, flapping, START, NOW, MIN)
    assert all(r["step_seconds"] == 60 and r["fired_count"] for r in replays.values())


def test_where_raw_points_are_gone_skipping_agrees_with_every_step(
    engine: Engine, flapping: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention took the first 40 minutes' raw points: the replay reads the rollups there
    and raw points after, where a region's first raw point comes after the other's (that
    region has no previous point then: no data). The minutes' extremes used to call its
    change clear there, and the replay skipping steps told another story than every step
    evaluated; both tell the same now."""
    drop_raw_before(engine, START + 40 * MIN)
    with engine.connect() as conn:
        for name, rule_id in flapping.items():
            rule = rule_from_row(get_rule(conn, rule_id=rule_id))
            every = backtest(conn, rule, start=START, end=NOW, tz=TZ, skip_quiet=False)
            assert every["step_seconds"] == 15
            by_key = backtest(conn, rule, start=START, end=NOW, tz=TZ)
            assert ordered(by_key["events"]) == ordered(every["events"]), name
            edge = START + 40 * MIN  # the first raw points: nothing to compare them with yet
            told = {e["to_status"] for e in every["events"] if edge <= e["time"] < edge + MIN}
            assert "no_data" in told, (name, told)


def test_the_changes_are_the_engines_bit_for_bit(engine: Engine, flapping: dict[str, int]) -> None:
    """What `Classes.exact` promises: wherever a key's class is False or True, the engine's
    own check on the series the source builds gives that outcome and that very value."""
    drop_raw_before(engine, START + 40 * MIN)
    checked = 0
    with engine.connect() as conn:
        for rule_id in flapping.values():
            rule, fk, steps, minutes = minute_rule(conn, rule_id, START, NOW)
            found = change_source(conn, rule, fk, minutes, steps, [rule.condition.value])
            assert found is not None
            pick, classes, values = found

            def value(key: str, i: int) -> float:
                return float(values[key][i])  # noqa: B023 (used in this iteration only)

            for i, at in enumerate(steps):
                checked += engine_agrees(rule, at, pick(at), classes, i, value)
    assert checked > 2_000


def test_the_chart_keeps_a_short_breach_of_a_long_range() -> None:
    """90 days every 15 s thinned to the chart's 1,500 points: a 5-minute spike stays."""
    values = np.random.default_rng(3).normal(70.0, 5.0, 518_400)
    values[300_000:300_020] = 500.0
    index = _thinned(np.arange(len(values)), values)
    assert len(index) <= DISPLAY_POINTS and values[index].max() == 500.0
    assert values[index].min() == values.min()
    assert np.all(np.diff(index) > 0)
