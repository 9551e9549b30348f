"""SQL of health checks: configuration, claiming due runs, results, flips, pings, uptime.

Every function takes a Connection and never commits; the caller owns the transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, or_, select, update

from monitoring_core.enums import CheckStatus
from monitoring_core.health.rules import Flip, Outcome, Transition
from monitoring_core.schema import (
    health_check_flips,
    health_check_pings,
    health_check_results,
    health_checks,
)

__all__ = [
    "UPTIME_WINDOWS",
    "CheckRow",
    "PingMeta",
    "Run",
    "claim_due_checks",
    "create_check",
    "get_check",
    "get_check_by_token",
    "list_checks",
    "list_flips",
    "list_pings",
    "list_results",
    "lock_checks",
    "record_ping",
    "record_runs",
    "set_paused",
    "status_before",
    "uptimes",
    "update_check",
]

UPTIME_WINDOWS: dict[str, timedelta] = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}


@dataclass(frozen=True)
class CheckRow:
    id: int
    check_name: str
    check_type: str
    check_config: dict[str, Any]
    service_name: str | None
    check_frequency_seconds: int
    timeout_seconds: float
    retries: int
    is_enabled: bool
    wedding_critical: bool
    ping_token: str | None
    status: CheckStatus
    consecutive_failures: int
    last_checked_at: datetime | None
    last_success_at: datetime | None
    last_ping_at: datetime | None
    last_start_at: datetime | None
    last_ping_failed: bool
    next_run_at: datetime | None
    created_at: datetime
    paused_at: datetime | None = None
    resumed_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> CheckRow:
        values = {name: row[name] for name in cls.__dataclass_fields__}
        values["status"] = CheckStatus(values["status"])
        return cls(**values)

    @property
    def service(self) -> str:
        return self.service_name or self.check_name


def create_check(conn: Connection, fields: Mapping[str, Any]) -> CheckRow:
    """Insert a check; heartbeats get their secret ping token here."""
    values = dict(fields)
    if values.get("check_type") == "heartbeat" and not values.get("ping_token"):
        values["ping_token"] = secrets.token_urlsafe(18)
    row = conn.execute(insert(health_checks).values(**values).returning(health_checks)).mappings()
    return CheckRow.from_row(row.one())


def update_check(conn: Connection, check_id: int, fields: Mapping[str, Any]) -> CheckRow | None:
    """Change a check's configuration; it runs again at once (`next_run_at` cleared)."""
    values = {**fields, "next_run_at": None}
    if fields.get("check_type") == "heartbeat":
        current = get_check(conn, check_id)
        if current is not None and not current.ping_token:
            values["ping_token"] = secrets.token_urlsafe(18)
    stmt = update(health_checks).where(health_checks.c.id == check_id).values(**values)
    row = conn.execute(stmt.returning(health_checks)).mappings().one_or_none()
    return CheckRow.from_row(row) if row else None


def get_check(conn: Connection, check_id: int) -> CheckRow | None:
    row = conn.execute(select(health_checks).where(health_checks.c.id == check_id)).mappings()
    found = row.one_or_none()
    return CheckRow.from_row(found) if found else None


def get_check_by_token(conn: Connection, token: str, *, lock: bool = False) -> CheckRow | None:
    stmt = select(health_checks).where(
        health_checks.c.ping_token == token, health_checks.c.check_type == "heartbeat"
    )
    found = conn.execute(stmt.with_for_update() if lock else stmt).mappings().one_or_none()
    return CheckRow.from_row(found) if found else None


def list_checks(conn: Connection, *, enabled_only: bool = False) -> list[CheckRow]:
    stmt = select(health_checks).order_by(health_checks.c.service_name, health_checks.c.check_name)
    if enabled_only:
        stmt = stmt.where(health_checks.c.is_enabled)
    return [CheckRow.from_row(r) for r in conn.execute(stmt).mappings()]


