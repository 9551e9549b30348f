"""The watcher watched: heartbeat pings to a real local receiver, the worker-down and
no-channel banners, and a job that keeps failing raising a self-alert shown on Health."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import Engine, create_engine, insert, select
from streamlit.testing.v1 import AppTest

from jobs import watch as watch_jobs
from jobs.registry import Job, find_job
from jobs.worker import Worker
from monitoring_core.config import ConfigError, load_settings
from monitoring_core.enums import Role
from monitoring_core.flows.job_watch import JOB_RULE_NAME, watch_failing_jobs
from monitoring_core.health.watch import (
    JOB_FAILING_AFTER,
    consecutive_failures,
    failing_jobs,
    heartbeat_ping_url,
    worker_down,
)
from monitoring_core.schema import (
    alert_instances,
    alert_rules,
    job_runs,
    notification_channels,
    notification_outbox,
    worker_heartbeats,
)

AppFactory = Callable[[Role | None], AppTest]
NOW = datetime(2026, 6, 10, 13, 0, tzinfo=UTC)
HEARTBEAT = "/ping/5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"


# ---------------------------------------------------------------- pure rules
@pytest.mark.parametrize(
    ("last_seen", "down"),
    [
        (None, True),
        (NOW - timedelta(seconds=5), False),
        (NOW - timedelta(minutes=2), False),
        (NOW - timedelta(minutes=2, seconds=1), True),
        (NOW - timedelta(hours=3), True),
    ],
)
def test_it_calls_the_worker_down_after_two_minutes(last_seen: datetime | None, down: bool) -> None:
    assert worker_down(last_seen, NOW) is down


@pytest.mark.parametrize(
    ("oks", "count"),
    [([], 0), ([True, False, False], 0), ([False, False, True, False], 2), ([False] * 7, 7)],
)
def test_it_counts_failures_since_the_newest_success(oks: list[bool], count: int) -> None:
    assert consecutive_failures(oks) == count


@pytest.mark.parametrize(
    ("url", "failing", "expected"),
    [
        ("https://hc-ping.com/abc", False, "https://hc-ping.com/abc"),
        ("https://hc-ping.com/abc", True, "https://hc-ping.com/abc/fail"),
        ("https://hc-ping.com/abc/", True, "https://hc-ping.com/abc/fail"),
        (
            "http://hc.local/ping/key/slug?create=1",
            True,
            "http://hc.local/ping/key/slug/fail?create=1",
        ),
    ],
)
def test_it_pings_fail_the_healthchecks_way(url: str, failing: bool, expected: str) -> None:
    assert heartbeat_ping_url(url, failing=failing) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"MONITORING_HEARTBEAT_URL": "https://hc-ping.com/abc"}, "https://hc-ping.com/abc"),
        ({"MONITORING_HEARTBEAT_URL": "ftp://hc/abc"}, ConfigError),
    ],
)
def test_it_reads_the_heartbeat_url(env: dict[str, str], expected: object) -> None:
    if expected is ConfigError:
        with pytest.raises(ConfigError, match="MONITORING_HEARTBEAT_URL"):
            load_settings(env)
    else:
        assert load_settings(env).heartbeat_url == expected


# ---------------------------------------------------------------- the outbound ping
@pytest.fixture
def receiver() -> Iterator[tuple[str, list[str], list[int]]]:
    """A real local HTTP server: (base URL, paths it was sent, the status it answers with)."""
    paths: list[str] = []
    status = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            self.send_response(status[0])
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", paths, status
    server.shutdown()
    server.server_close()


def _fail_runs(engine: Engine, job: str, count: int, now: datetime) -> None:
    rows = [
        {
            "job": job,
            "started_at": now - timedelta(minutes=count - i),
            "duration_ms": 1.0,
            "ok": False,
            "error": f"OperationalError: try {i}",
        }
        for i in range(count)
    ]
    with engine.begin() as conn:
        conn.execute(insert(job_runs), rows)


def test_it_pings_the_heartbeat_url(
    engine: Engine, receiver: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, paths, _ = receiver
    monkeypatch.setenv("MONITORING_HEARTBEAT_URL", base + HEARTBEAT)
    summary = watch_jobs.ping_heartbeat(engine, NOW)
    assert paths == [HEARTBEAT]
    assert summary.startswith("pinged 127.0.0.1:") and "ok, HTTP 200" in summary
    assert HEARTBEAT not in summary  # the path is the check's secret


def test_it_pings_fail_while_a_job_keeps_failing(
    engine: Engine, receiver: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, paths, _ = receiver
    monkeypatch.setenv("MONITORING_HEARTBEAT_URL", base + HEARTBEAT)
    _fail_runs(engine, "rollups", JOB_FAILING_AFTER, NOW)
    assert "fail (rollups)" in watch_jobs.ping_heartbeat(engine, NOW)
    assert paths == [HEARTBEAT + "/fail"]


def test_it_pings_fail_when_the_database_is_unreachable(
    receiver: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, paths, _ = receiver
    monkeypatch.setenv("MONITORING_HEARTBEAT_URL", base + HEARTBEAT)
    nowhere = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        assert "fail (database unreachable)" in watch_jobs.ping_heartbeat(nowhere, NOW)
    finally:
        nowhere.dispose()
    assert paths == [HEARTBEAT + "/fail"]


def test_it_logs_a_failed_ping_and_carries_on(
    engine: Engine,
    receiver: tuple,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    base, paths, status = receiver
    status[0] = 503
    monkeypatch.setenv("MONITORING_HEARTBEAT_URL", base + HEARTBEAT)
    assert "failed: HTTPError" in watch_jobs.ping_heartbeat(engine, NOW)
    assert paths == [HEARTBEAT] and "heartbeat ping" in caplog.text


def test_it_does_nothing_without_a_heartbeat_url(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MONITORING_HEARTBEAT_URL", raising=False)
    assert "not set" in watch_jobs.ping_heartbeat(engine, NOW)


def test_it_runs_the_watch_jobs_every_minute() -> None:
    assert find_job("heartbeat_ping").every_seconds == 60
    assert not find_job("heartbeat_ping").singleton  # any live worker may ping
    assert find_job("job_watch").every_seconds == 60


# ---------------------------------------------------------------- failing jobs
def _channel(engine: Engine, *, enabled: bool = True) -> int:
    with engine.begin() as conn:
        return conn.execute(
            insert(notification_channels)
            .values(name="ops", url="json://127.0.0.1:9/x", is_enabled=enabled)
            .returning(notification_channels.c.id)
        ).scalar_one()


def _self_alerts(engine: Engine) -> list[tuple[str, str]]:
    query = (
        select(alert_instances.c.alert_key, alert_instances.c.status)
        .join(alert_rules, alert_rules.c.id == alert_instances.c.alert_configuration_id)
        .where(alert_rules.c.alert_name == JOB_RULE_NAME)
    )
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


def test_it_raises_a_self_alert_for_a_job_that_keeps_failing(
    engine: Engine, request: pytest.FixtureRequest
) -> None:
    channel = _channel(engine)

    def broken(_engine: Engine, _now: datetime) -> str:
        raise RuntimeError("the rollup table is gone")

    job = Job("rollups", broken, 15)
    worker = Worker(engine, [job], {"rollups": 15.0})
    # The worker leads "rollups" through a session advisory lock on a connection of the
    # session's engine: give it back, or a later test's worker finds the job led by this one.
    request.addfinalizer(worker.locks.release_all)
    for _ in range(JOB_FAILING_AFTER - 1):
        worker.run_job(job, force=True)
    with engine.begin() as conn:
        assert watch_failing_jobs(conn, NOW, public_url="http://ui").fired == []
    worker.run_job(job, force=True)  # the fifth failure in a row

    with engine.begin() as conn:
        report = watch_failing_jobs(conn, NOW, public_url="http://ui")
        again = watch_failing_jobs(conn, NOW + timedelta(minutes=1), public_url="http://ui")
        failing = failing_jobs(conn)
        outbox = conn.execute(
            select(notification_outbox.c.channel_id, notification_outbox.c.body)
        ).all()
    assert report.fired == ["rollups"] and again.fired == []  # one alert, one page
    assert _self_alerts(engine) == [("job:rollups", "firing")]
    assert [(c, "the rollup table is gone" in body) for c, body in outbox] == [(channel, True)]
    assert failing[0]["failures"] == JOB_FAILING_AFTER
    assert failing[0]["last_error"] == "RuntimeError: the rollup table is gone"

    worker.jobs[0] = fixed = Job("rollups", lambda _e, _n: "ok", 15)
    worker.run_job(fixed, force=True)
    with engine.begin() as conn:
        assert watch_failing_jobs(conn, NOW + timedelta(minutes=2), public_url="").resolved == [
            "rollups"
        ]
    assert _self_alerts(engine) == [("job:rollups", "resolved")]


# ---------------------------------------------------------------- banners and the Health page
def _beat(engine: Engine, last_seen: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(worker_heartbeats).values(
                worker_id="w1", hostname="h", pid=1, started_at=last_seen, last_seen=last_seen
            )
        )


def _warnings(at: AppTest) -> str:
    return " ".join(str(w.value) for w in at.warning)


def test_it_shows_the_worker_down_banner_on_every_page(
    engine: Engine, logged_in_app: AppFactory, now: datetime
) -> None:
    _channel(engine)
    _beat(engine, now - timedelta(minutes=3))
    at = logged_in_app(Role.VIEWER).run()
    assert not at.exception
    assert "The worker was last seen 3 min ago" in _warnings(at)
    for page in ("pages/alerts.py", "pages/resources.py"):
        at.switch_page(page).run()
        assert not at.exception
        assert "The worker was last seen 3 min ago" in _warnings(at), page
    assert "notification channel" not in _warnings(at)  # one is enabled


def test_it_shows_no_worker_banner_while_the_worker_beats(
    engine: Engine, logged_in_app: AppFactory, now: datetime
) -> None:
    _channel(engine)
    _beat(engine, now - timedelta(seconds=30))
    at = logged_in_app(Role.VIEWER).run()
    assert not at.exception
    assert "worker" not in _warnings(at) and "notification channel" not in _warnings(at)


def test_it_says_on_every_page_that_no_channel_can_be_reached(
    engine: Engine, logged_in_app: AppFactory, now: datetime
) -> None:
    _channel(engine, enabled=False)  # the demo's situation: its only channel is disabled
    _beat(engine, now)
    at = logged_in_app(Role.VIEWER).run()
    assert "No notification channel is enabled" in _warnings(at)
    at.switch_page("pages/incidents.py").run()
    assert not at.exception
    assert "No notification channel is enabled" in _warnings(at)


def test_it_lists_failing_jobs_with_their_last_error_on_health(
    engine: Engine, logged_in_app: AppFactory, now: datetime
) -> None:
    _fail_runs(engine, "collect_database", JOB_FAILING_AFTER + 1, now)
    at = logged_in_app(Role.VIEWER).run()
    at.switch_page("pages/health.py").run()
    assert not at.exception
    assert any("1 worker job(s) failed" in e.value for e in at.error)
    table = next(df.value for df in at.dataframe if "Last error" in df.value.columns)
    assert list(table["Job"]) == ["collect_database"]
    assert table["Failed runs in a row"].iloc[0] == JOB_FAILING_AFTER + 1
    assert table["Last error"].iloc[0] == f"OperationalError: try {JOB_FAILING_AFTER}"
    assert not any("+00:00" in str(t) for t in table["Last failure"])  # `today 14:03:05`
