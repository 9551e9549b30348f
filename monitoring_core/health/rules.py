"""Pure status rules of health checks: outcomes in, statuses and flips out, `now` explicit.

Statuses as docs/API.md names them: `healthy`, `warning` (failing, retries not yet used up, or a
heartbeat that is late but inside its grace), `critical` (down), `unknown` (never ran, or a
heartbeat never pinged). A check with `retries = 2` goes down on its third failure in a row.
Heartbeats follow Healthchecks.io: up until the next ping is due, late during `grace`, then
down; a `/fail` ping is down at once; a `/start` not followed by a ping within `grace` is down.
The next ping is due `period` after the last one, or, with a cron `schedule` (read in its
`tz`), at the schedule's first instant after the last ping: a job pinging at 03:04 for its
`0 3 * * *` run is due again at 03:00 tomorrow, local time, across DST changes (cronsim's
rules: an instant skipped by the clock moving forward runs at the first minute after it, a
repeated hour runs once). A heartbeat never pinged waits (unknown) however old it is.
A paused check (`paused`) is not run, judged or alerted on; see health/service.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from monitoring_core.enums import CheckStatus

__all__ = [
    "RETRY_INTERVAL_S",
    "Flip",
    "HeartbeatState",
    "Outcome",
    "Transition",
    "cron_error",
    "cron_next",
    "describe_schedule",
    "duration_words",
    "evaluate_http",
    "heartbeat_outcome",
    "next_expected_ping",
    "next_run_at",
    "ping_due_at",
    "status_bands",
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
    schedule: str | None = None  # a cron expression; then `period_seconds` is not used
    tz: str = "UTC"  # the zone the cron expression is read in


def cron_next(expression: str, tz: str, after: datetime) -> datetime:
    """The schedule's first instant after `after` (UTC), read in the zone `tz`."""
    local = after.astimezone(ZoneInfo(tz))
    return next(iter(CronSim(expression, local))).astimezone(UTC)


def cron_error(expression: object) -> str | None:
    """Why `expression` is not a usable cron expression, or None when it is."""
    if not isinstance(expression, str) or not expression.strip():
        return "must be a cron expression such as '0 3 * * *'"
    if len(expression.split()) != 5:
        return "must have 5 fields: minute hour day-of-month month day-of-week"
    try:
        cron_next(expression, "UTC", datetime(2000, 1, 1, tzinfo=UTC))
    except (CronSimError, StopIteration) as exc:
        return f"not a valid cron expression: {str(exc) or 'it never matches'}"
    return None


def ping_due_at(state: HeartbeatState) -> datetime | None:
    """When the ping after the last one is due (None before the first ping)."""
    if state.last_ping_at is None:
        return None
    if state.schedule:
        return cron_next(state.schedule, state.tz, state.last_ping_at)
    return state.last_ping_at + timedelta(seconds=state.period_seconds)


def next_expected_ping(state: HeartbeatState, now: datetime) -> datetime | None:
    """When the next ping is expected, for people: the due time (past when overdue); before
    the first ping a cron schedule's next instant, a period check's None (any time)."""
    due = ping_due_at(state)
    if due is None and state.schedule:
        return cron_next(state.schedule, state.tz, now)
    return due


def describe_schedule(config: dict[str, Any]) -> str:
    """A heartbeat's schedule in words: `every 10 min, 2 min grace`."""
    grace = duration_words(float(config.get("grace_seconds", 60)))
    if config.get("schedule"):
        return f"cron {config['schedule']} ({config.get('tz') or 'UTC'}), {grace} grace"
    return f"every {duration_words(float(config.get('period_seconds', 600)))}, {grace} grace"


def duration_words(seconds: float) -> str:
    """`45 s`, `12 min`, `1 h 30 min`, `2 d 4 h`: two units at most."""
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    minutes, hours, days = total // 60, total // 3600, total // 86_400
    if total < 3600:
        return f"{minutes} min" + (f" {total % 60} s" if total % 60 and minutes < 10 else "")
    if total < 86_400:
        return f"{hours} h" + (f" {minutes % 60} min" if minutes % 60 else "")
    return f"{days} d" + (f" {hours % 24} h" if hours % 24 else "")


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
    due = ping_due_at(state)
    assert due is not None
    if now <= due:
        return Outcome(True, "ping received in time", None, CheckStatus.HEALTHY)
    late = _ago(now - state.last_ping_at)
    if now <= due + grace:
        return Outcome(True, f"late: last ping {late} ago", None, CheckStatus.WARNING)
    exceeded = "schedule + grace" if state.schedule else "period + grace"
    return Outcome(False, f"no ping for {late} ({exceeded} exceeded)", None, CheckStatus.CRITICAL)


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def status_bands(
    initial: str | None,
    flips: list[tuple[datetime, str]],
    start: datetime,
    end: datetime,
) -> list[tuple[datetime, datetime, str]]:
    """The status timeline over [start, end): (from, to, status) bands, from the status before
    `start` (None: unknown) and the flips (time, new status) oldest first; adjacent bands of
    the same status are merged."""
    bands: list[tuple[datetime, datetime, str]] = []
    status, since = initial or CheckStatus.UNKNOWN.value, start
    for at, to_status in flips:
        if not start <= at < end:
            continue
        if at > since and to_status != status:
            bands.append((since, at, status))
            since = at
        status = to_status
    bands.append((since, end, status))
    merged: list[tuple[datetime, datetime, str]] = []
    for band in bands:
        if merged and merged[-1][2] == band[2]:
            merged[-1] = (merged[-1][0], band[1], band[2])
        else:
            merged.append(band)
    return merged


def uptime_ratio(successes: int, total: int) -> float | None:
    """Share of successful runs, or None when there were none (unknown is not 100 %)."""
    return successes / total if total else None
