"""The Metrics page: any stored metric, filtered by a dimension, grouped, aggregated, charted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from monitoring_core import metrics_query
from monitoring_core.enums import Role
from monitoring_core.ingest.points import MetricPoint, store_points
from monitoring_core.rollups import run_rollups

AppFactory = Callable[[Role | None], AppTest]


def _push(engine: Engine, now: datetime) -> None:
    """A Prometheus-style gauge with two jobs and two instances over the last hour."""
    points = [
        MetricPoint(
            "queue_depth",
            float(10 * job + minute % 3),
            now - timedelta(minutes=minute),
            {"job": f"worker{job}", "instance": f"host{minute % 2}"},
            "prometheus",
        )
        for job in (1, 2)
        for minute in range(1, 60)
    ]
    points.append(MetricPoint("other_metric", 1.0, now - timedelta(minutes=5)))
    with engine.begin() as conn:
        store_points(conn, points)
    run_rollups(engine, datetime.now(UTC), safety_lag=timedelta(0))


def _page(logged_in_app: AppFactory) -> AppTest:
    at = logged_in_app(Role.VIEWER).run()
    return at.switch_page("pages/metrics.py").run()


def test_the_catalog_reads_list_metrics_and_dimensions(engine: Engine, now: datetime) -> None:
    _push(engine, now)
    with engine.connect() as conn:
        names = metrics_query.metric_names(conn)
        assert list(names["name"]) == ["other_metric", "queue_depth"]
        assert list(names["series"]) == [1, 4]
        dims = metrics_query.metric_dimensions(conn, "queue_depth")
    assert dims == {"instance": ["host0", "host1"], "job": ["worker1", "worker2"]}


def test_it_charts_a_metric_grouped_and_filtered(
    engine: Engine, logged_in_app: AppFactory, now: datetime
) -> None:
    _push(engine, now)
    at = _page(logged_in_app)
    assert not at.exception
    at.selectbox(key="metric_name").select("queue_depth").run()
    assert at.query_params["metric"] == "queue_depth"
    at.multiselect(key="metric_group_by").select("job").run()
    at.selectbox(key="metric_agg").select("max").run()
    assert not at.exception
    assert len(at.get("vega_lite_chart")) == 1
    latest = at.dataframe[0].value
    assert sorted(latest.index) == ["worker1", "worker2"]
    assert list(latest.columns) == ["Latest", "Points"]
    assert set(latest["Latest"]) <= {"10", "11", "12", "20", "21", "22"}  # no 15-digit floats
    assert latest.loc["worker2", "Latest"] in {"20", "21", "22"}

    at.selectbox(key="metric_filter_job").select("worker1").run()
    latest = at.dataframe[0].value
    assert list(latest.index) == ["worker1"]
    assert latest.loc["worker1", "Points"] == 59
    # the whole choice is in the address: a link opens the same chart
    params = {k: at.query_params[k] for k in ("metric", "agg", "by", "where.job")}
    assert {k: _one(v) for k, v in params.items()} == {
        "metric": "queue_depth", "agg": "max", "by": "job", "where.job": "worker1"
    }  # fmt: skip
    fresh = logged_in_app(Role.VIEWER)
    fresh.query_params.update({k: _one(v) for k, v in params.items()})
    fresh.run()
    fresh = fresh.switch_page("pages/metrics.py").run()
    assert fresh.selectbox(key="metric_agg").value == "max"
    assert fresh.multiselect(key="metric_group_by").value == ["job"]
    assert list(fresh.dataframe[0].value.index) == ["worker1"]
    fresh.selectbox(key="metric_name").select("other_metric").run()
    assert "where.job" not in fresh.query_params  # another metric's filter is dropped


def _one(value: object) -> str:
    return str(value[-1]) if isinstance(value, list) else str(value)


def test_it_says_when_nothing_is_stored(engine: Engine, logged_in_app: AppFactory) -> None:
    at = _page(logged_in_app)
    assert not at.exception
    assert any("No metric has been stored yet" in i.value for i in at.info)
