"""POST /api/monitoring/metrics and GET /api/monitoring/live/metrics on a real server."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select, text

from monitoring_core.ingest.copy import binary_copy_payload
from monitoring_core.partitions import list_partitions, partition_name
from monitoring_core.schema import metric_points, metric_series


@pytest.fixture
def now(real_now: datetime) -> datetime:
    """The real time: the API server stamps and reads its data on the real clock."""
    return real_now


def _post(url: str, key: str, body: Any) -> httpx.Response:
    return httpx.post(
        f"{url}/api/monitoring/metrics", json=body, headers={"Authorization": f"Bearer {key}"}
    )


def _rows(engine: Engine) -> Sequence[Any]:
    with engine.connect() as conn:
        return conn.execute(
            select(
                metric_series.c.name,
                metric_series.c.dimensions,
                metric_series.c.source_system,
                metric_points.c.time,
                metric_points.c.value,
            )
            .join(metric_series, metric_series.c.id == metric_points.c.series_id)
            .order_by(metric_points.c.value)
        ).all()


def _count(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        points = conn.execute(select(func.count()).select_from(metric_points)).scalar_one()
        series = conn.execute(select(func.count()).select_from(metric_series)).scalar_one()
    return points, series


def test_it_round_trips_points_through_copy(
    api_server: str, ingest_key: str, engine: Engine, now: datetime
) -> None:
    at = now.replace(microsecond=123456) - timedelta(minutes=5)
    body = [
        {
            "metric_name": "bookings.created",
            "metric_value": -1.5e-7,
            "timestamp": at.isoformat(),
            "dimensions": {"region": "uk", "tier": 2, "paid": True},
            "source_system": "bookings-api",
        },
        {"metric_name": "bookings.created", "metric_value": 2**53, "timestamp": at.timestamp()},
        {"metric_name": "queue_depth", "metric_value": 7, "timestamp": int(at.timestamp() * 1000)},
        {
            "metric_name": "naive",
            "metric_value": 8,
            "timestamp": at.replace(tzinfo=None).isoformat(),
        },
    ]
    reply = _post(api_server, ingest_key, body)
    assert reply.status_code == 202, reply.text
    assert reply.json() == {"accepted": 4}
    rows = _rows(engine)
    assert [(r.name, r.value) for r in rows] == [
        ("bookings.created", -1.5e-7),
        ("queue_depth", 7.0),
        ("naive", 8.0),
        ("bookings.created", float(2**53)),
    ]
    assert rows[0].dimensions == {"region": "uk", "tier": "2", "paid": "true"}
    assert rows[0].source_system == "bookings-api"
    assert rows[0].time == at
    assert rows[1].time == at.replace(microsecond=123000)  # epoch milliseconds
    assert rows[2].time == at  # naive ISO means UTC
    assert abs(rows[3].time - at) < timedelta(microseconds=2)  # epoch seconds (a float)
    assert rows[3].dimensions == {}


def test_it_reuses_one_series_per_name_and_dimensions(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    point = {"metric_name": "m", "metric_value": 1, "dimensions": {"a": "1", "b": "2"}}
    reordered = {"metric_name": "m", "metric_value": 2, "dimensions": {"b": "2", "a": 1}}
    for _ in range(2):
        assert _post(api_server, ingest_key, [point, reordered]).status_code == 202
    assert _post(api_server, ingest_key, {"metric_name": "m", "metric_value": 3}).status_code == 202
    assert _count(engine) == (5, 2)


@pytest.mark.parametrize(
    ("item", "field", "says"),
    [
        ({"metric_value": 1}, "metric_name", "is required"),
        ({"metric_name": "", "metric_value": 1}, "metric_name", "empty"),
        ({"metric_name": 5, "metric_value": 1}, "metric_name", "must be a string, got integer"),
        ({"metric_name": "m"}, "metric_value", "is required"),
        ({"metric_name": "m", "metric_value": "1"}, "metric_value", "got string"),
        ({"metric_name": "m", "metric_value": True}, "metric_value", "got boolean"),
        ({"metric_name": "m", "metric_value": 1, "value": 1}, "value", "unknown field 'value'"),
        ({"metric_name": "m", "metric_value": 1, "timestamp": "yesterday"}, "timestamp", "ISO"),
        ({"metric_name": "m", "metric_value": 1, "timestamp": [1]}, "timestamp", "ISO"),
        ({"metric_name": "m", "metric_value": 1, "dimensions": [1]}, "dimensions", "object"),
        (
            {"metric_name": "m", "metric_value": 1, "dimensions": {"k": {"x": 1}}},
            "dimensions.k",
            "string or number",
        ),
        ({"metric_name": "m\x00", "metric_value": 1}, "metric_name", "NUL"),
        ({"metric_name": "m" * 201, "metric_value": 1}, "metric_name", "longer than 200"),
        ({"metric_name": "m", "metric_value": 1, "source_system": 3}, "source_system", "string"),
    ],
)
def test_it_rejects_the_whole_batch_naming_index_and_field(
    api_server: str, ingest_key: str, engine: Engine, item: dict, field: str, says: str
) -> None:
    good = {"metric_name": "good", "metric_value": 1}
    reply = _post(api_server, ingest_key, [good, good, item])
    assert reply.status_code == 422
    errors = reply.json()["detail"]
    assert any(e["index"] == 2 and e["field"] == field and says in e["message"] for e in errors), (
        errors
    )
    assert _count(engine) == (0, 0)


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"NaN", b"Infinity"])
def test_it_rejects_non_finite_numbers_saying_where(
    api_server: str, ingest_key: str, engine: Engine, number: bytes
) -> None:
    reply = httpx.post(
        f"{api_server}/api/monitoring/metrics",
        content=b'{"metric_name": "m", "metric_value": ' + number + b"}",
        headers={"Authorization": f"Bearer {ingest_key}", "content-type": "application/json"},
    )
    assert reply.status_code == 400
    assert "line 1 column 38" in reply.json()["detail"]
    assert _count(engine) == (0, 0)


def test_it_rejects_timestamps_outside_the_stored_days(
    api_server: str, ingest_key: str, engine: Engine, now: datetime
) -> None:
    with engine.connect() as conn:
        oldest = list_partitions(conn, "metric_points")[0]
    too_old = datetime(oldest.year, oldest.month, oldest.day, tzinfo=UTC) - timedelta(seconds=1)
    items = [
        {"metric_name": "m", "metric_value": 1, "timestamp": too_old.isoformat()},
        {"metric_name": "m", "metric_value": 1, "timestamp": (now + timedelta(days=2)).isoformat()},
    ]
    reply = _post(api_server, ingest_key, items)
    assert reply.status_code == 422
    messages = {e["index"]: e["message"] for e in reply.json()["detail"]}
    assert "older than the oldest stored day" in messages[0]
    assert "future" in messages[1]
    assert _count(engine) == (0, 0)


def test_it_creates_a_missing_partition_on_demand(
    api_server: str, ingest_key: str, engine: Engine, now: datetime
) -> None:
    day = (now - timedelta(days=3)).date()
    with engine.begin() as conn:
        conn.execute(text(f'DROP TABLE "{partition_name("metric_points", day)}"'))
    at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    reply = _post(
        api_server,
        ingest_key,
        {"metric_name": "late", "metric_value": 1, "timestamp": at.timestamp()},
    )
    assert reply.status_code == 202, reply.text
    with engine.connect() as conn:
        assert day in list_partitions(conn, "metric_points")
    assert _rows(engine)[0].time == at


def test_it_recreates_a_partition_dropped_behind_its_cache(
    api_server: str, ingest_key: str, engine: Engine, now: datetime
) -> None:
    day = (now - timedelta(days=4)).date()
    at = datetime(day.year, day.month, day.day, 6, tzinfo=UTC).isoformat()
    point = {"metric_name": "m", "metric_value": 1, "timestamp": at}
    assert _post(api_server, ingest_key, point).status_code == 202  # the cache now lists `day`
    with engine.begin() as conn:
        conn.execute(text(f'DROP TABLE "{partition_name("metric_points", day)}"'))  # retention
    reply = _post(api_server, ingest_key, point)
    assert reply.status_code == 202, reply.text
    assert _count(engine) == (1, 1)


def test_it_lays_out_binary_copy_rows_as_postgres_reads_them() -> None:
    at = datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    payload = binary_copy_payload(("timestamptz", "int8", "float8"), ([at], [7], [-2.5]))
    row = struct.pack(">hiqiqid", 3, 8, -1, 8, 7, 8, -2.5)
    assert payload == b"PGCOPY\n\xff\r\n\x00" + bytes(8) + row + b"\xff\xff"


def test_it_creates_each_new_series_once_under_concurrent_requests(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    items = [
        {"metric_name": f"race{i}", "metric_value": i, "dimensions": {"d": "x"}} for i in range(50)
    ]
    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda _: _post(api_server, ingest_key, items), range(6)))
    assert [r.status_code for r in replies] == [202] * 6
    assert _count(engine) == (300, 50)


def test_it_stores_a_large_batch(api_server: str, ingest_key: str, engine: Engine) -> None:
    items = [
        {"metric_name": f"m{i % 7}", "metric_value": i, "dimensions": {"shard": str(i % 3)}}
        for i in range(5000)
    ]
    assert _post(api_server, ingest_key, items).json() == {"accepted": 5000}
    with engine.connect() as conn:
        total = conn.execute(select(func.sum(metric_points.c.value))).scalar_one()
    assert total == sum(range(5000))
    assert _count(engine) == (5000, 21)


def test_it_reads_live_points_by_series(
    api_server: str, ingest_key: str, admin_key: str, now: datetime
) -> None:
    recent, old = now - timedelta(minutes=2), now - timedelta(minutes=20)
    items = [
        {"metric_name": "cpu", "metric_value": 1, "timestamp": old.isoformat()},
        {"metric_name": "cpu", "metric_value": 2, "timestamp": recent.isoformat()},
        {
            "metric_name": "cpu",
            "metric_value": 3,
            "timestamp": recent.isoformat(),
            "dimensions": {"h": "a"},
        },
        {"metric_name": "other", "metric_value": 4},
    ]
    assert _post(api_server, ingest_key, items).status_code == 202
    reply = httpx.get(
        f"{api_server}/api/monitoring/live/metrics",
        params={"name": "cpu", "window": "5m"},
        headers={"X-API-Key": admin_key},
    )
    assert reply.status_code == 200
    series = {str(s["dimensions"]): s["points"] for s in reply.json()["series"]}
    assert series == {"{}": [[recent.isoformat(), 2.0]], "{'h': 'a'}": [[recent.isoformat(), 3.0]]}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"window": "5m"}, "name"),
        ({"name": "cpu", "window": "5 minutes"}, "window"),
        ({"name": "cpu", "window": "2d"}, "window"),
    ],
)
def test_it_answers_422_for_bad_live_queries(
    api_server: str, admin_key: str, params: dict[str, str], field: str
) -> None:
    reply = httpx.get(
        f"{api_server}/api/monitoring/live/metrics",
        params=params,
        headers={"X-API-Key": admin_key},
    )
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["field"] == field
