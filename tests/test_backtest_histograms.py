"""An anomaly rule on a percentile, replayed at every step: each step's hour so far (and the
same minutes of past weeks) merged in numpy from the minutes' histograms read once
(`backtest_kinds._histogram_partials`) must give exactly what the live cycle's read gives
for those minutes (`query_metric` over [hour, end) with an hour's interval, as
`series.SeriesReader._hours` asks it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine

from monitoring_core.alerts import backtest_kinds as kinds
from monitoring_core.alerts.backtest import steps_of
from monitoring_core.alerts.rules import rule_from_row
from monitoring_core.alerts.series import fetch_key
from monitoring_core.metrics_query import query_metric
from monitoring_core.partitions import ensure_partitions
from monitoring_core.rollups import run_rollups
from monitoring_core.timerange import TimeRange
from tests.alerting_support import partitions_around
from tests.rollup_fixtures import add_points, add_series

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture
def latencies(engine: Engine) -> None:
    """Region a (two hosts) and region b, three hours of today and of a week before: a point
    every ~15 s, skewed values (many distinct histogram buckets), region b silent for 20
    minutes today."""
    partitions_around(engine, NOW)
    rng = np.random.default_rng(4)
    with engine.begin() as conn:
        ensure_partitions(conn, start=NOW - WEEK, end=NOW - WEEK, tables=("metric_points",))
        for region, host in (("a", "web1"), ("a", "web2"), ("b", "web1")):
            series = add_series(conn, "latency_ms", {"region": region, "host": host})
            for back in (0, 1):
                start = NOW - back * WEEK - timedelta(hours=3)
                gaps = np.cumsum(rng.uniform(5, 25, 700)).tolist()
                times = [start + timedelta(seconds=gap) for gap in gaps]
                points = [
                    (t, float(rng.lognormal(4 + back * 0.1, 0.6)))
                    for t in times
                    if t < NOW - back * WEEK
                    and not (region == "b" and back == 0 and 70 <= (NOW - t).seconds // 60 < 90)
                ]
                add_points(conn, series, points, ingested_at=NOW)
    run_rollups(engine, NOW, safety_lag=timedelta(0))


@pytest.mark.parametrize("aggregation", ["p50", "p95", "p99"])
def test_partial_hours_from_the_minutes_match_the_live_read(
    engine: Engine, latencies: None, aggregation: str
) -> None:
    cfg = {"type": "anomaly", "metric": "latency_ms", "aggregation": aggregation,
           "group_by": ["region"], "weeks": 1}  # fmt: skip
    rule = rule_from_row({"id": 1, "alert_name": "x", "severity_level": "high",
                          "condition_config": cfg})  # fmt: skip
    fk = fetch_key(rule)
    assert fk is not None
    steps = steps_of(NOW - timedelta(hours=3), NOW, step=timedelta(minutes=4))
    at = np.array([s.timestamp() for s in steps])
    hour = np.floor(at / 3600) * 3600
    end = np.maximum(np.floor((at - 45) / 60) * 60, hour)
    with engine.connect() as conn:
        mine = kinds._histogram_partials(conn, fk, end, hour, 1, steps[0] - WEEK, steps[-1])
        assert set(mine) == {("a",), ("b",)}
        found = 0
        for i in range(len(steps)):
            for back in (0, 1):
                lo = EPOCH + timedelta(seconds=float(hour[i])) - back * WEEK
                hi = EPOCH + timedelta(seconds=float(end[i])) - back * WEEK
                live = query_metric(conn, metric_name="latency_ms", aggregation=aggregation,
                                    interval="1h", tr=TimeRange(lo, hi), group_by=["region"])  # fmt: skip
                expected = {r: v for r, v in zip(live["region"], live["value"], strict=True)}
                for group in (("a",), ("b",)):
                    got = mine[group][back][i]
                    want = expected.get(group[0], np.nan) if hi > lo else np.nan
                    assert np.isnan(got) == np.isnan(want), (group, back, steps[i])
                    if not np.isnan(want):  # region a: two hosts' histograms merged
                        found += 1
                        assert got == want, (group, back, steps[i])
    assert found > 150  # most steps have a partial hour
