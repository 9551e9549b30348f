"""Collectors against this machine, the test database and a real /metrics endpoint."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from sqlalchemy import Engine, create_engine, insert, select, text

from monitoring_core.accounts import create_user
from monitoring_core.collectors import Collector
from monitoring_core.collectors.database import DatabaseCollector
from monitoring_core.collectors.runner import run_collector, run_configured_collectors
from monitoring_core.collectors.scrape import ScrapeCollector
from monitoring_core.collectors.sql import SqlCollector, SqlCollectorError, rows_to_points
from monitoring_core.collectors.system import SystemCollector
from monitoring_core.enums import Role
from monitoring_core.ingest.points import MetricPoint
from monitoring_core.schema import metric_points, metric_series, sql_collectors
from tests.least_privilege_support import role_urls

NOW = datetime(2026, 6, 6, 12, 0, tzinfo=UTC)


def _names(points: list[MetricPoint]) -> set[str]:
    return {p.name for p in points}


def test_it_measures_this_machine() -> None:
    collector = SystemCollector()
    assert isinstance(collector, Collector)
    first = collector.collect(NOW)
    assert {
        "system_load1",
        "system_memory_used_percent",
        "system_memory_available_bytes",
        "system_swap_used_percent",
        "system_disk_used_percent",
        "system_disk_free_bytes",
    } <= _names(first)
    assert not any("network" in p.name for p in first)  # rates need a previous sample
    assert "system_cpu_percent" not in _names(first)  # so does CPU (tests/test_resources.py)
    memory = next(p for p in first if p.name == "system_memory_used_percent")
    assert 0 < memory.value <= 100 and memory.dimensions["host"]
    second = collector.collect(NOW + timedelta(seconds=30))
    rates = [p for p in second if p.name == "system_network_received_bytes_per_second"]
    assert all(p.value >= 0 and p.dimensions["interface"] != "lo" for p in rates)


def test_it_skips_a_network_sample_after_a_counter_reset() -> None:
    counters = {"eth0": SimpleNamespace(bytes_sent=1000, bytes_recv=5000)}
    ps = SimpleNamespace(
        cpu_times=lambda: SimpleNamespace(user=1.0, idle=1.0),
        virtual_memory=lambda: SimpleNamespace(percent=50.0, available=1),
        swap_memory=lambda: SimpleNamespace(percent=0.0),
        getloadavg=lambda: (0.5, 0.4, 0.3),
        disk_usage=lambda mount: SimpleNamespace(percent=40.0, free=10),
        net_io_counters=lambda pernic: counters,
    )
    collector = SystemCollector(ps=ps, disk_paths=("/",), host="h")
    collector.collect(NOW)
    counters["eth0"] = SimpleNamespace(bytes_sent=4000, bytes_recv=5000)
    rates = {
        p.name: p.value
        for p in collector.collect(NOW + timedelta(seconds=10))
        if "network" in p.name
    }
    assert rates == {
        "system_network_sent_bytes_per_second": 300.0,
        "system_network_received_bytes_per_second": 0.0,
    }
    counters["eth0"] = SimpleNamespace(bytes_sent=10, bytes_recv=10)  # interface re-created
    assert not any("network" in p.name for p in collector.collect(NOW + timedelta(seconds=20)))


def test_it_reads_the_databases_health(engine: Engine) -> None:
    points = DatabaseCollector(engine).collect(NOW)
    by_name = {p.name: p for p in points}
    assert by_name["db_connections"].value >= 1
    assert 0 <= by_name["db_cache_hit_ratio_since_reset"].value <= 1
    assert by_name["db_size_bytes"].value > 0
    assert 0 < by_name["db_connections_used_percent"].value < 100
    tables = {p.dimensions["table"] for p in points if p.name == "db_table_size_bytes"}
    assert len(tables) == 10
    assert "db_replication_lag_seconds" not in by_name  # no replicas here


def test_it_counts_slow_queries(engine: Engine, database_url: str) -> None:
    other = create_engine(database_url)
    done = threading.Event()

    def slow() -> None:
        with other.connect() as conn:
            conn.execute(text("SELECT pg_sleep(1.5)"))
        done.set()

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        with engine.connect() as conn:  # wait until the sleeper is visibly running
            for _ in range(200):
                if conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"
                    )
                ).scalar():
                    break
                conn.rollback()
        points = DatabaseCollector(engine, slow_query_seconds=0.0).collect(NOW)
        slow_count = next(p.value for p in points if p.name == "db_slow_queries")
        assert slow_count >= 1
    finally:
        thread.join()
        other.dispose()


@pytest.mark.parametrize(
    ("columns", "rows", "expected"),
    [
        (["value"], [(42,)], [("users_total", {}, 42.0)]),
        (["count"], [(Decimal("7.5"),)], [("users_total", {}, 7.5)]),
        (
            ["plan", "value"],
            [("pro", 3), ("free", 9), (None, 1)],
            [
                ("users_total", {"plan": "pro"}, 3.0),
                ("users_total", {"plan": "free"}, 9.0),
                ("users_total", {"plan": ""}, 1.0),
            ],
        ),
        (["metric_name", "value"], [("signups", 2)], [("signups", {}, 2.0)]),
        (["value"], [(None,), (float("nan"),)], []),
        (["value"], [], []),
    ],
)
def test_it_turns_query_rows_into_points(
    columns: list[str], rows: list[tuple[Any, ...]], expected: list[tuple[str, dict, float]]
) -> None:
    points = rows_to_points(columns, rows, metric_name="users_total", collector="c", now=NOW)
    assert [
        (p.name, {k: v for k, v in p.dimensions.items() if k != "collector"}, p.value)
        for p in points
    ] == expected
    assert all(p.dimensions["collector"] == "c" for p in points)


def test_it_needs_a_clear_value_column() -> None:
    with pytest.raises(SqlCollectorError):
        rows_to_points(["a", "b"], [(1, 2)], metric_name="m", collector="c", now=NOW)


def _sql(engine: Engine, query: str, url: str = "self", timeout: float = 5.0) -> SqlCollector:
    return SqlCollector(
        name="platform users",
        url=url,
        query=query,
        metric_name="platform_users",
        timeout_seconds=timeout,
        self_engine=engine,
    )


def test_it_runs_admin_sql_read_only_with_a_timeout(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = role_urls(database_url)[1]  # `self` and explicit URLs never run as a superuser
    monkeypatch.setenv("DATABASE_READER_URL", reader)
    with engine.begin() as conn:
        for name, role in [("ann", Role.ADMIN), ("bob", Role.VIEWER), ("cy", Role.VIEWER)]:
            create_user(conn, username=name, password="password123", role=role)
    roles = "(VALUES ('admin'), ('viewer'), ('viewer')) AS u(role)"
    query = f"SELECT role, count(*) AS value FROM {roles} GROUP BY role ORDER BY role"  # noqa: S608
    points = _sql(engine, query, url=reader).collect(NOW)
    assert [(p.dimensions["role"], p.value) for p in points] == [("admin", 1.0), ("viewer", 2.0)]
    mine = "SELECT count(*) FROM pg_stat_activity WHERE pid = pg_backend_pid()"
    assert _sql(engine, mine).collect(NOW)[0].value == 1.0
    for query, fragment in [
        ("INSERT INTO settings (key, value) VALUES ('x', '1') RETURNING 1", "read-only"),
        ("SELECT 1 AS value; DELETE FROM users", "multiple commands"),
        ("SELECT 5 % 2 AS value; SET default_transaction_read_only = off", "multiple commands"),
        ("WITH d AS (DELETE FROM users RETURNING 1) SELECT count(*) FROM d", "read-only"),
        ("SELECT pg_sleep(2) IS NULL, 1 AS value", "statement timeout"),
    ]:
        with pytest.raises(Exception, match=fragment):
            _sql(engine, query, timeout=0.5).collect(NOW)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 3


class _MetricsHandler(BaseHTTPRequestHandler):
    registry = CollectorRegistry()
    Counter("bookings", "Bookings", ["region"], registry=registry).labels("uk").inc(5)
    Gauge("queue_depth", "Queue", registry=registry).set(3)

    def do_GET(self) -> None:
        body = generate_latest(self.registry) if self.path == "/metrics" else b"broken{ 1\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def metrics_base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MetricsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_it_scrapes_a_metrics_endpoint(metrics_base: str) -> None:
    points = ScrapeCollector(name="bookings-api", url=metrics_base + "/metrics").collect(NOW)
    instance = metrics_base.removeprefix("http://")
    assert {(p.name, tuple(sorted(p.dimensions.items())), p.value) for p in points} == {
        (
            "bookings_total",
            (("instance", instance), ("job", "bookings-api"), ("region", "uk")),
            5.0,
        ),
        ("queue_depth", (("instance", instance), ("job", "bookings-api")), 3.0),
    }


def _series_values(engine: Engine, name: str) -> list[tuple[dict, float]]:
    stmt = (
        select(metric_series.c.dimensions, metric_points.c.value)
        .join(metric_points, metric_points.c.series_id == metric_series.c.id)
        .where(metric_series.c.name == name)
        .order_by(metric_series.c.id)
    )
    with engine.connect() as conn:
        return [(r.dimensions, r.value) for r in conn.execute(stmt)]


def test_it_records_a_failing_collector_and_carries_on(
    engine: Engine,
    metrics_base: str,
    now: datetime,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_READER_URL", role_urls(database_url)[1])  # `self` reads as it
    with engine.begin() as conn:
        for name, kind, url, query, enabled in [
            ("users", "sql", "self", "SELECT count(*) AS value FROM pg_stat_replication", True),
            ("broken sql", "sql", "self", "SELECT nope FROM nowhere", True),
            ("api", "prometheus_scrape", metrics_base + "/metrics", None, True),
            ("bad scrape", "prometheus_scrape", metrics_base + "/bad", None, True),
            ("off", "sql", "self", "SELECT 1", False),
        ]:
            conn.execute(
                insert(sql_collectors).values(
                    name=name,
                    kind=kind,
                    url=url,
                    query=query,
                    metric_name="platform_users" if name == "users" else None,
                    is_enabled=enabled,
                )
            )
    report = run_configured_collectors(engine, now)
    assert sorted((r.name, r.ok) for r in report.runs) == [
        ("api", True),
        ("bad scrape", False),
        ("broken sql", False),
        ("users", True),
    ]
    assert run_configured_collectors(engine, now + timedelta(seconds=30)).runs == []  # not due
    assert len(run_configured_collectors(engine, now + timedelta(seconds=60)).runs) == 4
    with engine.connect() as conn:
        errors = dict(
            conn.execute(select(sql_collectors.c.name, sql_collectors.c.last_error)).all()
        )
    assert errors["users"] is None and errors["off"] is None
    assert "nowhere" in errors["broken sql"] and "line 1" in errors["bad scrape"]
    assert _series_values(engine, "platform_users")[0][1] == 0.0
    up = {d["collector"]: v for d, v in _series_values(engine, "collector_up")}
    assert up == {"users": 1.0, "broken sql": 0.0, "api": 1.0, "bad scrape": 0.0}


def test_it_stores_system_and_database_points(engine: Engine, now: datetime) -> None:
    assert run_collector(engine, SystemCollector(), now).ok
    assert run_collector(engine, DatabaseCollector(engine), now).ok
    assert _series_values(engine, "system_memory_used_percent")
    assert _series_values(engine, "db_connections")
