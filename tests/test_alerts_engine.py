"""The pure alert engine: every rule type and state transition, with frozen `now`."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from monitoring_core.alerts.engine import (
    AlertState,
    Check,
    Point,
    check_condition,
    effective_severity,
    effective_threshold,
    evaluate,
    robust_z,
)
from monitoring_core.alerts.rules import TEMPLATES, Rule, RuleInvalid, parse_condition

TZ = ZoneInfo("Europe/London")
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # a Tuesday in March: no calendar effects
MIN = timedelta(minutes=1)


def rule(severity: str = "high", repeat: float = 60, **cfg: Any) -> Rule:
    cfg.setdefault("type", "threshold")
    if cfg["type"] in ("threshold", "anomaly", "absence", "rate_of_change"):
        cfg.setdefault("metric", "m")
    if cfg["type"] in ("threshold", "pattern", "rate_of_change"):
        cfg.setdefault("value", 10)
    flags = {k: cfg.pop(k) for k in ("weekend_escalation", "wedding_season_adjustment") if k in cfg}
    return Rule(1, "r", severity, parse_condition(cfg), repeat_interval_minutes=repeat, **flags)


def pts(*values: float, end: datetime = NOW, step: timedelta = MIN) -> list[Point]:
    """Points ending at `end`, one per step, oldest first."""
    n = len(values)
    return [Point(end - (n - 1 - i) * step, v) for i, v in enumerate(values)]


# ---------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("cfg", "field"),
    [
        ({"type": "nope"}, "condition_config.type"),
        ({"type": "threshold", "value": 1}, "condition_config.metric"),
        ({"type": "threshold", "metric": "m"}, "condition_config.value"),
        ({"type": "threshold", "metric": "m", "value": "x"}, "condition_config.value"),
        (
            {"type": "threshold", "metric": "m", "value": 1, "operator": ">"},
            "condition_config.operator",
        ),
        (
            {"type": "threshold", "metric": "m", "value": 1, "aggregation": "p42"},
            "condition_config.aggregation",
        ),
        (
            {"type": "threshold", "metric": "m", "value": 1, "group_by": "x"},
            "condition_config.group_by",
        ),
        ({"type": "composite", "rules": []}, "condition_config.rules"),
        ({"type": "composite", "rules": [1], "logic": "xor"}, "condition_config.logic"),
        ({"type": "pattern", "value": 1, "filter": []}, "condition_config.filter"),
        ({"type": "pattern", "value": 1, "filter": {"colour": "red"}}, "condition_config.filter"),
        ({"type": "pattern", "value": 1, "group_by": ["colour"]}, "condition_config.filter"),
        (
            {"type": "threshold", "metric": "m", "value": 1, "window_minutes": 0},
            "condition_config.window_minutes",
        ),
        (
            {"type": "threshold", "metric": "m", "value": 1, "no_data": "panic"},
            "condition_config.no_data",
        ),
        ("not an object", "condition_config"),
    ],
)
def test_it_rejects_invalid_conditions_naming_the_field(cfg: Any, field: str) -> None:
    with pytest.raises(RuleInvalid) as info:
        parse_condition(cfg)
    assert field in [p["field"] for p in info.value.problems]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_it_ships_valid_templates(name: str) -> None:
    assert parse_condition(TEMPLATES[name]["condition_config"]).type


# ---------------------------------------------------------------- conditions
@pytest.mark.parametrize(
    ("cfg", "series", "holds", "value"),
    [
        ({"operator": "greater_than", "window_minutes": 3}, pts(1, 20, 20, 20), True, 20),
        ({"operator": "greater_than", "window_minutes": 3}, pts(20, 1, 2, 3), False, 2),
        ({"aggregation": "max", "window_minutes": 3}, pts(1, 11, 2), True, 11),
        (
            {"aggregation": "min", "operator": "less_than", "window_minutes": 3},
            pts(20, 5, 30),
            True,
            5,
        ),
        ({"aggregation": "sum", "window_minutes": 2}, pts(6, 6), True, 12),
        ({"aggregation": "p95", "window_minutes": 2}, pts(3, 12), True, 12),
        ({"operator": "equals", "value": 3}, pts(3), True, 3),
        ({"operator": "not_equals", "value": 3}, pts(3), False, 3),
        ({"operator": "less_than_or_equal", "value": 3}, pts(3), True, 3),
        ({"operator": "greater_than_or_equal", "value": 3}, pts(2), False, 2),
        ({"window_minutes": 5}, pts(50, end=NOW - 6 * MIN), None, None),
        ({}, [], None, None),
    ],
)
def test_it_checks_thresholds(cfg: dict, series: list[Point], holds: Any, value: Any) -> None:
    check = check_condition(rule(**cfg), series, NOW, tz=TZ)
    assert (check.holds, check.value) == (holds, value)


@pytest.mark.parametrize(
    ("series", "holds", "value"),
    [
        (pts(1, 1, 1), False, 3),
        (pts(4, 4, 4), True, 12),
        ([], False, 0),  # no matching events is a zero count, not missing data
    ],
)
def test_it_counts_patterns(series: list[Point], holds: bool, value: float) -> None:
    check = check_condition(rule(type="pattern", value=10, window_minutes=5), series, NOW, tz=TZ)
    assert (check.holds, check.value) == (holds, value)


@pytest.mark.parametrize(
    ("series", "holds", "value"),
    [
        (pts(1, end=NOW - 2 * MIN), False, 2.0),
        (pts(1, end=NOW - 10 * MIN), True, 10.0),
        ([], True, None),
    ],
)
def test_it_detects_absence(series: list[Point], holds: bool, value: Any) -> None:
    check = check_condition(rule(type="absence", window_minutes=10), series, NOW, tz=TZ)
    assert (check.holds, check.value) == (holds, value)


@pytest.mark.parametrize(
    ("cfg", "series", "holds", "value"),
    [
        ({"value": 50}, [Point(NOW - 10 * MIN, 100), Point(NOW, 160)], True, 60),
        ({"value": 50}, [Point(NOW - 10 * MIN, 100), Point(NOW, 120)], False, 20),
        (
            {"value": -50, "operator": "less_than"},
            [Point(NOW - 10 * MIN, 100), Point(NOW, 40)],
            True,
            -60,
        ),
        (
            {"value": 5, "change_mode": "absolute"},
            [Point(NOW - 10 * MIN, 1), Point(NOW, 7)],
            True,
            6,
        ),
        ({"value": 5}, [Point(NOW - 10 * MIN, 0), Point(NOW, 7)], True, math.inf),
        ({"value": 5}, [Point(NOW, 7)], None, None),
    ],
)
def test_it_measures_rate_of_change(cfg: dict, series: list[Point], holds: Any, value: Any) -> None:
    r = rule(type="rate_of_change", window_minutes=10, **cfg)
    check = check_condition(r, series, NOW, tz=TZ)
    assert (check.holds, check.value) == (holds, value)


def _weekly(current: float, history: list[float]) -> list[Point]:
    past = [Point(NOW - (k + 1) * timedelta(days=7), v) for k, v in enumerate(history)]
    return sorted([*past, Point(NOW, current)], key=lambda p: p.time)


@pytest.mark.parametrize(
    ("cfg", "series", "holds"),
    [
        ({}, _weekly(100, [98, 102, 100, 101]), False),
        ({}, _weekly(300, [98, 102, 100, 101]), True),
        ({}, _weekly(10, [98, 102, 100, 101]), True),
        ({"direction": "above"}, _weekly(10, [98, 102, 100, 101]), False),
        ({"direction": "below"}, _weekly(10, [98, 102, 100, 101]), True),
        ({}, _weekly(300, [100, 100]), None),  # two weeks of history is below min_baseline
        ({}, _weekly(100, [100, 100, 100]), False),  # flat history, same value
        ({}, _weekly(101, [100, 100, 100]), True),  # flat history, any change is infinite z
    ],
)
def test_it_detects_anomalies_against_the_same_hour_of_past_weeks(
    cfg: dict, series: list[Point], holds: Any
) -> None:
    r = rule(type="anomaly", window_minutes=60, **cfg)
    assert check_condition(r, series, NOW, tz=TZ).holds is holds


def test_it_ignores_other_hours_for_the_anomaly_baseline() -> None:
    other_hours = [Point(NOW - timedelta(days=7, hours=h), 1000) for h in (2, 3, 4)]
    series = sorted([*other_hours, *_weekly(100, [100, 99, 101])], key=lambda p: p.time)
    assert check_condition(rule(type="anomaly"), series, NOW, tz=TZ).holds is False


def test_it_computes_a_robust_z_score() -> None:
    assert robust_z(10, [1, 2, 3, 4, 5]) == pytest.approx((10 - 3) / 1.4826)
    assert robust_z(3, [3, 3, 3]) == 0


@pytest.mark.parametrize(
    ("logic", "children", "holds"),
    [
        ("and", {1: True, 2: True}, True),
        ("and", {1: True, 2: False}, False),
        ("and", {1: False, 2: None}, False),
        ("and", {1: True, 2: None}, None),
        ("or", {1: False, 2: True}, True),
        ("or", {1: None, 2: True}, True),
        ("or", {1: False, 2: None}, None),
        ("or", {1: False, 2: False}, False),
        ("and", {1: True}, None),  # a child that was not evaluated counts as unknown
    ],
)
def test_it_combines_composite_children(logic: str, children: dict, holds: Any) -> None:
    r = rule(type="composite", rules=[1, 2], logic=logic)
    assert check_condition(r, [], NOW, tz=TZ, children=children).holds is holds


# ---------------------------------------------------------------- the wedding calendar
SATURDAY_JULY = datetime(2026, 7, 11, 15, 0, tzinfo=UTC)
TUESDAY_JULY = datetime(2026, 7, 14, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("weekend", "now", "severity", "expected"),
    [
        (True, SATURDAY_JULY, "high", "critical"),
        (True, SATURDAY_JULY, "critical", "critical"),
        (True, TUESDAY_JULY, "high", "high"),
        (False, SATURDAY_JULY, "medium", "medium"),
    ],
)
def test_it_raises_severity_on_saturdays(
    weekend: bool, now: datetime, severity: str, expected: str
) -> None:
    r = rule(severity=severity, weekend_escalation=weekend)
    assert effective_severity(r, now, TZ) == expected
    assert evaluate(r, pts(50, end=now), AlertState(), now, tz=TZ).severity == expected


@pytest.mark.parametrize(
    ("adjust", "now", "operator", "expected"),
    [
        (True, TUESDAY_JULY, "greater_than", 8.0),
        (True, TUESDAY_JULY, "less_than", 12.0),
        (True, NOW, "greater_than", 10.0),  # March: off season
        (False, TUESDAY_JULY, "greater_than", 10.0),
    ],
)
def test_it_tightens_thresholds_in_wedding_season(
    adjust: bool, now: datetime, operator: str, expected: float
) -> None:
    r = rule(operator=operator, wedding_season_adjustment=adjust)
    assert effective_threshold(r, now, TZ) == pytest.approx(expected)
    # 9 breaches "greater than 8" but not "greater than 10"; "less than" 12 and 10 alike.
    fires = evaluate(r, pts(9, end=now), AlertState(), now, tz=TZ).state.status == "firing"
    assert fires is (9 > expected if operator == "greater_than" else 9 < expected)


# ---------------------------------------------------------------- transitions
def run(r: Rule, values: list[float | None], start: AlertState | None = None) -> list[Any]:
    """Evaluate once per minute; None means no data that minute. Returns the decisions."""
    state, out = start or AlertState(), []
    for i, v in enumerate(values):
        now = NOW + i * MIN
        series = [] if v is None else [Point(now, v)]
        decision = evaluate(r, series, state, now, tz=TZ)
        state = decision.state
        if decision.notify in ("firing", "repeat", "no_data"):
            state = replace(state, last_notified_at=now)  # as the store does on sending
        out.append(decision)
    return out


@pytest.mark.parametrize(
    ("cfg", "values", "statuses", "notifies"),
    [
        # fires immediately without a duration; stays one alert; resolves once
        ({}, [50, 50, 5], ["firing", "firing", "resolved"], ["firing", None, "resolved"]),
        # pending for duration_minutes before firing
        (
            {"duration_minutes": 2},
            [50, 50, 50, 50],
            ["pending", "pending", "firing", "firing"],
            [None, None, "firing", None],
        ),
        # a pending alert that clears never notifies
        ({"duration_minutes": 5}, [50, 5], ["pending", "resolved"], [None, None]),
        # no data is its own outcome, notified once, and resolves when data comes back fine
        ({}, [None, None, 5], ["no_data", "no_data", "resolved"], ["no_data", None, "resolved"]),
        ({"no_data": "ok"}, [50, None], ["firing", "resolved"], ["firing", "resolved"]),
        ({"no_data": "alerting"}, [None, None], ["firing", "firing"], ["firing", None]),
        ({"no_data": "keep_state"}, [50, None, None], ["firing"] * 3, ["firing", None, None]),
        # hysteresis: 8 is below the threshold but not below the recovery value 5
        (
            {"recovery_value": 5},
            [50, 8, 4],
            ["firing", "firing", "resolved"],
            ["firing", None, "resolved"],
        ),
        # a resolved alert fires again as a new episode of the same instance
        ({}, [50, 5, 50], ["firing", "resolved", "firing"], ["firing", "resolved", "firing"]),
    ],
)
def test_it_moves_through_states(cfg: dict, values: list, statuses: list, notifies: list) -> None:
    decisions = run(rule(window_minutes=1, **cfg), values)
    assert [d.state.status for d in decisions] == statuses
    assert [d.notify for d in decisions] == notifies


def test_it_counts_five_breaches_on_one_instance() -> None:
    decisions = run(rule(window_minutes=1), [50, 60, 70, 80, 90])
    last = decisions[-1].state
    assert (last.status, last.trigger_count, last.trigger_value) == ("firing", 5, 90)
    assert last.first_triggered_at == NOW and last.last_triggered_at == NOW + 4 * MIN
    assert [d.notify for d in decisions] == ["firing", None, None, None, None]


def test_it_repeats_at_the_repeat_interval_while_firing() -> None:
    decisions = run(rule(repeat=3, window_minutes=1), [50] * 7)
    assert [d.notify for d in decisions] == ["firing", None, None, "repeat", None, None, "repeat"]


def test_it_notifies_when_a_silence_ends_while_still_firing() -> None:
    """A silenced firing notification leaves last_notified_at empty; the next cycle sends it."""
    r = rule(window_minutes=1)
    silenced = evaluate(r, pts(50), AlertState(), NOW, tz=TZ)  # caller drops this notification
    later = evaluate(r, pts(50, end=NOW + MIN), silenced.state, NOW + MIN, tz=TZ)
    assert (silenced.notify, later.notify) == ("firing", "firing")


def test_it_keeps_acknowledged_alerts_quiet_until_they_resolve() -> None:
    acked = AlertState(
        status="acknowledged",
        first_triggered_at=NOW - MIN,
        last_notified_at=NOW - MIN,
        trigger_count=1,
        acknowledged_at=NOW - MIN,
    )
    decisions = run(rule(repeat=1, window_minutes=1), [50, 50, 5], start=acked)
    assert [d.state.status for d in decisions] == ["acknowledged", "acknowledged", "resolved"]
    assert [d.notify for d in decisions] == [None, None, "resolved"]
    assert decisions[1].state.trigger_count == 3


@pytest.mark.parametrize(
    ("until", "status", "notify"),
    [(NOW + 10 * MIN, "suppressed", None), (NOW - MIN, "firing", "repeat")],
)
def test_it_suppresses_until_the_given_time(until: datetime, status: str, notify: Any) -> None:
    state = AlertState(
        status="suppressed",
        suppressed_until=until,
        first_triggered_at=NOW - 90 * MIN,
        last_notified_at=NOW - 90 * MIN,
        trigger_count=3,
    )
    decision = evaluate(rule(), pts(50), state, NOW, tz=TZ)
    assert (decision.state.status, decision.notify) == (status, notify)


@pytest.mark.parametrize(
    ("minutes_ago", "status", "notify"),
    [(30, "firing", None), (61, "expired", "resolved")],
)
def test_it_expires_grouped_keys_that_stop_reporting(
    minutes_ago: int, status: str, notify: Any
) -> None:
    state = AlertState(
        status="firing",
        last_triggered_at=NOW - minutes_ago * MIN,
        last_notified_at=NOW - 2 * 60 * MIN,
    )
    decision = evaluate(rule(group_by=["endpoint"]), None, state, NOW, tz=TZ)
    assert (decision.state.status, decision.notify) == (status, notify)


def test_it_leaves_a_quiet_rule_without_an_instance() -> None:
    decision = evaluate(rule(), pts(1), AlertState(), NOW, tz=TZ)
    assert decision.state.status is None and decision.notify is None and not decision.changed


def test_it_describes_the_check() -> None:
    check = check_condition(rule(window_minutes=1), pts(50), NOW, tz=TZ)
    assert check == Check(True, 50, 10, "avg 50 vs 10")
