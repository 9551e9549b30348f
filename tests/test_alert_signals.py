"""Every signal can be alerted on: the catalogue, windowed reads of API timings, Web Vitals and
error groups (one read per family), the templates firing on crafted data, and the refusal of
an unknown signal (service and API)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import Connection, Engine, text

from monitoring_core.alerts import series as series_mod
from monitoring_core.alerts import service, signals
from monitoring_core.alerts.backtest import backtest
from monitoring_core.alerts.rules import TEMPLATES, Rule, RuleInvalid, rule_from_row
from monitoring_core.alerts.signals_read import SignalReader
from monitoring_core.alerts.store import get_rule
from monitoring_core.flows.alert_cycle import evaluate_all
from monitoring_core.partitions import ensure_partitions
from tests.rollup_fixtures import add_points, add_series, add_timings, add_vitals, roll_up_now

TZ = ZoneInfo("Europe/London")
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # a Tuesday off season: no calendar effects
MIN = timedelta(minutes=1)


def rule(cfg: dict[str, Any], rule_id: int = 0) -> Rule:
    return rule_from_row(
        {"id": rule_id, "alert_name": "r", "severity_level": "high", "condition_config": cfg}
    )


def template(name: str) -> Rule:
    return rule_from_row({"id": 0, **TEMPLATES[name]})


def fired(conn: Connection, r: Rule, start: datetime, end: datetime) -> list[dict[str, Any]]:
    return backtest(conn, r, start=start, end=end, tz=TZ)["fired"]


def partitions(conn: Connection, start: datetime, end: datetime = NOW) -> None:
    ensure_partitions(conn, start=start, end=end)


def traffic(
    start: datetime, minutes: int, per_minute: int, endpoint: str, *, ms: float = 100,
    status: int = 200, method: str = "POST",
) -> list[tuple[datetime, str, str, int, float]]:  # fmt: skip
    step = 60 / per_minute
    return [
        (start + timedelta(minutes=m, seconds=i * step), method, endpoint, status, ms)
        for m in range(minutes)
        for i in range(per_minute)
    ]


# ---------------------------------------------------------------- catalogue and refusals
def test_it_names_every_built_in_signal_of_the_contract() -> None:
    names = set(signals.BUILT_IN)
    assert {"api.latency_ms", "api.error_rate", "api.requests", "errors.events"} <= names
    assert {f"web_vitals.{v}" for v in ("LCP", "INP", "CLS", "FCP", "TTFB")} <= names
    assert {"health.up", "health.uptime", "health.response_time_ms"} <= names
    assert "business.dau" in names and "api.p95_regression" in names
    assert signals.signal("api.latency_ms").dimensions == (  # type: ignore[union-attr]
        "service", "endpoint", "method", "status_class",
    )  # fmt: skip
    assert signals.service_of("/api/payments/charge") == "payments"
    assert signals.service_of("/v2/photos/upload") == "photos"


def test_it_refuses_an_unknown_signal_naming_the_known_ones(engine: Engine) -> None:
    body = {
        "alert_name": "typo",
        "severity_level": "high",
        "condition_config": {"type": "threshold", "metric": "api_error_rate", "value": 1},
    }
    with engine.begin() as conn:
        add_series(conn, "queue_depth", {"queue": "emails"})
        with pytest.raises(RuleInvalid) as refused:
            service.rule_create(conn, body=body, actor="user:a", role="admin", now=NOW)
        message = refused.value.problems[0]["message"]
        assert "unknown signal 'api_error_rate'" in message
        assert "api.error_rate" in message and "queue_depth" in message
        body["condition_config"] = {"type": "threshold", "metric": "queue_depth", "value": 1}
        assert service.rule_create(conn, body=body, actor="user:a", role="admin", now=NOW)["id"]


@pytest.mark.parametrize(
    ("cfg", "field"),
    [
        ({"metric": "api.latency_ms", "group_by": ["pool"]}, "condition_config.group_by"),
        ({"metric": "api.error_rate", "aggregation": "p95"}, "condition_config.aggregation"),
        ({"metric": "web_vitals.LCP", "filters": {"endpoint": "/"}}, "condition_config.group_by"),
    ],
)
def test_it_refuses_what_a_signal_does_not_have(
    engine: Engine, cfg: dict[str, Any], field: str
) -> None:
    body = {"type": "threshold", "value": 1, "aggregation": "avg", **cfg}
    with engine.begin() as conn:
        assert [p["field"] for p in signals.problems(conn, body)] == [field]


def test_it_answers_422_for_an_unknown_signal_over_http(api_server: str, admin_key: str) -> None:
    base = f"{api_server}/api/admin/monitoring/alerts"
    body = {
        "alert_name": "typo",
        "severity_level": "high",
        "condition_config": {"type": "threshold", "metric": "api_response_time_ms", "value": 1},
    }
    headers = {"Authorization": f"Bearer {admin_key}"}
    refused = httpx.post(base, json=body, headers=headers, timeout=30)
    assert refused.status_code == 422
    assert "api.latency_ms" in refused.json()["detail"][0]["message"]
    body["condition_config"]["metric"] = "api.latency_ms"  # type: ignore[index]
    created = httpx.post(base, json=body, headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    rule_id = created.json()["id"]
    bad = {"condition_config": {"type": "threshold", "metric": "nope", "value": 1}}
    assert httpx.put(f"{base}/{rule_id}", json=bad, headers=headers, timeout=30).status_code == 422
    listed = httpx.get(f"{base}/signals", headers=headers, timeout=30).json()["signals"]
    latency = next(s for s in listed if s["name"] == "api.latency_ms")
    assert latency["dimensions"] == ["service", "endpoint", "method", "status_class"]


def test_it_lists_the_catalogue_with_stored_metrics_and_their_labels(engine: Engine) -> None:
    with engine.begin() as conn:
        add_series(conn, "queue_depth", {"queue": "emails", "host": "a"})
        rows = {r["name"]: r for r in signals.catalogue(conn)}
    assert rows["queue_depth"]["dimensions"] == ["host", "queue"]
    assert rows["web_vitals.LCP"]["aggregations"][0] == "p50"
    assert rows["api.error_rate"]["family"] == "api"


# ---------------------------------------------------------------- windowed values
def test_it_computes_exact_percentiles_and_weighted_rates_over_the_window(engine: Engine) -> None:
    with engine.begin() as conn:
        partitions(conn, NOW - timedelta(minutes=30))
        rows = [
            (NOW - timedelta(seconds=s), "GET", "/api/x/a", 200, float(s)) for s in range(1, 101)
        ]
        rows += [(NOW - timedelta(seconds=30), "GET", "/api/x/a", 503, 5.0)]
        add_timings(conn, rows)
        reader = series_mod.SeriesReader(conn, NOW)
        p95 = rule({"type": "threshold", "metric": "api.latency_ms", "aggregation": "p95",
                    "value": 1, "window_minutes": 1, "group_by": ["status_class"]})  # fmt: skip
        rate = rule({"type": "threshold", "metric": "api.error_rate", "value": 1,
                     "window_minutes": 5})  # fmt: skip
        grouped = reader.fetch(series_mod.fetch_key(p95), series_mod.lookback(p95))  # type: ignore[arg-type]
        errors = reader.fetch(series_mod.fetch_key(rate), series_mod.lookback(rate))  # type: ignore[arg-type]
    # (now − 60 s, now]: latencies 1..59 (the point at exactly −60 s is outside)
    assert grouped[("2xx",)][-1].value == pytest.approx(1 + 0.95 * 58)
    assert grouped[("5xx",)][-1].value == 5.0
    assert errors[()][-1].value == pytest.approx(1 / 101)


def test_it_reads_each_family_once_per_cycle(engine: Engine) -> None:
    with engine.begin() as conn:
        partitions(conn, NOW - timedelta(hours=1))
        add_timings(conn, traffic(NOW - 20 * MIN, 20, 6, "/api/payments/charge"))
        reads: list[str] = []
        reader = series_mod.SeriesReader(conn, NOW)
        original = SignalReader._read

        def counted(self: SignalReader, family: str, spans: Any) -> Any:
            reads.append(family)
            return original(self, family, spans)

        keys = {}
        for window in (5, 10, 20):
            for aggregation in ("p95", "avg", "max"):
                r = rule({"type": "threshold", "metric": "api.latency_ms", "value": 1,
                          "aggregation": aggregation, "window_minutes": window})  # fmt: skip
                keys[series_mod.fetch_key(r)] = series_mod.lookback(r)
        reader.want_signals(keys)  # type: ignore[arg-type]
        SignalReader._read = counted  # type: ignore[method-assign]
        try:
            values = {k: reader.fetch(k, span) for k, span in keys.items()}  # type: ignore[arg-type]
        finally:
            SignalReader._read = original  # type: ignore[method-assign]
    assert reads == ["api"]
    assert all(v[()][-1].value == 100.0 for v in values.values())


def test_it_reads_vitals_and_error_groups(engine: Engine) -> None:
    with engine.begin() as conn:
        partitions(conn, NOW - timedelta(hours=1))
        add_vitals(conn, [(NOW - timedelta(seconds=5 * i), "LCP", 1000.0 + 100 * i,
                           "poor" if i >= 30 else "good", "/plan", "mobile") for i in range(40)])  # fmt: skip
        conn.execute(text(
            "INSERT INTO error_groups (id, fingerprint, error_type, message_template, level, "
            "severity, services, first_seen, last_seen) VALUES (7, 'f', 'E', 'm', 'api', 'high', "
            "ARRAY['payments'], :t, :t)"), {"t": NOW - 2 * MIN})  # fmt: skip
        conn.execute(text(
            "INSERT INTO error_group_changes (group_id, time, kind) VALUES (7, :t, 'new'), "
            "(7, :u, 'regressed')"), {"t": NOW - 2 * MIN, "u": NOW - 30 * MIN})  # fmt: skip
        conn.execute(text(
            "INSERT INTO error_events (time, event_id, group_id, error_type, message, service_name,"
            " level, severity) SELECT :now - g * interval '10 seconds', gen_random_uuid(), 7, 'E',"
            " 'm', 'payments', 'api', 'high' FROM generate_series(0, 11) g"), {"now": NOW})  # fmt: skip
        checks: dict[str, tuple[str, dict[str, Any]]] = {
            "web_vitals.LCP": ("p75", {"group_by": ["device_type"]}),
            "web_vitals.LCP.poor_share": ("avg", {"window_minutes": 10}),
            "errors.events": ("count", {"filters": {"service": "payments"}, "window_minutes": 1}),
            "errors.new_groups": ("count", {"window_minutes": 5}),
            "errors.regressions": ("count", {"window_minutes": 5}),
        }
        values = {}
        for name, (aggregation, extra) in checks.items():
            r = rule({"type": "threshold", "metric": name, "aggregation": aggregation,
                      "value": 1, "window_minutes": 60, **extra})  # fmt: skip
            key = series_mod.fetch_key(r)
            assert key is not None
            grouped = series_mod.fetch(conn, key, span=series_mod.lookback(r), now=NOW)
            keyed = series_mod.for_rule(r, key, grouped)
            values[name] = {k: pts[-1].value for k, (_d, pts) in keyed.items()}
    # the last 60 minutes hold 40 reports 1000..4900: p75 by linear interpolation
    assert values["web_vitals.LCP"] == {"device_type=mobile": pytest.approx(1000 + 100 * 29.25)}
    assert values["web_vitals.LCP.poor_share"] == {"": pytest.approx(10 / 40)}
    assert values["errors.events"] == {"": 6.0}  # 0, 10 … 50 s ago
    assert values["errors.new_groups"] == {"": 1.0}
    assert values["errors.regressions"] == {}  # 30 minutes ago: outside; the engine counts 0


def test_it_counts_an_empty_window_as_zero(engine: Engine) -> None:
    r = rule({"type": "threshold", "metric": "errors.events", "aggregation": "count",
              "operator": "less_than", "value": 1, "window_minutes": 5})  # fmt: skip
    with engine.begin() as conn:
        partitions(conn, NOW - timedelta(hours=1))
        result = backtest(conn, r, start=NOW - 10 * MIN, end=NOW, tz=TZ)
    assert result["fired_count"] == 1 and result["fired"][0]["value"] == 0.0


# ---------------------------------------------------------------- templates on crafted data
def test_high_error_rate_fires_for_the_failing_service_only(engine: Engine) -> None:
    start = NOW - 40 * MIN
    with engine.begin() as conn:
        partitions(conn, start)
        rows = traffic(start, 20, 2, "/api/payments/charge")
        rows += traffic(start + 20 * MIN, 20, 2, "/api/payments/charge", status=502)[::2]
        rows += traffic(start + 20 * MIN, 20, 2, "/api/payments/charge")[1::2]
        rows += traffic(start, 40, 1, "/api/messages", method="GET")  # busy and fine
        rows += [(start + 30 * MIN, "GET", "/api/quiet", 500, 50.0)]  # one error: too few
        add_timings(conn, rows)
        events = fired(conn, template("high_error_rate"), start, NOW)
    assert [e["alert_key"] for e in events] == ["service=payments"]
    assert events[0]["time"] >= start + 20 * MIN + 5 * MIN  # it held for 5 minutes first


def test_slow_response_time_fires_when_the_whole_api_slows_down(engine: Engine) -> None:
    start = NOW - 60 * MIN
    with engine.begin() as conn:
        partitions(conn, start)
        rows = traffic(start, 30, 6, "/api/suppliers/search", method="GET")
        rows += traffic(start + 30 * MIN, 30, 6, "/api/suppliers/search", method="GET", ms=3000)
        add_timings(conn, rows)
        events = fired(conn, template("slow_response_time"), start, NOW)
    assert len(events) == 1
    assert start + 40 * MIN <= events[0]["time"] <= start + 45 * MIN


def health_points(conn: Connection, check: str, check_type: str, values: list[float]) -> None:
    dims = {"check": check, "service": "api", "check_type": check_type, "wedding_critical": "true"}
    sid = add_series(conn, "health_check_up", dims)
    first = NOW - len(values) * MIN
    add_points(conn, sid, [(first + (i + 1) * MIN, v) for i, v in enumerate(values)])


def test_service_unavailable_and_heartbeat_missing_fire_on_down_checks(engine: Engine) -> None:
    with engine.begin() as conn:
        partitions(conn, NOW - timedelta(hours=1))
        health_points(conn, "Vendor search", "http", [1.0] * 20 + [0.0] * 10 + [1.0] * 10)
        health_points(conn, "Nightly backup", "heartbeat", [1.0] * 30 + [0.0] * 10)
    roll_up_now(engine)  # longer reads: 1-min rows
    with engine.begin() as conn:
        down = fired(conn, template("service_unavailable"), NOW - 40 * MIN, NOW)
        missing = fired(conn, template("heartbeat_missing"), NOW - 40 * MIN, NOW)
    assert {e["alert_key"] for e in down} == {"check=Vendor search", "check=Nightly backup"}
    assert [e["alert_key"] for e in missing] == ["check=Nightly backup"]


@pytest.mark.parametrize(
    ("name", "endpoint", "ms", "status"),
    [
        ("payment_failures", "/api/payments/charge", 900, 502),
        ("photo_upload_latency", "/api/photos/upload", 9000, 201),
        ("form_submission_success", "/api/forms/submit", 300, 500),
    ],
)
def test_wedding_critical_templates_fire_on_their_service(
    engine: Engine, name: str, endpoint: str, ms: float, status: int
) -> None:
    start = NOW - 60 * MIN
    with engine.begin() as conn:
        partitions(conn, start)
        rows = traffic(start, 30, 2, endpoint)
        rows += traffic(start + 30 * MIN, 30, 2, endpoint, ms=ms, status=status)
        rows += traffic(start, 60, 2, "/api/messages", ms=9000, status=500)  # another service
        add_timings(conn, rows)
        events = fired(conn, template(name), start, NOW)
    assert len(events) == 1 and events[0]["time"] > start + 30 * MIN


def test_performance_regression_fires_against_the_same_hour_of_past_weeks(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        partitions(conn, NOW - timedelta(weeks=4, hours=2))
        rows = []
        for week in range(1, 5):
            rows += traffic(NOW - timedelta(weeks=week, hours=2), 120, 1, "/api/suppliers/search",
                            method="GET", ms=100)  # fmt: skip
        rows += traffic(NOW - 2 * timedelta(hours=1), 60, 1, "/api/suppliers/search", method="GET")
        rows += traffic(NOW - timedelta(hours=1), 60, 1, "/api/suppliers/search", method="GET",
                        ms=400)  # fmt: skip
        add_timings(conn, rows)
    roll_up_now(engine)
    with engine.begin() as conn:
        events = fired(conn, template("performance_regression"), NOW - 30 * MIN, NOW)
    assert [e["alert_key"] for e in events] == ["endpoint=/api/suppliers/search"]
    assert events[0]["value"] == pytest.approx(4.0, rel=0.05)


def test_a_cycle_evaluates_signal_rules_and_fires(engine: Engine) -> None:
    with engine.begin() as conn:
        partitions(conn, NOW - timedelta(hours=1))
        add_timings(conn, traffic(NOW - 20 * MIN, 20, 6, "/api/payments/charge", status=502))
        body = {**TEMPLATES["payment_failures"], "notification_channels": []}
        body.pop("description")
        created = service.rule_create(conn, body=body, actor="user:a", role="admin", now=NOW)
        report = evaluate_all(conn, now=NOW, tz=TZ, public_url="http://ui")
        status = conn.execute(
            text("SELECT status FROM alert_instances WHERE alert_configuration_id = :r"),
            {"r": created["id"]},
        ).scalar()
    assert report.errors == [] and status == "firing"


def test_too_few_requests_are_not_a_breach_nor_missing_data(engine: Engine) -> None:
    start = NOW - 30 * MIN
    with engine.begin() as conn:
        partitions(conn, start)
        add_timings(conn, [(NOW - 3 * MIN, "POST", "/api/payments/charge", 502, 900.0)])
        result = backtest(conn, template("payment_failures"), start=start, end=NOW, tz=TZ)
    # one failed charge of one: fewer than min_count (3), so neither firing nor no data
    assert result["fired_count"] == 0
    assert [(e["from_status"], e["to_status"]) for e in result["events"]] == [
        (None, "no_data"),  # before the request
        ("no_data", "resolved"),  # the request: too few to judge, so not a breach
    ]
    assert result["events"][-1]["time"] == NOW - 3 * MIN


def test_anomaly_rate_of_change_and_absence_work_on_a_windowed_signal(engine: Engine) -> None:
    search = "/api/suppliers/search"
    with engine.begin() as conn:
        partitions(conn, NOW - timedelta(weeks=4, hours=2))
        rows = []
        for week in range(1, 5):  # the same hour of past weeks: one request a minute
            rows += traffic(NOW - timedelta(weeks=week, hours=1), 60, 1, search, method="GET")
        rows += traffic(NOW - 60 * MIN, 40, 1, search, method="GET")  # steady, 100 ms ...
        rows += traffic(NOW - 20 * MIN, 10, 6, search, method="GET", ms=300)  # busier, slower
        add_timings(conn, rows)  # ... and nothing in the last 10 minutes
        anomaly = rule({"type": "anomaly", "metric": "api.requests", "aggregation": "count",
                        "direction": "above", "z_threshold": 3})  # fmt: skip
        change = rule({"type": "rate_of_change", "metric": "api.latency_ms", "aggregation": "avg",
                       "operator": "greater_than", "value": 50, "window_minutes": 10})  # fmt: skip
        silence = rule({"type": "absence", "metric": "api.requests", "window_minutes": 5,
                        "filters": {"endpoint": search}})  # fmt: skip
        fired_at = {
            name: [e["time"] for e in fired(conn, r, NOW - 30 * MIN, NOW)]
            for name, r in (("anomaly", anomaly), ("change", change), ("absence", silence))
        }
    assert fired_at["anomaly"] and fired_at["anomaly"][0] <= NOW - 10 * MIN  # 60 + 60 in an hour
    assert fired_at["change"] and NOW - 20 * MIN < fired_at["change"][0] <= NOW - 10 * MIN
    assert fired_at["absence"] == [NOW - 5 * MIN]  # the last request 10 minutes ago, window 5


def test_a_grouped_absence_rule_pages_for_the_one_endpoint_that_fell_silent(
    engine: Engine,
) -> None:
    """Alone in its cycle (no other rule widening the family's read): the endpoint whose
    requests stop is read for two minutes past the window, found silent and fired; the
    one still answering stays quiet. Its read used to be the window alone, so a silent
    group dropped out of it and never paged."""
    with engine.begin() as conn:
        partitions(conn, NOW - timedelta(hours=1))
        rows = traffic(NOW - 20 * MIN, 20, 2, "/api/vendors/search", method="GET")
        rows += traffic(NOW - 20 * MIN, 12, 2, "/api/photos/upload")  # silent the last 8 min
        add_timings(conn, rows)
        body = {"alert_name": "An endpoint fell silent", "severity_level": "high",
                "notification_channels": [],
                "condition_config": {"type": "absence", "metric": "api.requests",
                                     "window_minutes": 5, "group_by": ["endpoint"]}}  # fmt: skip
        created = service.rule_create(conn, body=body, actor="user:a", role="admin", now=NOW)
        for minutes_before in range(10, -1, -1):
            report = evaluate_all(
                conn, now=NOW - minutes_before * MIN, tz=TZ, public_url="http://ui"
            )
            assert report.errors == []
        found = conn.execute(
            text("SELECT alert_key, status, first_triggered_at FROM alert_instances "
                 "WHERE alert_configuration_id = :r"),
            {"r": created["id"]},
        ).all()  # fmt: skip
        replay = backtest(conn, rule_from_row(get_rule(conn, rule_id=created["id"])),
                          start=NOW - 10 * MIN, end=NOW, tz=TZ, step=MIN)  # fmt: skip
    # the last request at 11:51:30, its bucket ending 11:51:40: silent 5 minutes at 11:56:40
    assert [(k, s, t) for k, s, t in found] == [
        ("endpoint=/api/photos/upload", "firing", NOW - 3 * MIN)
    ]
    assert [(e["time"], e["alert_key"]) for e in replay["fired"]] == [
        (NOW - 3 * MIN, "endpoint=/api/photos/upload")
    ]
