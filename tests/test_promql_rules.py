"""Alert rules written in PromQL (#15 item 5): one alert per returned series, `for:` as
duration_minutes, resolved when the series is no longer returned; backtest over history."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select

from monitoring_core.alerts.backtest import backtest
from monitoring_core.alerts.rules import RuleInvalid, rule_from_row
from monitoring_core.alerts.store import create_rule, get_rule
from monitoring_core.flows.alert_cycle import evaluate_all
from monitoring_core.ingest.points import MetricPoint, store_points
from monitoring_core.schema import alert_instances

TZ = ZoneInfo("Europe/London")
URL = "http://ui.example"


def _rule(engine: Engine, now: datetime, expr: str, **cfg: object) -> int:
    body = {
        "alert_name": "Queue backlog",
        "condition_config": {"type": "promql", "expr": expr, **cfg},
        "severity_level": "high",
    }
    with engine.begin() as conn:
        return int(create_rule(conn, body=body, created_by="test", now=now)["id"])


def _depths(engine: Engine, at: datetime, **depths: float) -> None:
    points = [MetricPoint("queue_depth", v, at, {"queue": q}) for q, v in depths.items()]
    with engine.begin() as conn:
        store_points(conn, points)


def _statuses(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(select(alert_instances.c.alert_key, alert_instances.c.status)).all()
    return dict(rows)


def test_each_returned_series_is_an_alert_until_it_is_no_longer_returned(
    engine: Engine, now: datetime
) -> None:
    _rule(engine, now, "queue_depth > 10")
    _depths(engine, now - timedelta(minutes=1), mails=20, sms=5)
    with engine.begin() as conn:
        report = evaluate_all(conn, now=now, tz=TZ, public_url=URL)
    assert report.errors == [] and report.invalid == []
    assert _statuses(engine) == {"queue=mails": "firing"}
    _depths(engine, now + timedelta(minutes=1), mails=3, sms=50)
    with engine.begin() as conn:
        evaluate_all(conn, now=now + timedelta(minutes=2), tz=TZ, public_url=URL)
    assert _statuses(engine) == {"queue=mails": "resolved", "queue=sms": "firing"}


def test_for_waits_like_prometheus_for(engine: Engine, now: datetime) -> None:
    _rule(engine, now, "queue_depth > 10", duration_minutes=2)
    for minute in range(4):
        _depths(engine, now + timedelta(minutes=minute), mails=20)
        with engine.begin() as conn:
            evaluate_all(conn, now=now + timedelta(minutes=minute), tz=TZ, public_url=URL)
        expected = "pending" if minute < 2 else "firing"
        assert _statuses(engine) == {"queue=mails": expected}, minute


def test_a_failing_expression_is_a_cycle_error_not_a_crash(engine: Engine, now: datetime) -> None:
    _rule(engine, now, "queue_depth + on() queue_depth")  # many-to-many at evaluation
    _depths(engine, now - timedelta(minutes=1), mails=20, sms=5)
    with engine.begin() as conn:
        report = evaluate_all(conn, now=now, tz=TZ, public_url=URL)
    assert len(report.errors) == 1 and "ExecutionError" in report.errors[0]


@pytest.mark.parametrize(("expr", "says"), [("", "required"), ("sum(", "parse error")])
def test_a_broken_expression_is_refused_when_saved(
    engine: Engine, now: datetime, expr: str, says: str
) -> None:
    with pytest.raises(RuleInvalid, match=says):
        _rule(engine, now, expr)


def test_backtest_replays_the_expression_over_history(engine: Engine, now: datetime) -> None:
    start = now - timedelta(minutes=30)
    for minute in range(31):
        depth = 50.0 if 10 <= minute < 20 else 1.0
        _depths(engine, start + timedelta(minutes=minute, seconds=-5), mails=depth)
    rule_id = _rule(engine, now, "queue_depth > 10")
    with engine.connect() as conn:
        rule = rule_from_row(get_rule(conn, rule_id=rule_id))
        result = backtest(conn, rule, start=start, end=now, tz=TZ)
    moves = [
        (e["time"] - start, e["to_status"])
        for e in result["events"]
        if e["from_status"] != e["to_status"]
    ]
    assert moves == [(timedelta(minutes=10), "firing"), (timedelta(minutes=20), "resolved")]
    assert result["fired_count"] == 1
    (series,) = result["series"]
    # returned at the steps of the breach, every 15 s (the live cadence: the default step)
    assert series["alert_key"] == "queue=mails" and len(series["points"]) == 40
