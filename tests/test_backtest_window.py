"""Thresholds on a metric's window computed at every step (`backtest_window.threshold_source`)
and replayed key by key, however often they flap (a noisy one used to step coarsely).

Eighty minutes of `latency` from three regions: two with a point every 4 to 12 s, one
(region c) with a point every 10 s, on the 10-second marks or just after (a cycle's read
leaves out a point on the minute it starts at: the first bucket is then reduced without
it). Values
are in the noise around the thresholds, so the rules flap; region b is silent for six
minutes. Rules on the average, the sum, the count (with a duration), the maximum (with a
`recovery_value`), the minimum (with repeats and an expiry) and the p95. The live engine
runs committed cycles every 15 s over the last half hour and every minute over the whole
range; the backtest tells the same status changes and notifications, and the same events
as every step evaluated on the cycle's own reads. Where a key's class is False or True, the
engine's own check on the series the source builds gives that outcome and that very value,
and those series are the cycle's reads, point for point."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine

from monitoring_core.alerts import backtest as backtest_mod
from monitoring_core.alerts.backtest import _limits, _live_series, backtest
from monitoring_core.alerts.backtest_quiet import UNSURE
from monitoring_core.alerts.backtest_window import threshold_source
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
BY_REGION = {"type": "threshold", "metric": "latency", "group_by": ["region"]}
RULES: dict[str, dict[str, Any]] = {
    "avg above 101 in a minute": {**BY_REGION, "aggregation": "avg", "operator": "greater_than",
                                  "value": 101, "window_minutes": 1},
    "sum above 900 in a minute": {**BY_REGION, "aggregation": "sum", "operator": "greater_than",
                                  "value": 900, "window_minutes": 1},
    "count below 8, for a minute": {**BY_REGION, "aggregation": "count", "operator": "less_than",
                                    "value": 8, "window_minutes": 1, "duration_minutes": 1},
    "max above 125, recovering below 115": {**BY_REGION, "aggregation": "max",
                                            "operator": "greater_than", "value": 125,
                                            "window_minutes": 2, "recovery_value": 115},
    "min below 80 in 3 min": {**BY_REGION, "aggregation": "min", "operator": "less_than",
                              "value": 80, "window_minutes": 3, "expire_minutes": 5},
    "p95 above 118 in 2 min": {**BY_REGION, "aggregation": "p95", "operator": "greater_than",
                               "value": 118, "window_minutes": 2},
}  # fmt: skip


def _latency(engine: Engine, marks: float) -> None:
    """Region c's points `marks` seconds after the 10-second marks."""
    rng = np.random.default_rng(29)
    regions = {}
    for region in ("a", "b", "c"):
        if region == "c":  # every 10 s
            at = np.arange(marks, 110 * 60, 10.0)
        else:
            at = np.cumsum(rng.uniform(4, 12, 1_200))
            at = at[at < 110 * 60]
        values = rng.normal(100.0, 12.0, len(at)).round(3)
        regions[region] = silent_six_minutes(at, values) if region == "b" else (at, values)
    add_latency(engine, NOW - timedelta(minutes=110), NOW, regions)


@pytest.fixture
def flapping(engine: Engine) -> dict[str, int]:
    """Region c a quarter second after the marks: a cycle reads every rule's metric as far
    back as the longest window needs (a point on the minute a shorter one starts at is in
    its read then), while a backtest reads as that rule alone does."""
    _latency(engine, 0.25)
    return saved_rules(engine, START, RULES, repeat_minutes=4)


@pytest.fixture
def on_the_marks(engine: Engine) -> dict[str, int]:
    _latency(engine, 0.0)
    return saved_rules(engine, START, RULES, repeat_minutes=4)


ONE_MINUTE = {k: v for k, v in RULES.items() if v["window_minutes"] == 1}


@pytest.fixture
def one_minute_on_the_marks(engine: Engine) -> dict[str, int]:
    """Only rules with one window: a cycle reads as each alone (`alert_cycle._fetch_all`)."""
    _latency(engine, 0.0)
    return saved_rules(engine, START, ONE_MINUTE, repeat_minutes=4)