def claim_due_checks(conn: Connection, now: datetime, *, limit: int = 1000) -> list[CheckRow]:
    """Due enabled checks, pushed to their next run so another worker does not take them too.

    `FOR UPDATE SKIP LOCKED` lets two workers claim disjoint sets at the same moment; the
    final `next_run_at` is set again when the result is recorded (failing checks retry sooner).
    """
    due = (
        select(health_checks.c.id)
        .where(
            health_checks.c.is_enabled,
            health_checks.c.paused_at.is_(None),
            or_(health_checks.c.next_run_at.is_(None), health_checks.c.next_run_at <= now),
        )
        .order_by(health_checks.c.next_run_at.nulls_first())
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    interval = func.make_interval(0, 0, 0, 0, 0, 0, health_checks.c.check_frequency_seconds)
    stmt = (
        update(health_checks)
        .where(health_checks.c.id.in_(due.scalar_subquery()))
        .values(next_run_at=now + interval)
        .returning(health_checks)
    )
    return [CheckRow.from_row(r) for r in conn.execute(stmt).mappings()]


def lock_checks(conn: Connection, ids: Iterable[int]) -> dict[int, CheckRow]:
    """The current rows of these checks, locked until the caller's transaction ends."""
    stmt = (
        select(health_checks)
        .where(health_checks.c.id.in_(list(ids)))
        .order_by(health_checks.c.id)
        .with_for_update()
    )
    return {r["id"]: CheckRow.from_row(r) for r in conn.execute(stmt).mappings()}


@dataclass(frozen=True)
class Run:
    """One recorded run: what to write for a check."""

    check: CheckRow
    outcome: Outcome
    transition: Transition
    next_run_at: datetime | None


def record_runs(conn: Connection, runs: list[Run], now: datetime) -> None:
    """Results, new check states and flips of many runs in a few statements."""
    if not runs:
        return
    conn.execute(
        insert(health_check_results),
        [
            {
                "check_id": r.check.id,
                "time": now,
                "success": r.outcome.success,
                "status": r.transition.status.value,
                "response_time_ms": r.outcome.response_time_ms,
                "message": r.outcome.message[:1000],
            }
            for r in runs
        ],
    )
    for run in runs:
        _update_state(conn, run, now)
    flips = [_flip_row(r.check.id, r.transition.flip, now) for r in runs if r.transition.flip]
    if flips:
        conn.execute(insert(health_check_flips), flips)


def _update_state(conn: Connection, run: Run, now: datetime) -> None:
    values: dict[str, Any] = {
        "status": run.transition.status.value,
        "consecutive_failures": run.transition.consecutive_failures,
        "last_checked_at": now,
    }
    if run.outcome.success:
        values["last_success_at"] = now
    if run.next_run_at is not None:
        values["next_run_at"] = run.next_run_at
    conn.execute(update(health_checks).where(health_checks.c.id == run.check.id).values(**values))


def _flip_row(check_id: int, flip: Flip, now: datetime) -> dict[str, Any]:
    return {
        "check_id": check_id,
        "time": now,
        "from_status": flip.from_status.value,
        "to_status": flip.to_status.value,
        "reason": flip.reason[:1000],
        "is_auto_recovery": flip.is_auto_recovery,
    }


@dataclass(frozen=True)
class PingMeta:
    """What the ping log keeps of a request: never its body, only the body's size and hash."""

    source: str | None = None
    method: str | None = None
    user_agent: str | None = None
    body_bytes: int = 0
    body_sha256: str | None = None
    exit_status: int | None = None


RUN_TIME_LIMIT = timedelta(hours=12)  # a /start older than this is not the job that just ended


def record_ping(
    conn: Connection, check: CheckRow, kind: str, now: datetime, meta: PingMeta | None = None
) -> None:
    """Remember a heartbeat ping (`success`, `start` or `fail`) on the check and in its log;
    a success or fail after a `/start` logs how long the job ran."""
    if kind == "start":
        values: dict[str, Any] = {"last_start_at": now}
    else:
        values = {"last_ping_at": now, "last_ping_failed": kind == "fail"}
    conn.execute(update(health_checks).where(health_checks.c.id == check.id).values(**values))
    meta = meta or PingMeta()
    started = check.last_start_at
    ran = (
        (now - started).total_seconds()
        if kind != "start"
        and started is not None
        and (check.last_ping_at is None or started > check.last_ping_at)
        and timedelta(0) <= now - started <= RUN_TIME_LIMIT
        else None
    )
    conn.execute(
        insert(health_check_pings).values(
            check_id=check.id,
            time=now,
            kind=kind,
            exit_status=meta.exit_status,
            duration_s=ran,
            source=(meta.source or None) and meta.source[:100],
            method=(meta.method or None) and meta.method[:10],
            user_agent=(meta.user_agent or None) and meta.user_agent[:200],
            body_bytes=meta.body_bytes,
            body_sha256=meta.body_sha256,
        )
    )


def list_pings(
    conn: Connection, check_id: int, *, start: datetime, end: datetime, limit: int = 500
) -> list[dict[str, Any]]:
    """A check's logged pings in [start, end), newest first (no bodies: size and hash)."""
    p = health_check_pings.c
    stmt = (
        select(
            p.id,
            p.time,
            p.kind,
            p.exit_status,
            p.duration_s,
            p.source,
            p.method,
            p.user_agent,
            p.body_bytes,
            p.body_sha256,
        )
        .where(p.check_id == check_id, p.time >= start, p.time < end)
        .order_by(p.time.desc(), p.id.desc())
        .limit(limit)
    )
    return [dict(row) for row in conn.execute(stmt).mappings()]


def set_paused(
    conn: Connection, check_id: int, *, paused: bool, reason: str, now: datetime
) -> CheckRow | None:
    """Pause (status `paused`, not run) or resume (status `unknown`, run at once) a check,
    recording the flip; None when there is no such check. Unchanged when already so."""
    current = lock_checks(conn, [check_id]).get(check_id)
    if current is None or (current.paused_at is not None) == paused:
        return current
    status = CheckStatus.PAUSED if paused else CheckStatus.UNKNOWN
    values: dict[str, Any] = {
        "status": status.value,
        "consecutive_failures": 0,
        "next_run_at": None,
    }
    values |= {"paused_at": now} if paused else {"paused_at": None, "resumed_at": now}
    stmt = update(health_checks).where(health_checks.c.id == check_id).values(**values)
    row = conn.execute(stmt.returning(health_checks)).mappings().one()
    flip = Flip(current.status, status, reason, is_auto_recovery=False)
    conn.execute(insert(health_check_flips).values(_flip_row(check_id, flip, now)))
    return CheckRow.from_row(row)


def status_before(conn: Connection, check_id: int, at: datetime) -> str | None:
    """The check's status just before `at`: where its newest flip before then left it."""
    f = health_check_flips.c
    stmt = (
        select(f.to_status)
        .where(f.check_id == check_id, f.time < at)
        .order_by(f.time.desc(), f.id.desc())
        .limit(1)
    )
    return conn.execute(stmt).scalar_one_or_none()


def list_results(
    conn: Connection, check_id: int, *, start: datetime, end: datetime, limit: int = 5000
) -> list[dict[str, Any]]:
    """A check's results in [start, end), newest first."""
    r = health_check_results.c
    stmt = (
        select(r.time, r.success, r.status, r.response_time_ms, r.message)
        .where(r.check_id == check_id, r.time >= start, r.time < end)
        .order_by(r.time.desc())
        .limit(limit)
    )
    return [dict(row) for row in conn.execute(stmt).mappings()]


def list_flips(
    conn: Connection,
    *,
    since: datetime,
    check_id: int | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Status flips since `since` (one check or all), newest first, with the check's name."""
    f = health_check_flips.c
    stmt = (
        select(
            f.id,
            f.check_id,
            health_checks.c.check_name,
            f.time,
            f.from_status,
            f.to_status,
            f.reason,
            f.is_auto_recovery,
        )
        .join(health_checks, health_checks.c.id == f.check_id)
        .where(f.time >= since)
        .order_by(f.time.desc(), f.id.desc())
        .limit(limit)
    )
    if check_id is not None:
        stmt = stmt.where(f.check_id == check_id)
    return [dict(row) for row in conn.execute(stmt).mappings()]


def uptimes(conn: Connection, now: datetime) -> dict[int, dict[str, tuple[int, int]]]:
    """Per check and window: (successful runs, all runs), from the results table."""
    r = health_check_results.c
    columns = []
    for name, span in UPTIME_WINDOWS.items():
        recent = r.time >= now - span
        columns.append(func.count().filter(recent, r.success).label(f"ok_{name}"))
        columns.append(func.count().filter(recent).label(f"all_{name}"))
    longest = max(UPTIME_WINDOWS.values())
    stmt = select(r.check_id, *columns).where(r.time >= now - longest).group_by(r.check_id)
    return {
        row["check_id"]: {n: (row[f"ok_{n}"], row[f"all_{n}"]) for n in UPTIME_WINDOWS}
        for row in conn.execute(stmt).mappings()
    }
