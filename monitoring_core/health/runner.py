"""A round of health checks: claim the due ones, probe them concurrently, record the results.

Probes run in a bounded thread pool outside any transaction, so a slow check holds one pool
slot and no database connection; results, flips and the `health_check_*` metric points of
the whole round are then written in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, update

from monitoring_core.audit import record_audit, system_actor
from monitoring_core.enums import CheckStatus
from monitoring_core.health.probes import run_probe
from monitoring_core.health.rules import (
    Flip,
    HeartbeatState,
    Outcome,
    heartbeat_outcome,
    next_run_at,
    transition,
)
from monitoring_core.health.store import (
    CheckRow,
    PingMeta,
    Run,
    claim_due_checks,
    get_check,
    get_check_by_token,
    lock_checks,
    record_ping,
    record_runs,
)
from monitoring_core.ingest.points import MetricPoint, store_points
from monitoring_core.schema import health_checks

__all__ = [
    "DEFAULT_CONCURRENCY",
    "ROUND_BUDGET_S",
    "RoundReport",
    "check_points",
    "decide",
    "receive_ping",
    "record_outcomes",
    "run_check_now",
    "run_due_checks",
]

DEFAULT_CONCURRENCY = 32
ROUND_BUDGET_S = 60.0  # a round never holds the worker longer than this
SOURCE_SYSTEM = "health"
Prober = Callable[[str, dict, float], Outcome]


@dataclass
class RoundReport:
    checked: int = 0
    failed: int = 0
    flips: list[tuple[str, Flip]] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.checked} checks, {self.failed} failing, {len(self.flips)} flips"


def heartbeat_state(check: CheckRow) -> HeartbeatState:
    """The pure rules' view of a heartbeat; pings from before a resume do not count (a resumed
    check waits for its next ping, as a new one does)."""
    config = check.check_config

    def since_resume(at: datetime | None) -> datetime | None:
        return None if at is None or (check.resumed_at and at < check.resumed_at) else at

    return HeartbeatState(
        last_ping_at=since_resume(check.last_ping_at),
        last_start_at=since_resume(check.last_start_at),
        last_ping_failed=check.last_ping_failed,
        period_seconds=float(config.get("period_seconds", 600)),
        grace_seconds=float(config.get("grace_seconds", 60)),
        schedule=config.get("schedule") or None,
        tz=config.get("tz") or "UTC",
    )


def decide(check: CheckRow, outcome: Outcome | None, now: datetime) -> Run:
    """Pure: the run to record for a check (heartbeats are judged from their pings)."""
    if check.check_type == "heartbeat" or outcome is None:
        outcome = heartbeat_outcome(heartbeat_state(check), now)
        following = now + timedelta(seconds=check.check_frequency_seconds)
    else:
        following = next_run_at(now, check.check_frequency_seconds, outcome)
    moved = transition(check.status, check.consecutive_failures, check.retries, outcome)
    return Run(check, outcome, moved, following)


def check_points(run: Run, now: datetime) -> list[MetricPoint]:
    """`health_check_success` (this run), `health_check_up` (not down after retries), latency."""
    check = run.check
    dims = {
        "check": check.check_name,
        "service": check.service,
        "check_type": check.check_type,
        "wedding_critical": "true" if check.wedding_critical else "false",
    }
    points = [
        MetricPoint("health_check_success", float(run.outcome.success), now, dims, SOURCE_SYSTEM)
    ]
    if run.transition.status != CheckStatus.UNKNOWN:
        up = float(run.transition.status != CheckStatus.CRITICAL)
        points.append(MetricPoint("health_check_up", up, now, dims, SOURCE_SYSTEM))
    if run.outcome.response_time_ms is not None:
        points.append(
            MetricPoint(
                "health_check_response_time_ms",
                run.outcome.response_time_ms,
                now,
                dims,
                SOURCE_SYSTEM,
            )
        )
    return points


def record_outcomes(
    conn: Connection, outcomes: dict[int, Outcome | None], now: datetime
) -> list[Run]:
    """Decide and record runs against the current (locked) rows; deleted and paused checks
    (paused while their probe ran) are skipped."""
    current = {i: c for i, c in lock_checks(conn, outcomes).items() if c.paused_at is None}
    runs = [decide(current[i], outcomes[i], now) for i in sorted(outcomes) if i in current]
    record_runs(conn, runs, now)
    store_points(conn, [p for run in runs for p in check_points(run, now)])
    return runs


def probe_all(
    checks: list[CheckRow],
    *,
    max_workers: int,
    budget_s: float = ROUND_BUDGET_S,
    prober: Prober = run_probe,
) -> dict[int, Outcome | None]:
    """Every probe-type check run concurrently (bounded); heartbeats need no probe.

    A probe still running after `budget_s` is recorded as a failure and left to finish in
    its thread: per-operation timeouts cannot stop a server that trickles bytes, and the
    worker's other jobs must not wait for it.
    """
    outcomes: dict[int, Outcome | None] = {
        c.id: None for c in checks if c.check_type == "heartbeat"
    }
    probed = [c for c in checks if c.check_type != "heartbeat"]
    if not probed:
        return outcomes
    pool = ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(probed))))
    futures = {
        c.id: pool.submit(prober, c.check_type, c.check_config, c.timeout_seconds) for c in probed
    }
    wait(futures.values(), timeout=budget_s)
    pool.shutdown(wait=False, cancel_futures=True)
    late = Outcome(False, f"no answer within the round's {budget_s:g} s budget")
    outcomes.update({i: f.result() if f.done() else late for i, f in futures.items()})
    return outcomes


def run_due_checks(
    engine: Engine,
    now: datetime,
    *,
    max_workers: int = DEFAULT_CONCURRENCY,
    limit: int = 1000,
    budget_s: float = ROUND_BUDGET_S,
) -> RoundReport:
    """One round: every due check is run once and recorded at `now`."""
    with engine.begin() as conn:
        claimed = claim_due_checks(conn, now, limit=limit)
    if not claimed:
        return RoundReport()
    outcomes = probe_all(claimed, max_workers=max_workers, budget_s=budget_s)
    with engine.begin() as conn:
        runs = record_outcomes(conn, outcomes, now)
    report = RoundReport(checked=len(runs), failed=sum(not r.outcome.success for r in runs))
    report.flips = [(r.check.check_name, r.transition.flip) for r in runs if r.transition.flip]
    return report


def run_check_now(engine: Engine, check_id: int, now: datetime) -> Run | None:
    """The admin's "run now": probe one check at once and record it like a scheduled run
    (None when there is no such check or it is paused)."""
    with engine.connect() as conn:
        check = get_check(conn, check_id)
    if check is None or check.paused_at is not None:
        return None
    outcomes = probe_all([check], max_workers=1)
    with engine.begin() as conn:
        runs = record_outcomes(conn, outcomes, now)
    return runs[0] if runs else None


def receive_ping(
    conn: Connection, token: str, kind: str, now: datetime, meta: PingMeta | None = None
) -> Run | None:
    """A Healthchecks-style ping: log it and re-judge the heartbeat at once.

    None when no heartbeat check has this token. `start` records no result (the job is only
    running); `success` and `fail` record one, and a flip when the status changes. A ping to
    a paused check resumes it, as Healthchecks.io does by default (audited as
    `system:heartbeat`): the job is evidently running again.
    """
    check = get_check_by_token(conn, token, lock=True)
    if check is None:
        return None
    record_ping(conn, check, kind, now, meta)
    was_paused = check.paused_at is not None
    if was_paused:
        _resume_by_ping(conn, check, now)
    updated = get_check(conn, check.id)
    assert updated is not None
    run = decide(updated, None, now)
    if kind == "start" and not was_paused:
        return run
    message = {"start": "start signal received", "fail": "fail signal received"}.get(
        kind, "ping received"
    )
    outcome = Outcome(run.outcome.success, message, None, run.outcome.status)
    moved = transition(updated.status, updated.consecutive_failures, updated.retries, outcome)
    run = Run(updated, outcome, moved, None)
    record_runs(conn, [run], now)
    store_points(conn, check_points(run, now))
    return run


def _resume_by_ping(conn: Connection, check: CheckRow, now: datetime) -> None:
    conn.execute(
        update(health_checks)
        .where(health_checks.c.id == check.id)
        .values(paused_at=None, resumed_at=now, next_run_at=None)
    )
    record_audit(
        conn,
        actor=system_actor("heartbeat"),
        action="health_check.resume",
        target=str(check.id),
        details={"by": "ping"},
        now=now,
    )
