"""Testing rules against stored history, composite rules included (real Postgres)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from monitoring_core.alerts.backtest import backtest
from monitoring_core.alerts.rules import rule_from_row
from monitoring_core.alerts.store import get_rule
from monitoring_core.rollups import run_rollups
from tests.alerting_support import partitions_around, point, threshold_rule

TZ = ZoneInfo("Europe/London")
NOW = datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def _history(engine: Engine) -> tuple[int, int]:
    """Metric a breaches 40–20 minutes ago, metric b 30–10 minutes ago (one point a minute)."""
    partitions_around(engine, NOW)
    for minutes_ago in range(80, 0, -1):
        at = NOW - minutes_ago * MIN
        point(engine, at, 500 if 20 < minutes_ago <= 40 else 10, metric="a")
        point(engine, at, 500 if 10 < minutes_ago <= 30 else 10, metric="b")
    with engine.begin() as conn:
        a = threshold_rule(conn, NOW, alert_name="A", cfg={"metric": "a"})
        b = threshold_rule(conn, NOW, alert_name="B", cfg={"metric": "b"})
    run_rollups(engine, NOW, safety_lag=timedelta(0))  # an hour back is read from the rollups
    return a, b


def _composite(engine: Engine, logic: str, children: list[int]) -> dict:
    with engine.begin() as conn:
        rule_id = threshold_rule(
            conn, NOW, alert_name=f"{logic} of children",
            cfg={"type": "composite", "logic": logic, "rules": children},
        )  # fmt: skip
        rule = rule_from_row(get_rule(conn, rule_id=rule_id))
        return backtest(conn, rule, start=NOW - 60 * MIN, end=NOW, tz=TZ)


def _transitions(result: dict) -> list[tuple[int, str]]:
    return [(round((NOW - e["time"]) / MIN), e["to_status"]) for e in result["events"]]


@pytest.mark.parametrize(
    ("logic", "expected"),
    [
        # the children replayed as a cycle reads them (the raw points of their 1-minute
        # window): a breach from 40 to 20 minutes ago holds from the step at 40 minutes
        # ago, when its first point is in the window, to the one at 21
        ("and", [(30, "firing"), (20, "resolved")]),
        ("or", [(40, "firing"), (10, "resolved")]),
    ],
)
def test_it_replays_a_composite_rule_from_its_children(
    engine: Engine, logic: str, expected: list[tuple[int, str]]
) -> None:
    a, b = _history(engine)
    result = _composite(engine, logic, [a, b])
    assert _transitions(result) == expected
    assert result["fired_count"] == 1
    (series,) = result["series"]
    counts = {round((NOW - t) / MIN): v for t, v in series["points"]}
    assert (counts[35], counts[25], counts[15], counts[5]) == (1, 2, 1, 0)


def test_it_replays_a_composite_of_a_composite(engine: Engine) -> None:
    a, b = _history(engine)
    with engine.begin() as conn:
        inner = threshold_rule(
            conn,
            NOW,
            alert_name="inner",
            cfg={"type": "composite", "logic": "and", "rules": [a, b]},
        )
    result = _composite(engine, "or", [inner])
    assert _transitions(result) == [(30, "firing"), (20, "resolved")]


def test_it_refuses_a_composite_rule_with_a_missing_child(engine: Engine) -> None:
    a, _b = _history(engine)
    with pytest.raises(ValueError, match="no alert rule with id 9999"):
        _composite(engine, "and", [a, 9999])


def test_a_composite_steps_as_coarsely_as_a_child_that_cannot_step_every_minute(
    engine: Engine,
) -> None:
    a, b = _history(engine)
    with engine.begin() as conn:
        # an anomaly rule on the regression flags is read on a coarse grid: at most 2,000
        # steps (its threshold and rate of change are replayed at every step,
        # `backtest_regression`)
        change = threshold_rule(
            conn,
            NOW,
            alert_name="regressing unusually",
            cfg={"type": "anomaly", "metric": "api.p95_regression", "aggregation": "max"},
        )
        ids = {}
        for name, children in (("thresholds", [a, b]), ("with a coarse child", [a, change])):
            ids[name] = threshold_rule(conn, NOW, alert_name=name, cfg={
                "type": "composite", "logic": "or", "rules": children})  # fmt: skip
        steps = {
            name: backtest(conn, rule_from_row(get_rule(conn, rule_id=rule_id)),
                           start=NOW - timedelta(days=3), end=NOW, tz=TZ)["step_seconds"]
            for name, rule_id in ids.items()
        }  # fmt: skip
    # 3 days: every minute for children replayed at every step, else at most 2,000 steps
    assert steps == {"thresholds": 60, "with a coarse child": 180}
