"""Read functions of the Overview and Performance pages and `query_metric` on hand-made data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from monitoring_core.metrics_query import live_points, query_metric
from monitoring_core.performance import queries as q
from monitoring_core.rollups import run_rollups
from monitoring_core.timerange import TimeRange
from tests.rollup_fixtures import add_points, add_series, add_timings, add_vitals

H, M = timedelta(hours=1), timedelta(minutes=1)


@pytest.fixture
def start(now: datetime) -> datetime:
    return (now - timedelta(hours=6)).replace(minute=0, second=0)


def _roll(engine: Engine) -> None:
    run_rollups(engine, datetime.now(UTC), safety_lag=timedelta(0))


@pytest.fixture
def timings(engine: Engine, start: datetime) -> datetime:
    """/a: 100 requests at 100 ms (2 of them 500s, 1 a 404); /b: 10 requests at 3 s."""
    rows = [(start + k * M, "GET", "/a", 500 if k < 2 else 404 if k == 2 else 200, 100.0)
            for k in range(100)]  # fmt: skip
    rows += [(start + (k * 10 + 5) * M, "POST", "/b", 200, 3000.0) for k in range(10)]
    with engine.begin() as conn:
        add_timings(conn, rows)
    _roll(engine)
    return start


@pytest.mark.parametrize(
    ("requests", "error_rate", "p95", "status"),
    [
        (0, None, None, "unknown"),
        (10, 0.0, 200.0, "healthy"),
        (10, 0.01, 200.0, "degraded"),
        (10, 0.0, 1000.0, "degraded"),
        (10, 0.05, 200.0, "critical"),
        (10, 0.0, 2500.0, "critical"),
    ],
)
def test_it_rates_overall_health(requests: int, error_rate: float, p95: float, status: str) -> None:
    assert q.health_status(requests, error_rate, p95) == status


def test_it_summarises_the_overview(engine: Engine, timings: datetime) -> None:
    tr = TimeRange(timings, timings + 2 * H)
    with engine.connect() as conn:
        got = q.overview_summary(conn, tr)
    assert got["requests"] == 110 and got["errors"] == 2 and got["client_errors"] == 1
    assert got["requests_per_min"] == pytest.approx(110 / 120)
    assert got["error_rate"] == pytest.approx(2 / 110)
    assert got["p50_ms"] == pytest.approx(100, rel=0.01)
    assert got["p99_ms"] == pytest.approx(3000, rel=0.01)
    assert got["status"] == "critical"


def test_it_says_unknown_without_requests(engine: Engine, start: datetime) -> None:
    with engine.connect() as conn:
        got = q.overview_summary(conn, TimeRange(start, start + H))
    assert (got["requests"], got["status"], got["p95_ms"]) == (0, "unknown", None)


def test_it_counts_exactly_the_minutes_inside_a_range_with_partial_hours(
    engine: Engine, start: datetime
) -> None:
    with engine.begin() as conn:
        add_timings(conn, [(start + k * M, "GET", "/a", 200, 50.0) for k in range(300)])
    _roll(engine)
    tr = TimeRange(start + 13 * M, start + 4 * H + 27 * M)  # long enough for hourly rollups
    with engine.connect() as conn:
        assert q.overview_summary(conn, tr)["requests"] == 4 * 60 + 27 - 13


def test_it_counts_exactly_across_days_hours_and_minutes(engine: Engine, now: datetime) -> None:
    first = (now - timedelta(days=3)).replace(minute=0, second=0)
    with engine.begin() as conn:
        add_timings(conn, [(first + k * 10 * M, "GET", "/a", 200, 50.0) for k in range(6 * 70)])
    _roll(engine)
    tr = TimeRange(first + 7 * H + 25 * M, first + 2 * 24 * H + 9 * H + 35 * M)
    expected = sum(1 for k in range(6 * 70) if tr.start <= first + k * 10 * M < tr.end)
    with engine.connect() as conn:
        assert q.overview_summary(conn, tr)["requests"] == expected
        assert q.endpoint_table(conn, tr)["requests"].tolist() == [expected]
        assert q.latency_trend(conn, tr, "1d")["requests"].sum() == expected


def test_it_draws_the_latency_trend(engine: Engine, timings: datetime) -> None:
    with engine.connect() as conn:
        trend = q.latency_trend(conn, TimeRange(timings, timings + 2 * H), "1h")
    assert list(trend.columns) == [
        "bucket",
        "requests",
        "errors",
        "error_rate",
        "p50",
        "p95",
        "p99",
    ]
    assert trend["requests"].tolist() == [66, 44]  # 60 + 6 in the first hour, 40 + 4 after
    assert trend["bucket"].tolist() == [timings, timings + H]
    assert trend["errors"].tolist() == [2, 0]


def test_it_lists_endpoints_and_the_slowest(engine: Engine, timings: datetime) -> None:
    tr = TimeRange(timings, timings + 2 * H)
    with engine.connect() as conn:
        table = q.endpoint_table(conn, tr)
        slow = q.top_slow_endpoints(conn, tr, limit=1, min_requests=5)
        strict = q.top_slow_endpoints(conn, tr, min_requests=50)
    assert table[["method", "endpoint", "requests"]].values.tolist() == [
        ["GET", "/a", 100], ["POST", "/b", 10]
    ]  # fmt: skip
    assert table["rpm"].tolist() == pytest.approx([100 / 120, 10 / 120])
    assert table["p95"].tolist() == pytest.approx([100, 3000], rel=0.01)
    # docs/API.md: performance analytics give p50/p90/p95/p99 per endpoint.
    assert table["p90"].tolist() == pytest.approx([100, 3000], rel=0.01)
    assert slow["endpoint"].tolist() == ["/b"] and strict["endpoint"].tolist() == ["/a"]


def test_it_draws_latency_per_endpoint(engine: Engine, timings: datetime) -> None:
    with engine.connect() as conn:
        trend = q.endpoint_latency_trend(conn, TimeRange(timings, timings + 2 * H), ["/b"], "30m")
        every = q.endpoint_latency_trend(conn, TimeRange(timings, timings + 2 * H), None, "1h")
    assert set(trend["endpoint"]) == {"/b"} and trend["requests"].tolist() == [3, 3, 3, 1]
    assert sorted(every["endpoint"].unique()) == ["/a", "/b"]


def test_it_flags_endpoints_slower_than_the_same_hour_of_past_weeks(
    engine: Engine, now: datetime
) -> None:
    rows = []
    for week, ms in [(0, 400.0), (1, 100.0), (2, 110.0)]:
        base = now - timedelta(weeks=week) - 50 * M
        rows += [(base + k * M, "GET", "/slow", 200, ms) for k in range(30)]
        rows += [(base + k * M, "GET", "/steady", 200, 80.0) for k in range(30)]
    with engine.begin() as conn:
        add_timings(conn, rows)
    _roll(engine)
    with engine.connect() as conn:
        flags = q.regression_flags(conn, now, weeks=4).set_index("endpoint")
    assert flags.loc["/slow", "regressed"] and not flags.loc["/steady", "regressed"]
    assert flags.loc["/slow", "baseline_p95"] == pytest.approx(110, rel=0.01)
    assert flags.loc["/slow", "ratio"] == pytest.approx(400 / 110, rel=0.02)


def test_it_summarises_web_vitals_with_p75_rating_and_shares(
    engine: Engine, start: datetime
) -> None:
    values = [(1000.0, "good")] * 2 + [(3000.0, "needs-improvement")] * 2 + [(5000.0, "poor")]
    rows = [(start + (30 + 20 * i) * M, "LCP", v, r, "/venues", "mobile")
            for i, (v, r) in enumerate(values)]  # fmt: skip
    rows.append((start + 40 * M, "CLS", 0.05, "good", "/venues", "desktop"))
    with engine.begin() as conn:
        add_vitals(conn, rows)
    _roll(engine)
    tr = TimeRange(start + 20 * M, start + 3 * H)  # a partial hour read from raw at the start
    with engine.connect() as conn:
        table = q.web_vitals_summary(conn, tr).set_index("name")
        by_name = q.web_vitals_summary(conn, tr, by=("name",))
    lcp = table.loc["LCP"]
    assert lcp["count"] == 5 and lcp["p75"] == pytest.approx(3000, rel=0.01)
    assert lcp["rating"] == "needs-improvement"
    assert (lcp["good_share"], lcp["poor_share"]) == pytest.approx((0.4, 0.2))
    assert table.loc["CLS", "rating"] == "good"
    assert list(by_name.columns[:2]) == ["name", "count"]


@pytest.fixture
def cpu(engine: Engine, start: datetime) -> datetime:
    with engine.begin() as conn:
        web = add_series(conn, "cpu", {"host": "web", "env": "prod"})
        db = add_series(conn, "cpu", {"host": "db", "env": "prod"})
        add_points(conn, web, [(start + k * M, 10.0 + k % 2) for k in range(120)])
        add_points(
            conn, db, [(start + k * M + 30 * timedelta(seconds=1), 50.0) for k in range(120)]
        )
    _roll(engine)
    return start


AGGREGATES = {"avg": 30.25, "min": 10.0, "max": 50.0, "count": 120.0, "sum": 3630.0,
              "last": 30.5, "p50": 11.0, "p99": 50.0}  # fmt: skip


def test_it_aggregates_a_metric(engine: Engine, cpu: datetime) -> None:
    tr = TimeRange(cpu, cpu + H)
    got = {}
    with engine.connect() as conn:  # one data set for every aggregation: one setup, not eight
        for aggregation in AGGREGATES:
            frame = query_metric(
                conn, metric_name="cpu", aggregation=aggregation, interval="1h", tr=tr
            )
            assert frame["bucket"].tolist() == [cpu]
            got[aggregation] = frame["value"].iloc[0]
    assert got == pytest.approx(AGGREGATES, rel=0.01)


def test_it_groups_and_filters_a_metric(engine: Engine, cpu: datetime) -> None:
    tr = TimeRange(cpu, cpu + 2 * H)
    with engine.connect() as conn:
        grouped = query_metric(conn, metric_name="cpu", aggregation="max", interval="30m",
                               tr=tr, group_by=["host", "region"])  # fmt: skip
        only_db = query_metric(conn, metric_name="cpu", aggregation="count", interval="1h",
                               tr=tr, filters={"host": "db"})  # fmt: skip
        none = query_metric(conn, metric_name="nope", aggregation="p95", interval="5m", tr=tr)
    assert list(grouped.columns) == ["bucket", "host", "region", "value", "count"]
    assert len(grouped) == 8 and set(grouped["region"]) == {""}
    assert grouped[grouped["host"] == "web"]["value"].tolist() == [11.0] * 4
    assert only_db["value"].tolist() == [60.0, 60.0] and none.empty


def test_it_rejects_unknown_aggregations_and_intervals(engine: Engine, cpu: datetime) -> None:
    tr = TimeRange(cpu, cpu + H)
    with engine.connect() as conn, pytest.raises(ValueError):
        query_metric(conn, metric_name="cpu", aggregation="median", interval="1m", tr=tr)
    with engine.connect() as conn, pytest.raises(ValueError):
        query_metric(conn, metric_name="cpu", aggregation="avg", interval="90s", tr=tr)


def test_it_reads_live_points_from_raw(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn:
        sid = add_series(conn, "ingest_rate")
        add_points(conn, sid, [(now - k * M, float(k)) for k in range(10)])
    with engine.connect() as conn:
        got = live_points(conn, "ingest_rate", "5m", now=now)
    assert got["value"].tolist() == [4.0, 3.0, 2.0, 1.0, 0.0]
