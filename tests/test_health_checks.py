"""Health check runners and rounds against real local servers and the test database."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url

from monitoring_core.enums import CheckStatus
from monitoring_core.health.custom import register_custom_check
from monitoring_core.health.probes import run_probe
from monitoring_core.health.rules import Outcome
from monitoring_core.health.runner import receive_ping, run_check_now, run_due_checks
from monitoring_core.health.store import create_check, get_check, list_flips, update_check
from monitoring_core.schema import metric_points, metric_series
from tests.least_privilege_support import role_urls


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path
        if path == "/slow":
            time.sleep(1.5)
        status = {"/error": 503, "/missing": 404}.get(path, 200)
        body = b"degraded" if path == "/wrong" else b'{"status": "ok"}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here any more
    return port


@register_custom_check("test_flag")
def _flag(config: dict) -> bool:
    if config.get("explode"):
        raise RuntimeError("flag store unreachable")
    return bool(config.get("up"))


@pytest.mark.parametrize(
    ("path", "extra", "timeout", "success", "fragment"),
    [
        ("/ok", {"keyword": "ok"}, 2.0, True, "HTTP 200"),
        ("/error", {}, 2.0, False, "HTTP 503 (expected 200)"),
        ("/missing", {"expected_status": 404}, 2.0, True, "HTTP 404"),
        ("/wrong", {"keyword": '"ok"'}, 2.0, False, "keyword"),
        ("/slow", {}, 0.3, False, "timed out after 0.3 s"),
        ("/slow", {"max_response_time_ms": 1000}, 3.0, False, "limit 1000 ms"),
    ],
)
def test_it_probes_http_endpoints(
    http_base: str, path: str, extra: dict, timeout: float, success: bool, fragment: str
) -> None:
    outcome = run_probe("http", {"url": http_base + path, **extra}, timeout)
    assert outcome.success is success
    assert fragment in outcome.message
    assert outcome.response_time_ms is not None and outcome.response_time_ms >= 0


def test_it_probes_tcp_ports(http_base: str, closed_port: int) -> None:
    port = int(http_base.rsplit(":", 1)[1])
    assert run_probe("tcp", {"host": "127.0.0.1", "port": port}, 1.0).success
    refused = run_probe("tcp", {"host": "127.0.0.1", "port": closed_port}, 1.0)
    assert not refused.success and "cannot connect" in refused.message


def test_it_reports_a_closed_port_over_http(closed_port: int) -> None:
    outcome = run_probe("http", {"url": f"http://127.0.0.1:{closed_port}/"}, 1.0)
    assert not outcome.success and "cannot connect" in outcome.message


def test_it_probes_the_database(database_url: str) -> None:
    database_url = role_urls(database_url)[1]  # checks never run as a superuser
    assert run_probe("database", {"url": database_url}, 2.0).success
    assert run_probe(
        "database", {"url": database_url, "query": "SELECT count(*) FROM pg_stat_activity"}, 2.0
    ).success
    slow = run_probe("database", {"url": database_url, "query": "SELECT pg_sleep(2)"}, 0.3)
    assert not slow.success and "statement timeout" in slow.message
    write = run_probe("database", {"url": database_url, "query": "CREATE TABLE x (a int)"}, 2.0)
    assert not write.success and "read-only" in write.message
    missing = make_url(database_url).set(database="no_such_db").render_as_string(False)
    bad = run_probe("database", {"url": missing}, 2.0)
    assert not bad.success and "no_such_db" in bad.message


@pytest.mark.parametrize(
    ("config", "success", "fragment"),
    [
        ({"callable": "test_flag", "up": True}, True, "ok"),
        ({"callable": "test_flag", "up": False}, False, "returned False"),
        ({"callable": "test_flag", "explode": True}, False, "flag store unreachable"),
        ({"callable": "nope"}, False, "no custom check named 'nope'"),
    ],
)
def test_it_runs_registered_custom_checks(config: dict, success: bool, fragment: str) -> None:
    outcome = run_probe("custom", config, 1.0)
    assert outcome.success is success and fragment in outcome.message


def test_it_turns_a_bad_config_into_a_failed_run() -> None:
    outcome = run_probe("http", {}, 1.0)
    assert not outcome.success and "KeyError" in outcome.message
    assert run_probe("smoke_signal", {}, 1.0) == Outcome(
        False, "no runner for check type 'smoke_signal'"
    )


def _add(engine: Engine, name: str, check_type: str, config: dict, **fields: object) -> int:
    with engine.begin() as conn:
        row = create_check(
            conn,
            {"check_name": name, "check_type": check_type, "check_config": config, **fields},
        )
    return row.id


def _points(engine: Engine, name: str) -> list[tuple[dict, float]]:
    stmt = (
        select(metric_series.c.dimensions, metric_points.c.value)
        .join(metric_points, metric_points.c.series_id == metric_series.c.id)
        .where(metric_series.c.name == name)
        .order_by(metric_points.c.time)
    )
    with engine.connect() as conn:
        return [(r.dimensions, r.value) for r in conn.execute(stmt)]


def test_it_goes_down_after_its_retries_and_recovers_by_itself(
    engine: Engine, http_base: str, now: datetime
) -> None:
    check_id = _add(
        engine, "bookings api", "http", {"url": http_base + "/error"}, retries=1, service_name="api"
    )
    statuses = []
    for minute in range(3):
        report = run_due_checks(engine, now + timedelta(minutes=minute))
        assert report.checked == 1
        with engine.connect() as conn:
            check = get_check(conn, check_id)
        assert check is not None
        statuses.append(check.status)
    assert statuses == [CheckStatus.WARNING, CheckStatus.CRITICAL, CheckStatus.CRITICAL]
    with engine.begin() as conn:  # the service is fixed: the next run succeeds
        update_check(conn, check_id, {"check_config": {"url": http_base + "/ok"}})
    run_due_checks(engine, now + timedelta(minutes=3))
    with engine.connect() as conn:
        flips = list_flips(conn, since=now - timedelta(hours=1), check_id=check_id)
    assert [(f["from_status"], f["to_status"], f["is_auto_recovery"]) for f in flips] == [
        ("critical", "healthy", True),
        ("warning", "critical", False),
        ("unknown", "warning", False),
    ]
    assert "HTTP 503 (expected 200) (2 failures in a row)" == flips[1]["reason"]
    success = _points(engine, "health_check_success")
    assert [v for _, v in success] == [0.0, 0.0, 0.0, 1.0]
    assert success[0][0] == {
        "check": "bookings api",
        "service": "api",
        "check_type": "http",
        "wedding_critical": "false",
    }
    assert [v for _, v in _points(engine, "health_check_up")] == [1.0, 0.0, 0.0, 1.0]
    assert len(_points(engine, "health_check_response_time_ms")) == 4


def test_it_runs_only_due_checks_and_retries_failures_sooner(
    engine: Engine, http_base: str, closed_port: int, now: datetime
) -> None:
    _add(engine, "ok", "http", {"url": http_base + "/ok"}, check_frequency_seconds=300)
    _add(
        engine,
        "down",
        "tcp",
        {"host": "127.0.0.1", "port": closed_port},
        check_frequency_seconds=300,
    )
    _add(engine, "off", "http", {"url": http_base + "/ok"}, is_enabled=False)
    assert run_due_checks(engine, now).checked == 2
    assert run_due_checks(engine, now + timedelta(seconds=10)).checked == 0
    later = run_due_checks(engine, now + timedelta(seconds=21))
    assert (later.checked, later.failed) == (1, 1)  # the failing one, retried after 20 s
    assert run_due_checks(engine, now + timedelta(seconds=301)).checked == 2  # both due again


def test_it_keeps_a_slow_check_from_delaying_the_others(
    engine: Engine, http_base: str, now: datetime
) -> None:
    _add(engine, "slow", "http", {"url": http_base + "/slow"}, timeout_seconds=3)
    for i in range(20):
        _add(engine, f"fast {i}", "http", {"url": http_base + "/ok"})
    started = time.perf_counter()
    report = run_due_checks(engine, now, max_workers=4)
    assert report.checked == 21 and report.failed == 0
    assert time.perf_counter() - started < 3.0  # fast checks ran beside the slow one


def test_it_judges_heartbeats_from_their_pings(engine: Engine, now: datetime) -> None:
    check_id = _add(
        engine,
        "nightly backup",
        "heartbeat",
        {"period_seconds": 600, "grace_seconds": 120},
        check_frequency_seconds=60,
    )
    with engine.connect() as conn:
        check = get_check(conn, check_id)
    assert check is not None and check.ping_token
    token = check.ping_token
    with engine.begin() as conn:
        assert receive_ping(conn, "wrong-token", "success", now) is None
        run = receive_ping(conn, token, "success", now)
    assert run is not None and run.transition.status == CheckStatus.HEALTHY

    def status_at(minutes: float) -> CheckStatus:
        run_due_checks(engine, now + timedelta(minutes=minutes))
        with engine.connect() as conn:
            found = get_check(conn, check_id)
        assert found is not None
        return found.status

    assert status_at(9) == CheckStatus.HEALTHY
    assert status_at(11) == CheckStatus.WARNING  # late, inside grace
    assert status_at(13) == CheckStatus.CRITICAL  # period + grace exceeded
    with engine.begin() as conn:
        back = receive_ping(conn, token, "success", now + timedelta(minutes=14))
    assert back is not None and back.transition.flip is not None
    assert back.transition.flip.is_auto_recovery
    with engine.begin() as conn:
        failed = receive_ping(conn, token, "fail", now + timedelta(minutes=15))
    assert failed is not None and failed.transition.status == CheckStatus.CRITICAL
    with engine.begin() as conn:
        receive_ping(conn, token, "start", now + timedelta(minutes=16))
    assert status_at(17) == CheckStatus.HEALTHY  # running
    assert status_at(19) == CheckStatus.CRITICAL  # started, no ping within grace
    with engine.connect() as conn:
        reasons = [f["reason"] for f in list_flips(conn, since=now, check_id=check_id)]
    assert reasons[-1] == "ping received"
    assert "no ping for 13 min" in reasons[-3]


def test_it_runs_a_check_now(engine: Engine, http_base: str, now: datetime) -> None:
    check_id = _add(engine, "now", "http", {"url": http_base + "/ok"})
    run = run_check_now(engine, check_id, now)
    assert run is not None and run.outcome.success
    assert run_check_now(engine, 999_999, now) is None


_release = threading.Event()


@register_custom_check("test_hang")
def _hang(config: dict) -> bool:
    _release.wait(timeout=30)  # released by the test: stands for a server that never answers
    return True


def test_it_bounds_a_round_when_a_probe_hangs(engine: Engine, now: datetime) -> None:
    hung = _add(engine, "hangs", "custom", {"callable": "test_hang"})
    fine = _add(engine, "fine", "custom", {"callable": "test_flag", "up": True})
    try:
        started = time.perf_counter()
        report = run_due_checks(engine, now, budget_s=0.5)
        assert time.perf_counter() - started < 5
    finally:
        _release.set()
    assert (report.checked, report.failed) == (2, 1)
    with engine.connect() as conn:
        late = get_check(conn, hung)
        ok = get_check(conn, fine)
    assert late is not None and late.status == CheckStatus.WARNING
    assert ok is not None and ok.status == CheckStatus.HEALTHY
