"""Alert signals from spans (latency and error rate per service and operation) and from logs
(count of matching records: service, severity, body substring), through the real engine:
backtests and one evaluation cycle at a fixed `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, text

from monitoring_core.alerts import service, signals
from monitoring_core.alerts.backtest import backtest
from monitoring_core.alerts.rules import Rule, rule_from_row
from monitoring_core.flows.alert_cycle import evaluate_all
from monitoring_core.logs.store import insert_logs
from monitoring_core.partitions import ensure_partitions
from monitoring_core.traces.store import insert_spans

TZ = ZoneInfo("Europe/London")
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def rule(cfg: dict[str, Any]) -> Rule:
    return rule_from_row(
        {"id": 0, "alert_name": "r", "severity_level": "high", "condition_config": cfg}
    )


def span(
    at: datetime, service_name: str, name: str, ms: float, *, error: bool = False, n: int = 0
) -> tuple[Any, ...]:
    return (
        at, f"{n:032x}", f"{n + 1:016x}", None, service_name, name, 2, ms, 2 if error else 1,
        None, {}, [], {"service.name": service_name}, None,
    )  # fmt: skip


def record(at: datetime, service_name: str, severity: int, body: str) -> tuple[Any, ...]:
    return (at, severity, None, body, None, None, service_name, {}, {})


def spans_every_10s(start: datetime, minutes: int, service_name: str, name: str, **kw: Any) -> list:
    return [
        span(start + i * timedelta(seconds=10), service_name, name, n=i + 1, **kw)
        for i in range(minutes * 6)
    ]


def events(conn: Connection, r: Rule, start: datetime) -> list[dict[str, Any]]:
    return backtest(conn, r, start=start, end=NOW, tz=TZ)["fired"]


def test_the_catalogue_offers_span_and_log_signals_and_checks_their_dimensions(
    engine: Engine,
) -> None:
    assert signals.signal("spans.latency_ms").dimensions == (  # type: ignore[union-attr]
        "service", "operation", "kind", "status",
    )  # fmt: skip
    assert signals.counts_zero("logs.lines") and signals.is_windowed("spans.error_rate")
    with engine.connect() as conn:
        bad = signals.problems(
            conn, {"metric": "logs.lines", "aggregation": "count", "group_by": ["endpoint"]}
        )
        good = signals.problems(
            conn,
            {"metric": "logs.lines", "aggregation": "count",
             "filters": {"body_contains": "timeout", "severity": "ERROR"}},
        )  # fmt: skip
    assert bad and "service, severity, body_contains" in bad[0]["message"] and good == []


def test_span_p95_fires_for_the_slow_operation_only(engine: Engine) -> None:
    start = NOW - 30 * MIN
    slow = spans_every_10s(start + 15 * MIN, 15, "payments", "POST /charge", ms=2500)
    rows = spans_every_10s(start, 15, "payments", "POST /charge", ms=200) + slow
    rows += spans_every_10s(start, 30, "payments", "GET /status", ms=20)
    rows += spans_every_10s(start, 30, "photos", "POST /charge", ms=300)
    r = rule({"type": "threshold", "metric": "spans.latency_ms", "aggregation": "p95",
              "operator": "greater_than", "value": 1000, "window_minutes": 5,
              "duration_minutes": 2, "group_by": ["service", "operation"]})  # fmt: skip
    with engine.begin() as conn:
        ensure_partitions(conn, start=start, end=NOW)
        insert_spans(conn, rows)
        fired = events(conn, r, start)
    assert [e["alert_key"] for e in fired] == ["service=payments,operation=POST /charge"]
    assert fired[0]["value"] == 2500.0
    assert start + 15 * MIN < fired[0]["time"] <= start + 20 * MIN


def test_span_error_rate_per_service_fires_where_half_the_spans_fail(engine: Engine) -> None:
    start = NOW - 20 * MIN
    rows = spans_every_10s(start, 20, "checkout", "charge", ms=50)
    rows += [
        span(start + i * timedelta(seconds=10), "payments", "charge", 50, error=i % 2 == 1)
        for i in range(120)
    ]
    r = rule({"type": "threshold", "metric": "spans.error_rate", "aggregation": "avg",
              "operator": "greater_than", "value": 0.2, "window_minutes": 5,
              "group_by": ["service"], "filters": {"kind": "server"}, "min_count": 10})  # fmt: skip
    with engine.begin() as conn:
        ensure_partitions(conn, start=start, end=NOW)
        insert_spans(conn, rows)
        fired = events(conn, r, start)
    assert [e["alert_key"] for e in fired] == ["service=payments"]
    assert 0.4 < fired[0]["value"] < 0.6  # every other span fails


def test_log_lines_count_only_matching_records_of_the_service_and_severity(
    engine: Engine,
) -> None:
    start = NOW - 20 * MIN
    rows = [  # payments: 2 ERROR "Provider TIMEOUT" a minute from NOW - 8 min
        record(NOW - 8 * MIN + i * timedelta(seconds=30), "payments", 17,
               f"charge {i} failed: Provider TIMEOUT after 3000 ms")
        for i in range(16)
    ]  # fmt: skip
    rows += [record(NOW - 8 * MIN + i * MIN, "payments", 9, "provider timeout retried ok")
             for i in range(8)]  # INFO: another severity  # fmt: skip
    rows += [record(NOW - 8 * MIN + i * MIN, "payments", 17, "card declined")
             for i in range(8)]  # ERROR without the text  # fmt: skip
    rows += [record(NOW - 8 * MIN + i * MIN, "photos", 17, "upstream provider timeout")
             for i in range(8)]  # another service  # fmt: skip
    r = rule({"type": "threshold", "metric": "logs.lines", "aggregation": "count",
              "operator": "greater_than", "value": 5, "window_minutes": 5,
              "filters": {"service": "payments", "severity": "ERROR",
                          "body_contains": "provider timeout"}})  # fmt: skip
    with engine.begin() as conn:
        ensure_partitions(conn, start=start, end=NOW)
        insert_logs(conn, rows[:10])  # two blocks: the index finds both
        insert_logs(conn, rows[10:])
        result = backtest(conn, r, start=start, end=NOW, tz=TZ)
    assert result["fired_count"] == 1
    fired = result["fired"][0]
    # 2 a minute: more than 5 once the window holds 3 minutes of them (at the backtest's step)
    at = fired["time"]
    assert NOW - 8 * MIN + 2 * MIN + timedelta(seconds=30) <= at <= NOW - 5 * MIN
    matching = [row[0] for row in rows[:16]]
    assert fired["value"] == sum(1 for t in matching if at - 5 * MIN < t <= at) > 5


def test_a_cycle_fires_span_and_log_rules_at_a_fixed_now(engine: Engine) -> None:
    rows = spans_every_10s(NOW - 10 * MIN, 10, "search", "GET /suppliers", ms=900)
    logs = [record(NOW - i * timedelta(seconds=20), "search", 17, f"query {i}: index timeout")
            for i in range(12)]  # fmt: skip
    with engine.begin() as conn:
        ensure_partitions(conn, start=NOW - timedelta(hours=1), end=NOW)
        insert_spans(conn, rows)
        insert_logs(conn, logs)
        ids = []
        for name, cfg in (
            ("slow search", {"type": "threshold", "metric": "spans.latency_ms",
                             "aggregation": "p95", "operator": "greater_than", "value": 500,
                             "window_minutes": 5, "filters": {"service": "search"}}),
            ("index timeouts", {"type": "threshold", "metric": "logs.lines",
                                "aggregation": "count", "operator": "greater_than_or_equal",
                                "value": 10, "window_minutes": 5,
                                "filters": {"body_contains": "INDEX TIMEOUT"}}),
            ("no such text", {"type": "threshold", "metric": "logs.lines",
                              "aggregation": "count", "operator": "greater_than", "value": 0,
                              "window_minutes": 5, "filters": {"body_contains": "disk full"}}),
        ):  # fmt: skip
            body = {"alert_name": name, "severity_level": "high", "condition_config": cfg,
                    "notification_channels": []}  # fmt: skip
            ids.append(
                service.rule_create(conn, body=body, actor="user:a", role="admin", now=NOW)["id"]
            )
        report = evaluate_all(conn, now=NOW, tz=TZ, public_url="http://ui")
        status = dict(
            conn.execute(
                text(
                    "SELECT alert_configuration_id, status FROM alert_instances"
                    " WHERE alert_configuration_id = ANY(:ids)"
                ),
                {"ids": ids},
            ).all()
        )
    assert report.errors == []
    assert status.get(ids[0]) == "firing" and status.get(ids[1]) == "firing"
    assert status.get(ids[2]) != "firing"
