"""Odd PromQL never breaks the evaluator: every query below answers, or is refused with a
QueryError (bad_data/execution), never another exception (which the API would turn into a 500)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine

from monitoring_core.ingest.points import MetricPoint, store_points
from monitoring_core.prometheus import http_api
from monitoring_core.prometheus.promql.model import QueryError

QUERIES = [
    "rate(x[0s])", "x[5m:0s]", "max_over_time(x[100y])", "topk(1e30, x)", "topk(-1, x)",
    "topk(NaN, x)", "quantile(NaN, x)", "x offset 100000y", "histogram_quantile(0.5, x)",
    "x / 0", "0/0", 'label_replace(x, "a", "$1", "b", "(")', 'count_values("bad label", x)',
    '{__name__=~"(a"}', "x @ 1e30", "x @ -1e12", "vector(1)[5m:1m]", "rate(vector(1)[5m:1m])",
    "sum(x) by (a) * on() group_left() x", "x == bool on(a) x", "x and on() vector(1)",
    'absent(x{a=~"b"})', "scalar(x) + x", '"a" + 1', "x{}", '{a="b"}', "round(x, 0)",
    "clamp(x, 2, 1)", "timestamp(rate(x[5m]))", "day_of_week()", "sort(x) + 1", "x[5m]",
    "x[5m] offset 1m", "sum_over_time(x[5m:1m] @ end())", "limitk(1, x)",
    'count_values("v", x / 0)', "year(vector(1e20))", 'label_join(x, "1bad", ",", "a")',
    "ln(-x)", "x ^ 1e308", "-(-x)", "changes(x[1m])", "idelta(x[1ms])", "",
    "holt_winters(x[5m], 0, 0.5)", "holt_winters(x[5m], 0.5, NaN)", "deriv(x[1ms])",
    "predict_linear(x[5m], 1e308)", "deriv(vector(1)[5m:1m])", "histogram_fraction(0, 1, x)",
    "holt_winters(x[100y], 0.5, 0.5)", 'x{a="holt_winters("}', "pi() / 0",
]  # fmt: skip


def test_odd_queries_answer_or_are_refused(engine: Engine, now: datetime) -> None:
    points = [
        MetricPoint("x", float(i), now - timedelta(seconds=15 * i), {"a": str(i % 3)})
        for i in range(40)
    ]
    with engine.begin() as conn:
        store_points(conn, points)
    end = int(now.timestamp() * 1000)
    broken = []
    with engine.connect() as conn:
        for query in QUERIES:
            for run in (
                lambda q=query: http_api.instant_query(conn, q, end),
                lambda q=query: http_api.range_query(conn, q, end - 600_000, end, 60_000),
            ):
                try:
                    run()
                except QueryError:
                    pass
                except Exception as exc:  # noqa: BLE001 - what this test looks for
                    broken.append(f"{query}: {type(exc).__name__}: {exc}"[:200])
    assert broken == []


def test_holt_winters_is_double_exponential_smoothing_and_checks_its_factors(
    engine: Engine, now: datetime
) -> None:
    """2.42's name (the parser knows only 3.x's) answers the same; factors outside (0, 1) are
    Prometheus' own execution error."""
    points = [
        MetricPoint("x", float(i * i % 7), now - timedelta(seconds=15 * i)) for i in range(30)
    ]
    with engine.begin() as conn:
        store_points(conn, points)
    end = int(now.timestamp() * 1000)
    with engine.connect() as conn:
        old = http_api.range_query(
            conn, "holt_winters(x[5m], 0.3, 0.7)", end - 300_000, end, 30_000
        )
        new = http_api.range_query(
            conn, "double_exponential_smoothing(x[5m], 0.3, 0.7)", end - 300_000, end, 30_000
        )
        with pytest.raises(QueryError, match="invalid trend factor") as caught:
            http_api.instant_query(conn, "holt_winters(x[5m], 0.3, 1)", end)
    assert old == new and len(old["result"][0]["values"]) == 11
    assert caught.value.error_type == "execution"


def test_points_at_one_instant_are_read_in_value_order(engine: Engine, now: datetime) -> None:
    """points_reader sorts rows by time alone in SQL (the index order): ties by value in numpy."""
    from monitoring_core.points_reader import read_points

    moment = now - timedelta(minutes=1)
    points = [MetricPoint("tied", value, moment) for value in (5.0, -1.0, 3.0)]
    points.append(MetricPoint("tied", 0.5, moment - timedelta(seconds=1)))
    with engine.begin() as conn:
        store_points(conn, points)
        sid = conn.exec_driver_sql("SELECT id FROM metric_series WHERE name = 'tied'").scalar()
        t, v = read_points(conn, [sid], now - timedelta(hours=1), now)[sid]
    assert v.tolist() == [0.5, -1.0, 3.0, 5.0] and len(set(t[1:].tolist())) == 1
