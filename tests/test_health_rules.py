"""Pure status rules of health checks: retries, flips, heartbeats, HTTP judgement, uptime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitoring_core.enums import CheckStatus
from monitoring_core.health.rules import (
    RETRY_INTERVAL_S,
    HeartbeatState,
    Outcome,
    evaluate_http,
    heartbeat_outcome,
    next_run_at,
    transition,
    uptime_ratio,
)

NOW = datetime(2026, 6, 6, 12, 0, tzinfo=UTC)
H, W, C, U = CheckStatus.HEALTHY, CheckStatus.WARNING, CheckStatus.CRITICAL, CheckStatus.UNKNOWN
OK = Outcome(True, "HTTP 200 in 5 ms", 5.0)
BAD = Outcome(False, "HTTP 503 (expected 200)", 7.0)


@pytest.mark.parametrize(
    ("status", "failures", "retries", "outcome", "to", "to_failures", "flip_to", "recovery"),
    [
        (U, 0, 2, OK, H, 0, H, False),  # first success is a flip unknown -> healthy
        (H, 0, 2, OK, H, 0, None, False),
        (H, 0, 2, BAD, W, 1, W, False),  # first failure: retrying
        (W, 1, 2, BAD, W, 2, None, False),
        (W, 2, 2, BAD, C, 3, C, False),  # third failure in a row with 2 retries: down
        (C, 3, 2, BAD, C, 4, None, False),
        (C, 4, 2, OK, H, 0, H, True),  # recovered on its own
        (W, 1, 2, OK, H, 0, H, False),  # a blip is not a recovery from down
        (H, 0, 0, BAD, C, 1, C, False),  # no retries: down at once
        (U, 0, 1, BAD, W, 1, W, False),
    ],
)
def test_it_moves_through_retries_to_down_and_back(
    status: CheckStatus,
    failures: int,
    retries: int,
    outcome: Outcome,
    to: CheckStatus,
    to_failures: int,
    flip_to: CheckStatus | None,
    recovery: bool,
) -> None:
    moved = transition(status, failures, retries, outcome)
    assert (moved.status, moved.consecutive_failures) == (to, to_failures)
    if flip_to is None:
        assert moved.flip is None
    else:
        assert moved.flip is not None
        assert (moved.flip.from_status, moved.flip.to_status) == (status, flip_to)
        assert moved.flip.is_auto_recovery is recovery


def test_it_says_why_a_check_went_down() -> None:
    moved = transition(W, 2, 2, BAD)
    assert moved.flip is not None
    assert moved.flip.reason == "HTTP 503 (expected 200) (3 failures in a row)"


def test_it_takes_a_heartbeats_status_as_given() -> None:
    late = Outcome(True, "late", None, W)
    moved = transition(H, 0, 2, late)
    assert moved.status == W and moved.flip is not None and moved.flip.reason == "late"


def test_it_retries_failing_checks_sooner() -> None:
    assert next_run_at(NOW, 300, OK) == NOW + timedelta(seconds=300)
    assert next_run_at(NOW, 300, BAD) == NOW + timedelta(seconds=RETRY_INTERVAL_S)
    assert next_run_at(NOW, 10, BAD) == NOW + timedelta(seconds=10)


@pytest.mark.parametrize(
    ("config", "status", "body", "elapsed", "success", "message"),
    [
        ({"url": "u"}, 200, "", 12.0, True, "HTTP 200 in 12 ms"),
        ({"url": "u"}, 503, "", 12.0, False, "HTTP 503 (expected 200)"),
        ({"url": "u", "expected_status": 204}, 204, "", 3.0, True, "HTTP 204 in 3 ms"),
        ({"url": "u", "keyword": "ok"}, 200, '{"status":"ok"}', 3.0, True, "HTTP 200 in 3 ms"),
        ({"url": "u", "keyword": "ok"}, 200, "degraded", 3.0, False, "keyword 'ok' not found"),
        (
            {"url": "u", "max_response_time_ms": 2000},
            200,
            "",
            2500.0,
            False,
            "answered in 2500 ms (limit 2000 ms)",
        ),
        ({"url": "u", "max_response_time_ms": 2000}, 200, "", 1999.0, True, "HTTP 200 in 1999 ms"),
    ],
)
def test_it_judges_http_answers(
    config: dict, status: int, body: str, elapsed: float, success: bool, message: str
) -> None:
    outcome = evaluate_http(config, status, body, elapsed)
    assert (outcome.success, outcome.message, outcome.response_time_ms) == (
        success,
        message,
        elapsed,
    )


def _hb(ping: float | None, start: float | None = None, failed: bool = False) -> HeartbeatState:
    """A heartbeat with period 10 min and grace 5 min; times in minutes before NOW."""

    def at(minutes: float | None) -> datetime | None:
        return None if minutes is None else NOW - timedelta(minutes=minutes)

    return HeartbeatState(at(ping), at(start), failed, period_seconds=600, grace_seconds=300)


@pytest.mark.parametrize(
    ("state", "status", "fragment"),
    [
        (_hb(None), U, "waiting for the first ping"),
        (_hb(1), H, "in time"),
        (_hb(10), H, "in time"),  # exactly at the period
        (_hb(11), W, "late: last ping 11 min ago"),
        (_hb(15), W, "late"),  # the last second of grace
        (_hb(15.1), C, "no ping for 15 min"),
        (_hb(120 * 60), C, "no ping for 120 h"),
        (_hb(1, failed=True), C, "reported a failure"),
        (_hb(20, start=2), H, "running, started 2 min ago"),  # Healthchecks' "started"
        (_hb(1, start=6), H, "in time"),  # start before the last ping: finished
        (_hb(8, start=6), C, "started but no ping"),  # started 6 min ago, grace 5 min
        (_hb(None, start=4), H, "job running, started 4 min ago"),
    ],
)
def test_it_follows_healthchecks_heartbeat_rules(
    state: HeartbeatState, status: CheckStatus, fragment: str
) -> None:
    outcome = heartbeat_outcome(state, NOW)
    assert outcome.status == status
    assert fragment in outcome.message
    assert outcome.success is (status != C)


@pytest.mark.parametrize(
    ("successes", "total", "expected"), [(0, 0, None), (5, 10, 0.5), (10, 10, 1.0), (0, 3, 0.0)]
)
def test_it_computes_uptime(successes: int, total: int, expected: float | None) -> None:
    assert uptime_ratio(successes, total) == expected
