"""Pure status rules of health checks: outcomes in, statuses and flips out, `now` explicit.

Statuses as docs/API.md names them: `healthy`, `warning` (failing, retries not yet used up, or a
heartbeat that is late but inside its grace), `critical` (down), `unknown` (never ran, or a
heartbeat never pinged). A check with `retries = 2` goes down on its third failure in a row.
Heartbeats follow Healthchecks.io: up until `period`, late during `grace`, then down; a
`/fail` ping is down at once; a `/start` not followed by a ping within `grace` is down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from monitoring_core.enums import CheckStatus

__all__ = [
    "RETRY_INTERVAL_S",
    "Flip",
    "HeartbeatState",
    "Outcome",
    "Transition",
    "evaluate_http",
    "heartbeat_outcome",
    "next_run_at",
    "transition",
    "uptime_ratio",
]

RETRY_INTERVAL_S = 20  # a failing check is retried sooner than its frequency, to confirm fast


@dataclass(frozen=True)
class Outcome:
    """What one run of a check found."""

    success: bool
    message: str
    response_time_ms: float | None = None
    status: CheckStatus | None = None  # set by heartbeats, whose status is not retry-based


@dataclass(frozen=True)
class Flip:
    from_status: CheckStatus
    to_status: CheckStatus
    reason: str
    is_auto_recovery: bool


@dataclass(frozen=True)
class Transition:
    status: CheckStatus
    consecutive_failures: int
    flip: Flip | None


def _failing_status(failures: int, retries: int) -> CheckStatus:
    return CheckStatus.CRITICAL if failures > retries else CheckStatus.WARNING


def transition(
    status: CheckStatus, consecutive_failures: int, retries: int, outcome: Outcome
) -> Transition:
    """The check's next status after `outcome`, with the flip to record when it changed."""
    if outcome.status is not None:
        new_status = outcome.status
        failures = 0 if outcome.success else consecutive_failures + 1
    elif outcome.success:
        new_status, failures = CheckStatus.HEALTHY, 0
    else:
        failures = consecutive_failures + 1
        new_status = _failing_status(failures, retries)
    if new_status == status:
        return Transition(status, failures, None)
    recovered = status == CheckStatus.CRITICAL and new_status == CheckStatus.HEALTHY
    reason = outcome.message
    if not outcome.success and outcome.status is None and new_status == CheckStatus.CRITICAL:
        reason = f"{outcome.message} ({failures} failures in a row)"
    return Transition(new_status, failures, Flip(status, new_status, reason, recovered))


def next_run_at(now: datetime, frequency_seconds: int, outcome: Outcome) -> datetime:
    """Failing checks come back after RETRY_INTERVAL_S (or their frequency, if shorter)."""
    delay = frequency_seconds
    if not outcome.success:
        delay = min(frequency_seconds, RETRY_INTERVAL_S)
    return now + timedelta(seconds=delay)


def evaluate_http(
    config: dict[str, Any], status_code: int, body: str, elapsed_ms: float
) -> Outcome:
    """An HTTP answer judged against the check's expected status, keyword and latency limit."""
    expected = int(config.get("expected_status", 200))
    if status_code != expected:
        return Outcome(False, f"HTTP {status_code} (expected {expected})", elapsed_ms)
    keyword = config.get("keyword")
    if keyword and str(keyword) not in body:
        return Outcome(False, f"keyword {str(keyword)[:60]!r} not found", elapsed_ms)
    limit = config.get("max_response_time_ms")
    if limit is not None and elapsed_ms > float(limit):
        return Outcome(False, f"answered in {elapsed_ms:.0f} ms (limit {limit} ms)", elapsed_ms)
    return Outcome(True, f"HTTP {status_code} in {elapsed_ms:.0f} ms", elapsed_ms)


@dataclass(frozen=True)
class HeartbeatState:
    last_ping_at: datetime | None
    last_start_at: datetime | None
    last_ping_failed: bool
    period_seconds: float
    grace_seconds: float


def heartbeat_outcome(state: HeartbeatState, now: datetime) -> Outcome:
    """Healthchecks.io's rule: up, late within grace (warning), or down."""
    grace = timedelta(seconds=state.grace_seconds)
    started = state.last_start_at is not None and (
        state.last_ping_at is None or state.last_start_at > state.last_ping_at
    )
    if started and state.last_start_at is not None:
        if now > state.last_start_at + grace:
            return Outcome(
                False, "started but no ping within the grace time", None, CheckStatus.CRITICAL
            )
        running = _ago(now - state.last_start_at)
        return Outcome(True, f"job running, started {running} ago", None, CheckStatus.HEALTHY)
    if state.last_ping_at is None:
        return Outcome(True, "waiting for the first ping", None, CheckStatus.UNKNOWN)
    if state.last_ping_failed:
        return Outcome(False, "the job reported a failure", None, CheckStatus.CRITICAL)
    due = state.last_ping_at + timedelta(seconds=state.period_seconds)
    if now <= due:
        return Outcome(True, "ping received in time", None, CheckStatus.HEALTHY)
    late = _ago(now - state.last_ping_at)
    if now <= due + grace:
        return Outcome(True, f"late: last ping {late} ago", None, CheckStatus.WARNING)
    return Outcome(
        False, f"no ping for {late} (period + grace exceeded)", None, CheckStatus.CRITICAL
    )


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def uptime_ratio(successes: int, total: int) -> float | None:
    """Share of successful runs, or None when there were none (unknown is not 100 %)."""
    return successes / total if total else None
