"""The cycle's batched paths: one raw read bucketed in numpy, decisions stored in bulk, and
anomaly series read hour by hour. Each is checked against a plain reference or a real
Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import Engine, select, update

from monitoring_core.alerts import series as series_mod
from monitoring_core.alerts.engine import AlertState, Check, Decision, Point, check_condition
from monitoring_core.alerts.raw import RawMetric, bucket, read_raw
from monitoring_core.alerts.rules import rule_from_row
from monitoring_core.alerts.writes import DecisionWrite, save_decisions
from monitoring_core.flows.alert_cycle import run_evaluation
from monitoring_core.rollups import run_rollups
from monitoring_core.schema import alert_events, alert_instances
from tests.alerting_support import partitions_around, point, threshold_rule

TZ = ZoneInfo("Europe/London")
NOW = datetime(2026, 3, 10, 12, 40, 0, tzinfo=UTC)  # a Tuesday, 40 minutes into the hour
STEP = timedelta(seconds=10)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _reference(aggregation: str, values: list[float]) -> float:
    if aggregation == "count":
        return float(len(values))
    if aggregation.startswith("p"):
        return float(np.percentile(values, int(aggregation[1:]), method="linear"))
    reduce: Any = {"avg": np.mean, "sum": np.sum, "min": np.min, "max": np.max}[aggregation]
    return float(reduce(values))


@pytest.mark.parametrize("aggregation", ["avg", "sum", "count", "min", "max", "p50", "p95", "p99"])
def test_it_buckets_raw_points_like_a_plain_group_by(aggregation: str) -> None:
    rng = np.random.default_rng(3)
    since = NOW - timedelta(minutes=3)
    dims = [{"k": f"k{i % 3}", "host": f"h{i}"} for i in range(7)]  # several series per group
    t = (since - EPOCH).total_seconds() + rng.uniform(-30, 180, 2_000)  # some before `since`
    v = rng.gamma(2.0, 50.0, 2_000)
    s = rng.integers(0, len(dims), 2_000)
    raw = RawMetric(dims, t, v, s)

    got = bucket(raw, dims=("k",), aggregation=aggregation, since=since, step=STEP)

    origin = (since - EPOCH).total_seconds()
    expected: dict[tuple[str, ...], dict[int, list[float]]] = {}
    for ti, vi, si in zip(t, v, s, strict=True):
        if ti >= origin:
            per_bucket = expected.setdefault((dims[si]["k"],), {})
            per_bucket.setdefault(int((ti - origin) // 10), []).append(float(vi))
    assert set(got) == set(expected)
    for group, buckets in expected.items():
        numbers, values = got[group]
        assert numbers == sorted(buckets)
        want = [_reference(aggregation, buckets[b]) for b in numbers]
        assert values == pytest.approx(want, rel=1e-12)


def test_it_groups_missing_dimensions_as_empty_and_handles_no_points() -> None:
    since = NOW - timedelta(minutes=1)
    at = (since - EPOCH).total_seconds() + 5
    raw = RawMetric([{"k": "a"}, {}], np.array([at, at]), np.array([1.0, 3.0]), np.array([0, 1]))
    assert bucket(raw, dims=("k",), aggregation="max", since=since, step=STEP) == {
        ("a",): ([0], [1.0]),
        ("",): ([0], [3.0]),
    }
    assert bucket(raw, dims=(), aggregation="avg", since=since, step=STEP) == {(): ([0], [2.0])}
    assert bucket(RawMetric.empty(), dims=(), aggregation="avg", since=since, step=STEP) == {}


def test_it_reads_raw_points_of_many_metrics_at_once_and_refuses_oversize_ones(
    engine: Engine,
) -> None:
    partitions_around(engine, NOW)
    for i in range(3):
        point(engine, NOW - timedelta(seconds=30 * i), 10.0 + i, metric="small", dims={"k": "a"})
    point(engine, NOW - timedelta(minutes=9), 99.0, metric="small", dims={"k": "a"})  # too old
    point(engine, NOW + STEP, 99.0, metric="small", dims={"k": "a"})  # after now
    for i in range(6):
        point(engine, NOW - timedelta(seconds=i), float(i), metric="big", dims={"k": str(i)})
    since = NOW - timedelta(minutes=5)
    with engine.connect() as conn:
        got = read_raw(conn, {"small": since, "big": since, "none": since}, now=NOW, limit=5)
    small = got["small"]
    assert small is not None and got["big"] is None
    assert sorted(small.v.tolist()) == [10.0, 11.0, 12.0]
    assert small.dims == [{"k": "a"}] and set(small.s.tolist()) == {0}
    assert (got["none"] is not None) and len(got["none"].t) == 0


@pytest.mark.parametrize(("limit", "value"), [(100_000, 900), (3, 700)])
def test_it_falls_back_to_the_rollups_when_a_metric_has_too_many_raw_points(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, limit: int, value: float
) -> None:
    partitions_around(engine, NOW)
    with engine.begin() as conn:
        threshold_rule(conn, NOW, cfg={"window_minutes": 5, "aggregation": "max"})
    point(engine, NOW - timedelta(minutes=4), 700)
    for i in range(5):
        point(engine, NOW - timedelta(seconds=10 * i), 50)
    run_rollups(engine, NOW - timedelta(minutes=2), safety_lag=timedelta(0))
    point(engine, NOW - timedelta(minutes=3), 900)  # raw only: not in any rollup
    monkeypatch.setattr(series_mod, "RAW_LIMIT", limit)  # 3: raw window and tail refused
    run_evaluation(engine, NOW, tz=TZ, public_url="http://ui.test")
    with engine.connect() as conn:
        row = conn.execute(select(alert_instances)).one()
    assert (row.status, row.trigger_value) == ("firing", value)


def _decision(status: str | None, before: str | None, value: float = 1.0) -> Decision:
    state = AlertState(status=status, trigger_count=1, trigger_value=value, last_triggered_at=NOW)
    return Decision(state, Check(True, value, 0.0, "m"), "high", from_status=before)


def test_it_stores_many_decisions_in_bulk(engine: Engine) -> None:
    with engine.begin() as conn:
        rule_id = threshold_rule(conn, NOW)
    first = [
        DecisionWrite(rule_id, f"k={i}", {"k": str(i)}, _decision("pending", None))
        for i in range(3)
    ]
    with engine.begin() as conn:
        ids = save_decisions(
            conn, [*first, DecisionWrite(rule_id, "quiet", {}, _decision(None, None))], now=NOW
        )
        assert ids[3] is None and len(set(ids[:3])) == 3
        conn.execute(update(alert_instances).values(escalation_step=2, acknowledged_by="ann"))
    later = NOW + timedelta(minutes=1)
    second = [
        DecisionWrite(rule_id, "k=0", {"k": "0"}, _decision("firing", "pending", 5.0), ids[0]),
        DecisionWrite(rule_id, "k=1", {"k": "1"}, _decision("pending", "pending", 6.0), ids[1]),
        # its id unknown to the caller (another evaluator inserted it): updated, not doubled
        DecisionWrite(rule_id, "k=2", {"k": "2"}, _decision("pending", "pending", 7.0)),
    ]
    with engine.begin() as conn:
        assert save_decisions(conn, second, now=later) == ids[:3]
    with engine.connect() as conn:
        rows = {r.alert_key: r for r in conn.execute(select(alert_instances))}
        events = conn.execute(select(alert_events.c.instance_id, alert_events.c.to_status)).all()
    assert set(rows) == {"k=0", "k=1", "k=2"}
    fired, pending = rows["k=0"], rows["k=1"]
    assert (fired.status, fired.trigger_value, fired.escalation_step, fired.acknowledged_by) == (
        "firing", 5.0, 0, None,  # a new episode starts its escalation over
    )  # fmt: skip
    assert (pending.trigger_value, pending.escalation_step, pending.acknowledged_by) == (
        6.0,
        2,
        "ann",
    )
    assert rows["k=2"].trigger_value == 7.0 and rows["k=2"].last_evaluated_at == later
    assert pending.trigger_dimensions == {"k": "1"}
    assert sorted(events) == sorted([*((i, "pending") for i in ids[:3]), (ids[0], "firing")])


def _anomaly_rule(**cfg: Any) -> Any:
    row = {"id": 1, "alert_name": "a", "severity_level": "low",
           "condition_config": {"type": "anomaly", "metric": "m", **cfg}}  # fmt: skip
    return rule_from_row(row)


def test_it_checks_the_current_hour_for_anomalies_with_the_default_window() -> None:
    hour = NOW.replace(minute=0)
    history = [Point(hour - timedelta(days=7 * k), 100.0 + k) for k in (4, 3, 2, 1)]
    for current, holds in ((100.0, False), (500.0, True)):
        series = [*history, Point(hour, current)]  # stamped 40 minutes before now
        assert check_condition(_anomaly_rule(), series, NOW, tz=TZ).holds is holds


def test_it_evaluates_anomaly_rules_from_the_same_hour_of_past_weeks(engine: Engine) -> None:
    partitions_around(engine, NOW)
    for k in (1, 2, 3):
        partitions_around(engine, NOW - timedelta(days=7 * k))
        point(engine, NOW - timedelta(days=7 * k, minutes=10), 100.0 + k, metric="m")
        point(engine, NOW - timedelta(days=7 * k, hours=2), 5_000.0, metric="m")  # other hour
    point(engine, NOW - timedelta(minutes=5), 900.0, metric="m")
    run_rollups(engine, NOW, safety_lag=timedelta(0))
    with engine.begin() as conn:
        threshold_rule(conn, NOW, cfg={"type": "anomaly", "metric": "m", "weeks": 3})
    run_evaluation(engine, NOW, tz=TZ, public_url="http://ui.test")
    with engine.connect() as conn:
        row = conn.execute(select(alert_instances)).one()
    assert (row.status, row.trigger_value) == ("firing", 900.0)


def _count_anomaly(engine: Engine, rows: list[tuple[datetime, float]], at: datetime) -> None:
    """`orders` points over this week and three past ones, rolled up at `at`, and one cycle
    then of an anomaly rule on their count against 3 weeks."""
    from tests.rollup_fixtures import add_points, add_series

    for k in (0, 1, 2, 3):
        partitions_around(engine, NOW - timedelta(days=7 * k))
    with engine.begin() as conn:
        add_points(
            conn, add_series(conn, "orders", {}), rows, ingested_at=NOW - timedelta(minutes=1)
        )
    run_rollups(engine, at, safety_lag=timedelta(0))
    with engine.begin() as conn:
        threshold_rule(conn, NOW, cfg={"type": "anomaly", "metric": "orders", "weeks": 3,
                                       "aggregation": "count"})  # fmt: skip
    run_evaluation(engine, at, tz=TZ, public_url="http://ui.test")


@pytest.mark.parametrize(("today", "status"), [(40, None), (12, "firing")])
def test_an_anomaly_rule_compares_the_hour_so_far_with_the_same_minutes_of_past_weeks(
    engine: Engine, today: int, status: str | None
) -> None:
    """An order a minute, every week: 40 minutes into the hour, 40 orders so far is normal
    (the same 40 minutes of past weeks had 40; against their whole hours' 60 it looked like a
    drop at every hour), and 12 is a drop."""
    hour = NOW.replace(minute=0)
    rows = [(hour - timedelta(days=7 * k, minutes=-m, seconds=-20), 1.0)
            for k in (1, 2, 3) for m in range(60)]  # fmt: skip
    rows += [(hour + timedelta(minutes=40 * i / today, seconds=10), 1.0) for i in range(today)]
    _count_anomaly(engine, rows, NOW)
    with engine.connect() as conn:
        found = conn.execute(select(alert_instances.c.status, alert_instances.c.trigger_value))
        rows_found = found.all()
    assert [tuple(r) for r in rows_found] == ([(status, float(today))] if status else [])


def test_an_anomaly_rule_counts_whole_minutes_only(engine: Engine) -> None:
    """20 s into minute 40, with that minute's first point stored: the hour so far is its 40
    whole minutes, against the same 40 of past weeks (counting the current minute's first
    seconds against past weeks' whole minute made a steady count look low)."""
    hour, at = NOW.replace(minute=0), NOW + timedelta(seconds=20)
    rows = [(hour - timedelta(days=7 * k) + timedelta(minutes=m, seconds=s), 1.0)
            for k in (0, 1, 2, 3) for m in range(60) for s in (5, 35)
            if k or timedelta(minutes=m, seconds=s) < at - hour]  # fmt: skip
    _count_anomaly(engine, rows, at)
    with engine.connect() as conn:
        assert conn.execute(select(alert_instances.c.status)).all() == []


def test_an_anomaly_rule_checks_the_hour_just_ended_until_the_new_hour_has_a_minute(
    engine: Engine,
) -> None:
    """In an hour's first minutes the hour has no rolled-up minute yet: the hour just ended
    (against the same hour of past weeks) is checked, so a firing alert stays firing instead of
    turning to "no data" at every hour's start; past HOUR_GRACE with nothing new, no data."""
    from monitoring_core.alerts.engine import HOUR_GRACE

    hour = NOW.replace(minute=0) + timedelta(hours=1)  # 13:00
    partitions_around(engine, NOW)
    for k in (1, 2, 3):
        partitions_around(engine, NOW - timedelta(days=7 * k))
        point(engine, NOW - timedelta(days=7 * k), 100.0 + k, metric="m")
    point(engine, NOW, 900.0, metric="m")  # 12:40, nothing after it
    run_rollups(engine, hour + timedelta(seconds=5), safety_lag=timedelta(0))
    with engine.begin() as conn:
        threshold_rule(conn, NOW, cfg={"type": "anomaly", "metric": "m", "weeks": 3})
    statuses = []
    for at in (hour - timedelta(seconds=30), hour, hour + timedelta(seconds=20),
               hour + HOUR_GRACE - timedelta(seconds=1), hour + HOUR_GRACE):  # fmt: skip
        run_evaluation(engine, at, tz=TZ, public_url="http://ui.test")
        with engine.connect() as conn:
            row = conn.execute(select(alert_instances)).one()
        statuses.append((row.status, row.trigger_value))
    assert statuses == [("firing", 900.0)] * 4 + [("no_data", None)]


def test_an_anomaly_rule_dates_no_data_by_its_metric_not_by_past_weeks(engine: Engine) -> None:
    """The series an anomaly rule checks holds the same hour of past weeks: when the current
    hour has no data, the newest of those (a week ago) is not when the data stopped; the
    newest stored point of the metric is (12:40 today: "No data since 7 days" before)."""
    hour = NOW.replace(minute=0) + timedelta(hours=1)  # 13:00
    partitions_around(engine, NOW)
    for k in (1, 2, 3):
        partitions_around(engine, NOW - timedelta(days=7 * k))
        point(engine, hour + timedelta(minutes=5) - timedelta(days=7 * k), 100.0 + k, metric="m")
    point(engine, NOW, 100.0, metric="m")  # 12:40, nothing after it
    run_rollups(engine, hour + timedelta(minutes=20), safety_lag=timedelta(0))
    with engine.begin() as conn:
        threshold_rule(conn, NOW, cfg={"type": "anomaly", "metric": "m", "weeks": 3})
    run_evaluation(engine, hour + timedelta(minutes=15), tz=TZ, public_url="http://ui.test")
    with engine.connect() as conn:
        row = conn.execute(select(alert_instances)).one()
    assert (row.status, row.no_data_since) == ("no_data", NOW)


def test_it_queues_the_notifications_of_many_alerts_firing_at_once(engine: Engine) -> None:
    from monitoring_core.schema import notification_outbox
    from tests.alerting_support import channel

    partitions_around(engine, NOW)
    with engine.begin() as conn:
        ch = channel(conn, "json://127.0.0.1:9/x")
        threshold_rule(conn, NOW, notification_channels=[ch], cfg={"group_by": ["k"]})
    for i in range(30):
        point(engine, NOW - STEP, 500.0 + i, dims={"k": str(i)})
    report = run_evaluation(engine, NOW, tz=TZ, public_url="http://ui.test")
    report_again = run_evaluation(engine, NOW + STEP, tz=TZ, public_url="http://ui.test")
    with engine.connect() as conn:
        sent = conn.execute(select(notification_outbox.c.alert_instance_id)).scalars().all()
        stamped = conn.execute(select(alert_instances.c.last_notified_at)).scalars().all()
    assert (report.notifications, report.changes, report.stored) == (30, 30, 30)
    assert report_again.notifications == 0  # firing already notified: no repeat yet
    assert len(set(sent)) == 30 and stamped == [NOW] * 30


def test_it_drops_notifications_for_a_channel_that_no_longer_exists(engine: Engine) -> None:
    from sqlalchemy import delete

    from monitoring_core.schema import notification_channels
    from tests.alerting_support import channel

    partitions_around(engine, NOW)
    with engine.begin() as conn:
        gone = channel(conn, "json://127.0.0.1:9/gone")
        threshold_rule(conn, NOW, notification_channels=[gone])
        conn.execute(delete(notification_channels))  # behind the API's back
    point(engine, NOW - STEP, 500.0)
    report = run_evaluation(engine, NOW, tz=TZ, public_url="http://ui.test")
    assert report.notifications == 0 and report.errors == [f"unknown channels [{gone}]"]
    with engine.connect() as conn:
        assert conn.execute(select(alert_instances.c.status)).scalar_one() == "firing"