def test_flapping_thresholds_tell_what_the_live_cycles_did(
    engine: Engine, flapping: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = spied(monkeypatch, backtest_mod, "threshold_source")
    replays, changes = replayed_as_live(engine, flapping, NOW - timedelta(minutes=30), NOW)
    assert calls and all(found is not None for found in calls)  # computed at every step
    assert all(r["step_seconds"] == 15 and not r["coarse"] for r in replays.values())
    fired = {name: r["fired_count"] for name, r in replays.items()}
    assert all(n >= 3 for n in fired.values()), fired  # they flap
    # the duration (pending first), the recovery value and the repeats were exercised
    counted = replays["count below 8, for a minute"]["events"]
    assert {"pending", "firing"} <= {e["to_status"] for e in counted}, counted
    assert "repeat" in {e["notify"] for e in replays["min below 80 in 3 min"]["events"]}
    assert all(changes[flapping[name]] for name in RULES)


def test_on_the_marks_the_first_bucket_leaves_the_minutes_point_out_as_the_cycle(
    engine: Engine, one_minute_on_the_marks: dict[str, int]
) -> None:
    replays, _changes = replayed_as_live(
        engine, one_minute_on_the_marks, NOW - timedelta(minutes=30), NOW
    )
    assert all(r["fired_count"] for r in replays.values())


def test_every_minute_over_the_whole_range_they_agree_too(
    engine: Engine, flapping: dict[str, int]
) -> None:
    replays, _changes = replayed_as_live(engine, flapping, START, NOW, MIN)
    assert all(r["step_seconds"] == 60 and r["fired_count"] for r in replays.values())


def test_where_raw_points_are_gone_skipping_agrees_with_every_step(
    engine: Engine, on_the_marks: dict[str, int]
) -> None:
    """Retention took the first 40 minutes' raw points: the replay reads the rollups there
    (their sums, counts, averages and extremes; a percentile's minutes from their
    histograms), raw points after; key by key it tells what every step evaluated on the
    cycle's reads (`query_metric`) tells."""
    drop_raw_before(engine, START + 40 * MIN)
    with engine.connect() as conn:
        for name, rule_id in on_the_marks.items():
            rule = rule_from_row(get_rule(conn, rule_id=rule_id))
            every = backtest(conn, rule, start=START, end=NOW, tz=TZ, skip_quiet=False)
            by_key = backtest(conn, rule, start=START, end=NOW, tz=TZ)
            assert by_key["step_seconds"] == every["step_seconds"] == 15, name
            assert ordered(by_key["events"]) == ordered(every["events"]), name
            assert by_key["evaluated_steps"] < every["evaluated_steps"], name


def test_the_checks_are_the_engines_and_the_series_the_cycles(
    engine: Engine, on_the_marks: dict[str, int]
) -> None:
    """What `Classes.exact` promises, with sums and averages made exact by `value_at`; and
    the series the source builds for any step are those the cycle reads then."""
    drop_raw_before(engine, START + 40 * MIN)
    checked = unsure = 0
    with engine.connect() as conn:
        for rule_id in on_the_marks.values():
            rule, fk, steps, minutes = minute_rule(conn, rule_id, START, NOW)
            found = threshold_source(conn, rule, fk, minutes, steps, _limits(rule, TZ))
            assert found is not None
            pick, classes = found
            live = _live_series(conn, rule, steps, minutes)
            assert live is not None
            for i, at in enumerate(steps):
                series = pick(at)
                read = live(at)
                assert {k: list(p) for k, (_d, p) in series.items()} == {
                    k: list(p) for k, (_d, p) in read.items()
                }, (rule_id, at)
                unsure += sum(int(codes[i] == UNSURE) for codes in classes.keys.values())
                checked += engine_agrees(rule, at, series, classes.keys, i, classes.value)
    assert checked > 5_000 and unsure < checked / 100, (checked, unsure)


def test_a_rule_with_too_many_keys_for_every_step_falls_back_to_the_minutes_bounds(
    engine: Engine, on_the_marks: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys × steps over `EXACT_CELLS` (each a value and a class in memory): the quiet
    steps come from the minutes' bounds as before, and the events are the same."""
    monkeypatch.setattr(backtest_mod, "EXACT_CELLS", 100)
    calls = spied(monkeypatch, backtest_mod, "threshold_source")
    with engine.connect() as conn:
        for name in ("avg above 101 in a minute", "max above 125, recovering below 115"):
            rule = rule_from_row(get_rule(conn, rule_id=on_the_marks[name]))
            by_bounds = backtest(conn, rule, start=START, end=NOW, tz=TZ)
            every = backtest(conn, rule, start=START, end=NOW, tz=TZ, skip_quiet=False)
            assert ordered(by_bounds["events"]) == ordered(every["events"]), name
            assert by_bounds["step_seconds"] == 15 and not by_bounds["coarse"], name
    assert calls == []
