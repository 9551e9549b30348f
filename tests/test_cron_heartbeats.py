"""Cron schedules of heartbeats and paused checks: decisions with `now` passed in, then the
worker's rounds on a real database (issue 18.5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from sqlalchemy import Engine, select

from monitoring_core.config_io import ConfigInvalid, apply_config, export_config
from monitoring_core.enums import CheckStatus
from monitoring_core.health.rules import (
    HeartbeatState,
    cron_error,
    describe_schedule,
    duration_words,
    heartbeat_outcome,
    next_expected_ping,
    ping_due_at,
    status_bands,
)
from monitoring_core.health.runner import receive_ping, run_due_checks
from monitoring_core.health.service import pause_check, resume_check, save_check
from monitoring_core.health.store import create_check, get_check
from monitoring_core.health.validate import validate_check
from monitoring_core.ingest.validate import InvalidItems
from monitoring_core.partitions import ensure_partitions
from monitoring_core.schema import audit_log, health_check_flips, health_check_results

H, W, C, U = CheckStatus.HEALTHY, CheckStatus.WARNING, CheckStatus.CRITICAL, CheckStatus.UNKNOWN
HOUR = 3600.0


def _cron(schedule: str, last_ping: datetime | None, *, tz: str, grace: float) -> HeartbeatState:
    return HeartbeatState(last_ping, None, False, 600, grace, schedule=schedule, tz=tz)


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# London's clocks go forward at 01:00 UTC on 29 March 2026 (01:30 local does not exist that
# night: cron runs the job at 02:00 BST = 01:00 UTC) and back at 01:00 UTC on 25 October (01:30
# local happens twice: the first, BST, is 00:30 UTC).
SPRING_PING = _utc(2026, 3, 28, 1, 31)  # 01:31 GMT, the night before
AUTUMN_PING = _utc(2026, 10, 24, 0, 31)  # 01:31 BST, the night before


@pytest.mark.parametrize(
    ("last_ping", "now", "status", "fragment"),
    [
        (SPRING_PING, _utc(2026, 3, 29, 0, 59), H, "in time"),
        # Due at 01:00 UTC: late at 01:10 (a schedule read in UTC would still say in time).
        (SPRING_PING, _utc(2026, 3, 29, 1, 10), W, "late"),
        (SPRING_PING, _utc(2026, 3, 29, 2, 0), W, "late"),  # the last instant of the hour's grace
        (SPRING_PING, _utc(2026, 3, 29, 2, 1), C, "schedule + grace exceeded"),
        (AUTUMN_PING, _utc(2026, 10, 25, 0, 29), H, "in time"),
        (AUTUMN_PING, _utc(2026, 10, 25, 0, 45), W, "late"),  # due at the first 01:30
        (AUTUMN_PING, _utc(2026, 10, 25, 1, 31), C, "no ping for"),
    ],
)
def test_it_decides_a_london_nightly_job_across_dst(
    last_ping: datetime, now: datetime, status: CheckStatus, fragment: str
) -> None:
    state = _cron("30 1 * * *", last_ping, tz="Europe/London", grace=HOUR)
    outcome = heartbeat_outcome(state, now)
    assert (outcome.status, outcome.success) == (status, status != C)
    assert fragment in outcome.message


def test_it_expects_the_next_ping_at_the_schedules_next_instant() -> None:
    spring = _cron("30 1 * * *", SPRING_PING, tz="Europe/London", grace=HOUR)
    assert ping_due_at(spring) == _utc(2026, 3, 29, 1, 0)  # 02:00 BST
    autumn = _cron("30 1 * * *", AUTUMN_PING, tz="Europe/London", grace=HOUR)
    assert ping_due_at(autumn) == _utc(2026, 10, 25, 0, 30)
    # A job that pings at 03:04 for its 03:00 run is due at 03:00 the next day, not 03:04.
    daily = _cron("0 3 * * *", _utc(2026, 6, 2, 3, 4), tz="UTC", grace=HOUR)
    assert ping_due_at(daily) == _utc(2026, 6, 3, 3, 0)
    assert heartbeat_outcome(daily, _utc(2026, 6, 3, 2, 59)).status == H
    assert heartbeat_outcome(daily, _utc(2026, 6, 3, 3, 30)).status == W  # late, not down
    assert heartbeat_outcome(daily, _utc(2026, 6, 3, 4, 1)).status == C  # down


def test_it_waits_for_the_first_ping_of_a_cron_check() -> None:
    never = _cron("*/15 * * * *", None, tz="UTC", grace=300)
    now = _utc(2026, 6, 2, 10, 7)
    assert heartbeat_outcome(never, now + timedelta(days=30)).status == U  # never down
    assert next_expected_ping(never, now) == _utc(2026, 6, 2, 10, 15)
    simple = HeartbeatState(None, None, False, 600, 60)
    assert next_expected_ping(simple, now) is None  # a period check: any time
    pinged = HeartbeatState(now, None, False, 600, 60)
    assert next_expected_ping(pinged, now + timedelta(hours=1)) == now + timedelta(minutes=10)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"schedule": "0 3 * *"}, "check_config.schedule"),  # four fields
        ({"schedule": "61 3 * * *"}, "check_config.schedule"),
        ({"schedule": "0 0 30 2 *"}, "check_config.schedule"),  # 30 February never comes
        ({"schedule": 3}, "check_config.schedule"),
        ({"schedule": "0 3 * * *", "period_seconds": 60}, "check_config.schedule"),
        ({"schedule": "0 3 * * *", "tz": "Mars/Olympus"}, "check_config.tz"),
        ({"schedule": "0 3 * * *", "grace_seconds": -1}, "check_config.grace_seconds"),
    ],
)
def test_it_refuses_bad_schedules(config: dict, field: str) -> None:
    body = {"check_name": "job", "check_type": "heartbeat", "check_config": config}
    with pytest.raises(InvalidItems) as caught:
        validate_check(body)
    assert [e.field for e in caught.value.errors] == [field]


def test_it_accepts_and_describes_schedules() -> None:
    cron = {"schedule": "0 3 * * 1-5", "tz": "Europe/London", "grace_seconds": 5400}
    body = {"check_name": "job", "check_type": "heartbeat", "check_config": cron}
    assert validate_check(body)["check_config"] == cron
    assert cron_error("0 3 * * 1-5") is None
    assert describe_schedule(cron) == "cron 0 3 * * 1-5 (Europe/London), 1 h 30 min grace"
    simple = {"period_seconds": 86_400, "grace_seconds": 600}
    assert describe_schedule(simple) == "every 1 d, 10 min grace"


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(0.4, "0 s"), (45, "45 s"), (90, "1 min 30 s"), (720, "12 min"), (5400, "1 h 30 min")]
    + [(7200, "2 h"), (86_400 * 2 + 3600 * 4 + 59, "2 d 4 h")],
)
def test_it_says_durations_in_words(seconds: float, words: str) -> None:
    assert duration_words(seconds) == words


def test_it_draws_status_bands_from_flips() -> None:
    start, end = _utc(2026, 6, 2, 0, 0), _utc(2026, 6, 3, 0, 0)
    flips = [
        (_utc(2026, 6, 1, 23, 0), "healthy"),  # before the range: ignored (it is `initial`)
        (_utc(2026, 6, 2, 3, 0), "critical"),
        (_utc(2026, 6, 2, 3, 0), "critical"),
        (_utc(2026, 6, 2, 4, 30), "healthy"),
        (_utc(2026, 6, 2, 9, 0), "paused"),
    ]
    assert status_bands("healthy", flips, start, end) == [
        (start, _utc(2026, 6, 2, 3, 0), "healthy"),
        (_utc(2026, 6, 2, 3, 0), _utc(2026, 6, 2, 4, 30), "critical"),
        (_utc(2026, 6, 2, 4, 30), _utc(2026, 6, 2, 9, 0), "healthy"),
        (_utc(2026, 6, 2, 9, 0), end, "paused"),
    ]
    assert status_bands(None, [], start, end) == [(start, end, "unknown")]


def _heartbeat(engine: Engine, config: dict, *, around: datetime) -> tuple[int, str]:
    """A heartbeat check, with metric_points partitions for the days its points fall on."""
    with engine.begin() as conn:
        ensure_partitions(
            conn, start=around, end=around + timedelta(days=2), tables=("metric_points",)
        )
        row = create_check(
            conn,
            {"check_name": "nightly export", "check_type": "heartbeat", "check_config": config},
        )
    assert row.ping_token
    return row.id, row.ping_token


def _status(engine: Engine, check_id: int, at: datetime) -> CheckStatus:
    run_due_checks(engine, at)
    with engine.connect() as conn:
        found = get_check(conn, check_id)
    assert found is not None
    return found.status


def test_the_worker_judges_a_cron_heartbeat(engine: Engine) -> None:
    config = {"schedule": "30 1 * * *", "tz": "Europe/London", "grace_seconds": HOUR}
    check_id, token = _heartbeat(engine, config, around=SPRING_PING)
    with engine.begin() as conn:
        receive_ping(conn, token, "success", SPRING_PING)
    assert _status(engine, check_id, _utc(2026, 3, 29, 0, 59)) == H
    assert _status(engine, check_id, _utc(2026, 3, 29, 1, 10)) == W
    assert _status(engine, check_id, _utc(2026, 3, 29, 2, 1)) == C


def test_a_paused_check_is_not_judged_and_a_ping_resumes_it(engine: Engine) -> None:
    t0 = _utc(2026, 6, 2, 10, 0)
    check_id, token = _heartbeat(engine, {"period_seconds": 600, "grace_seconds": 60}, around=t0)
    with engine.begin() as conn:
        receive_ping(conn, token, "success", t0)
        paused = pause_check(conn, check_id, actor="user:ann", now=t0 + timedelta(minutes=1))
        again = pause_check(conn, check_id, actor="user:ann", now=t0 + timedelta(minutes=2))
    assert paused is not None and paused.status == CheckStatus.PAUSED
    assert again is not None and again.paused_at == paused.paused_at  # no change, no audit
    # Hours past period + grace: a paused check is neither late nor down, and records nothing.
    assert _status(engine, check_id, t0 + timedelta(hours=5)) == CheckStatus.PAUSED
    with engine.connect() as conn:
        results = conn.execute(select(health_check_results.c.time)).scalars().all()
    assert results == [t0]  # the first ping's result only
    with engine.begin() as conn:  # the job runs again: its ping resumes the check
        run = receive_ping(conn, token, "success", t0 + timedelta(hours=6))
    assert run is not None and run.transition.status == H
    assert run.transition.flip is not None and run.transition.flip.from_status == "paused"
    with engine.connect() as conn:
        audited = conn.execute(
            select(audit_log.c.actor, audit_log.c.action).order_by(audit_log.c.id)
        ).all()
        flips = conn.execute(
            select(health_check_flips.c.to_status).order_by(health_check_flips.c.id)
        ).scalars()
        assert list(flips) == ["healthy", "paused", "healthy"]
    assert [tuple(a) for a in audited] == [
        ("user:ann", "health_check.pause"),
        ("system:heartbeat", "health_check.resume"),
    ]


def test_a_resumed_heartbeat_waits_for_its_next_ping(engine: Engine) -> None:
    t0 = _utc(2026, 6, 2, 10, 0)
    check_id, token = _heartbeat(engine, {"period_seconds": 600, "grace_seconds": 60}, around=t0)
    with engine.begin() as conn:
        receive_ping(conn, token, "success", t0)
        pause_check(conn, check_id, actor="user:ann", now=t0)
        resumed = resume_check(conn, check_id, actor="user:bob", now=t0 + timedelta(hours=3))
    assert resumed is not None and resumed.status == U and resumed.paused_at is None
    # The ping before the pause does not count: unknown, not down, until the job pings again.
    assert _status(engine, check_id, t0 + timedelta(hours=4)) == U
    with engine.begin() as conn:
        receive_ping(conn, token, "success", t0 + timedelta(hours=4, minutes=1))
    assert _status(engine, check_id, t0 + timedelta(hours=4, minutes=5)) == H
    assert _status(engine, check_id, t0 + timedelta(hours=5)) == C


def test_config_export_and_apply_carry_the_schedule(engine: Engine) -> None:
    """`schedule`/`tz` live in check_config, so `config export/apply` carries them; pausing is
    operational state (like a silence) and is neither exported nor changed by an apply."""
    t0 = _utc(2026, 6, 2, 10, 0)
    cron = {"schedule": "0 3 * * *", "tz": "Europe/London", "grace_seconds": 3600}
    body = {"check_name": "nightly export", "check_type": "heartbeat", "check_config": cron}
    with engine.begin() as conn:
        row = save_check(conn, body, check_id=None, actor="user:ann", now=t0)
        assert row is not None
        pause_check(conn, row.id, actor="user:ann", now=t0)
        exported, _ = export_config(conn, now=t0)
    item = yaml.safe_load(exported)["health_checks"][0]
    assert item["check_config"] == cron and "paused_at" not in item
    doc = yaml.safe_load(exported)
    doc["health_checks"][0]["check_config"]["schedule"] = "30 2 * * *"
    with engine.begin() as conn:
        changes = apply_config(conn, yaml.safe_dump(doc), env={}, actor="user:ann", now=t0)
        assert [str(c) for c in changes] == ["~ health_checks 'nightly export': check_config"]
        found = get_check(conn, row.id)
    assert found is not None and found.check_config["schedule"] == "30 2 * * *"
    assert found.status == CheckStatus.PAUSED  # still paused: an apply changes configuration
    doc["health_checks"][0]["check_config"]["schedule"] = "30 2 * *"
    with pytest.raises(ConfigInvalid, match="check_config.schedule"), engine.begin() as conn:
        apply_config(conn, yaml.safe_dump(doc), env={}, actor="user:ann", now=t0)
