"""Cardinality limits on the real API: series per metric (own route and Pushgateway) and
series per metrics query; each refusal is a 422 naming what was exceeded, storing nothing."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.error import HTTPError

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import basic_auth_handler, push_to_gateway
from sqlalchemy import Engine, func, select, text

from monitoring_core.config import ConfigError, load_settings
from monitoring_core.ingest.metrics import (
    MetricBatch,
    SeriesCache,
    SeriesLimitExceeded,
    write_metrics,
)
from monitoring_core.schema import metric_points, metric_series
from tests.rollup_fixtures import roll_up_now


@pytest.fixture
def limits(api_app: Any) -> Iterator[Callable[..., None]]:
    """Sets limits on the running server's settings, for this test only."""
    original = api_app.state.settings

    def set_limits(**limits: int) -> None:
        api_app.state.settings = dataclasses.replace(original, **limits)

    yield set_limits
    api_app.state.settings = original


def _post(url: str, key: str, items: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(f"{url}/api/monitoring/metrics", json=items, headers={"X-API-Key": key})


def _point(name: str, value: float, **dims: str) -> dict[str, Any]:
    return {"metric_name": name, "metric_value": value, "dimensions": dims}


def _counts(engine: Engine) -> tuple[int, int]:
    """(series, points) stored."""
    with engine.connect() as conn:
        series = conn.execute(select(func.count()).select_from(metric_series)).scalar_one()
        points = conn.execute(select(func.count()).select_from(metric_points)).scalar_one()
    return series, points


def test_it_refuses_a_batch_whose_new_series_pass_the_cap_and_stores_nothing(
    api_server: str, api_app: Any, ingest_key: str, engine: Engine, limits: Callable[..., None]
) -> None:
    limits(max_series_per_metric=3)
    first = [_point("logins", 1, region="uk"), _point("logins", 2, region="fr")]
    assert _post(api_server, ingest_key, first).status_code == 202
    assert _counts(engine) == (2, 2)

    # one existing (cached) series, then two new ones: 4 series > 3
    batch = [
        _point("logins", 3, region="uk"),
        _point("logins", 4, region="de"),
        _point("logins", 5, region="es"),
    ]
    reply = _post(api_server, ingest_key, batch)
    assert reply.status_code == 422, reply.text
    assert reply.json()["detail"] == [
        {
            "index": 1,
            "field": "dimensions",
            "message": "metric 'logins' would have 4 series; the limit is 3",
        }
    ]
    assert _counts(engine) == (2, 2)  # neither the point of the existing series nor a series

    # a third series still fits; other metrics have their own budget
    fits = [_point("logins", 6, region="de"), _point("signups", 1, region="de")]
    assert _post(api_server, ingest_key, fits).status_code == 202
    assert _counts(engine) == (4, 4)


def test_it_keeps_existing_series_writable_past_the_cap(
    api_server: str, api_app: Any, ingest_key: str, engine: Engine, limits: Callable[..., None]
) -> None:
    three = [_point("queue", 1, q=name) for name in ("mail", "sms", "push")]
    assert _post(api_server, ingest_key, three).status_code == 202
    limits(max_series_per_metric=2)  # lowered below what exists
    api_app.state.caches = {}  # a restarted API: the series ids are no longer cached
    assert _post(api_server, ingest_key, three).status_code == 202
    assert _post(api_server, ingest_key, three).status_code == 202  # and from the cache
    assert _counts(engine) == (3, 9)
    reply = _post(api_server, ingest_key, [*three, _point("queue", 1, q="fax")])
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["index"] == 3
    assert "would have 4 series; the limit is 2" in reply.json()["detail"][0]["message"]
    assert _counts(engine) == (3, 9)


def _auth(key: str) -> Callable[..., Callable[[], None]]:
    def handler(
        url: str, method: str, timeout: float | None, headers: list, data: bytes
    ) -> Callable[[], None]:
        return basic_auth_handler(url, method, timeout, headers, data, "pusher", key)

    return handler


def _registry(shards: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    gauge = Gauge("export_rows", "Rows exported", ["shard"], registry=registry)
    for shard in range(shards):
        gauge.labels(str(shard)).set(shard)
    return registry


def test_it_refuses_a_pushgateway_push_past_the_cap_and_stores_nothing(
    api_server: str, api_app: Any, ingest_key: str, engine: Engine, limits: Callable[..., None]
) -> None:
    limits(max_series_per_metric=5)
    with pytest.raises(HTTPError) as refused:
        push_to_gateway(api_server, job="export", registry=_registry(6), handler=_auth(ingest_key))
    assert refused.value.code == 422
    detail = refused.value.read().decode()
    assert "metric 'export_rows' would have 6 series; the limit is 5" in detail
    assert _counts(engine) == (0, 0)  # not even the push_time_seconds marker

    push_to_gateway(api_server, job="export", registry=_registry(5), handler=_auth(ingest_key))
    assert _counts(engine) == (6, 6)  # five shards and push_time_seconds


def test_it_answers_422_for_a_query_returning_more_series_than_the_limit(
    api_server: str,
    api_app: Any,
    ingest_key: str,
    admin_key: str,
    engine: Engine,
    limits: Callable[..., None],
) -> None:
    at = (datetime.now(UTC) - timedelta(minutes=5)).replace(second=0, microsecond=0)
    points = [
        {**_point("jobs", 1, host=f"h{i}", dc="a" if i < 2 else "b"), "timestamp": at.isoformat()}
        for i in range(4)
    ]
    assert _post(api_server, ingest_key, points).status_code == 202
    roll_up_now(engine)
    limits(max_query_series=3)

    def query(**extra: Any) -> httpx.Response:
        body = {"metric_name": "jobs", "aggregation": "sum", "interval": "1h", "timeRange": "24h"}
        return httpx.post(
            f"{api_server}/api/monitoring/query/metrics",
            json={**body, **extra},
            headers={"X-API-Key": admin_key},
        )

    reply = query(group_by=["host"])
    assert reply.status_code == 422, reply.text
    (error,) = reply.json()["detail"]
    assert error["field"] == "group_by"
    assert "returns 4 series; the limit is 3" in error["message"]
    assert "fewer dimensions or add filters" in error["message"]

    assert len(query(group_by=["dc"]).json()["series"]) == 2
    assert len(query(group_by=["host"], filters={"dc": "b"}).json()["series"]) == 2
    limits(max_query_series=4)
    assert len(query(group_by=["host"]).json()["series"]) == 4


def test_it_answers_422_for_a_live_read_over_the_series_limit(
    api_server: str, ingest_key: str, admin_key: str, limits: Callable[..., None]
) -> None:
    points = [_point("workers", 1, host=f"h{i}") for i in range(4)]
    assert _post(api_server, ingest_key, points).status_code == 202
    limits(max_query_series=3)

    def live() -> httpx.Response:
        return httpx.get(
            f"{api_server}/api/monitoring/live/metrics",
            params={"name": "workers", "window": "5m"},
            headers={"X-API-Key": admin_key},
        )

    reply = live()
    assert reply.status_code == 422, reply.text
    (error,) = reply.json()["detail"]
    assert error["field"] == "name"
    assert "holds 4 series of 'workers'; the limit is 3" in error["message"]
    limits(max_query_series=4)
    assert len(live().json()["series"]) == 4


@pytest.mark.parametrize(
    ("env", "per_metric", "per_query"),
    [
        ({}, 10_000, 500),
        ({"MONITORING_MAX_SERIES_PER_METRIC": "25", "MONITORING_MAX_QUERY_SERIES": "7"}, 25, 7),
    ],
)
def test_it_reads_the_limits_from_the_environment(
    env: dict[str, str], per_metric: int, per_query: int
) -> None:
    settings = load_settings(env)
    assert (settings.max_series_per_metric, settings.max_query_series) == (per_metric, per_query)


@pytest.mark.parametrize(
    "env", [{"MONITORING_MAX_SERIES_PER_METRIC": "0"}, {"MONITORING_MAX_QUERY_SERIES": "many"}]
)
def test_it_refuses_unusable_limits(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=next(iter(env))):
        load_settings(env)


def _batch(at: datetime, *values: str) -> MetricBatch:
    keys = [("conc", orjson.dumps({"k": value})) for value in values]
    return MetricBatch(keys, [at] * len(keys), [1.0] * len(keys), dict.fromkeys(keys, "test"))


def test_it_counts_concurrent_new_series_once_and_exactly(
    engine: Engine, real_now: datetime
) -> None:
    """A writer creating series waits for another one's commit, then counts what it created
    (the series both wanted once): the cap holds under concurrency, without false refusals."""
    with engine.begin() as conn:
        write_metrics(conn, _batch(real_now, "a"), SeriesCache(), max_series_per_metric=4)
    first = engine.connect()
    first.begin()
    write_metrics(first, _batch(real_now, "x", "y"), SeriesCache(), max_series_per_metric=4)
    outcome: list[object] = []

    def second() -> None:
        try:
            with engine.begin() as conn:
                batch = _batch(real_now, "x", "w")
                outcome.append(write_metrics(conn, batch, SeriesCache(), max_series_per_metric=4))
        except Exception as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=second)
    worker.start()
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE '%pg_advisory_xact_lock%' AND datname = current_database()"
    )
    deadline = time.monotonic() + 20
    with engine.connect() as probe:
        while not probe.execute(waiting).scalar_one():  # the second writer waits for the lock
            assert time.monotonic() < deadline, "the second writer never waited for the first"
            probe.rollback()
            time.sleep(0.01)
    first.commit()
    first.close()
    worker.join(20)
    assert len(outcome) == 1 and isinstance(outcome[0], dict), outcome
    assert _counts(engine) == (4, 5)  # a, x, y, w; x written by both
    with pytest.raises(SeriesLimitExceeded, match="would have 5 series; the limit is 4"):
        with engine.begin() as conn:
            write_metrics(conn, _batch(real_now, "v"), SeriesCache(), max_series_per_metric=4)
