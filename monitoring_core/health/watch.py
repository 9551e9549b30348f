"""The watcher watched: is the worker alive, which jobs keep failing, can anyone be paged.

Pure rules take `now`; the reads take a Connection. Pages show banners from these, the worker's
`watch_jobs` job raises the self-alert (`flows/job_watch.py`) and its heartbeat ping tells an
outside Healthchecks-style service whether all is well (`heartbeat_ping_url`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import Connection, func, select, text

from monitoring_core.schema import notification_channels, worker_heartbeats

__all__ = [
    "JOB_FAILING_AFTER",
    "WORKER_DOWN_AFTER",
    "consecutive_failures",
    "enabled_channel_count",
    "failing_jobs",
    "heartbeat_ping_url",
    "worker_down",
    "worker_last_seen",
]

WORKER_DOWN_AFTER = timedelta(minutes=2)
JOB_FAILING_AFTER = 5  # consecutive failed runs of one job
_RECENT_RUNS = 50  # runs per job read to count the failures (more would change nothing)

# Per job: its newest runs, newest first. The job names come from a loose index scan (one
# probe of the (job, started_at) index per name): job_runs holds ~600,000 rows a week of the
# 1-second notify job alone, and DISTINCT would read them all every minute.
_RECENT = text(
    """
    WITH RECURSIVE j(job) AS (
        (SELECT job FROM job_runs ORDER BY job LIMIT 1)
        UNION ALL
        SELECT (SELECT job FROM job_runs WHERE job > j.job ORDER BY job LIMIT 1)
        FROM j WHERE j.job IS NOT NULL
    )
    SELECT j.job, r.ok, r.started_at, r.error
    FROM j
    CROSS JOIN LATERAL (
        SELECT ok, started_at, error FROM job_runs
        WHERE job = j.job ORDER BY started_at DESC LIMIT :n
    ) r
    ORDER BY j.job, r.started_at DESC
    """
)


def worker_down(last_seen: datetime | None, now: datetime) -> bool:
    """True when no worker has been seen within WORKER_DOWN_AFTER of `now` (or ever)."""
    return last_seen is None or now - last_seen > WORKER_DOWN_AFTER


def consecutive_failures(oks: Sequence[bool]) -> int:
    """Failed runs before the newest success, runs given newest first."""
    count = 0
    for ok in oks:
        if ok:
            break
        count += 1
    return count


def heartbeat_ping_url(url: str, *, failing: bool) -> str:
    """The URL to ping: `url` when all is well, Healthchecks' `url/fail` when it is not."""
    if not failing:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/fail"))


def worker_last_seen(conn: Connection) -> datetime | None:
    """The newest heartbeat of any worker."""
    return conn.execute(select(func.max(worker_heartbeats.c.last_seen))).scalar()


def enabled_channel_count(conn: Connection) -> int:
    """Channels a page can go to; 0 means every notification is skipped."""
    query = select(func.count()).where(notification_channels.c.is_enabled)
    return int(conn.execute(query).scalar_one())


def failing_jobs(conn: Connection, *, threshold: int = JOB_FAILING_AFTER) -> list[dict[str, Any]]:
    """Jobs whose newest `threshold` or more runs all failed, with their last error."""
    runs: dict[str, list[Any]] = {}
    for row in conn.execute(_RECENT, {"n": _RECENT_RUNS}):
        runs.setdefault(row.job, []).append(row)
    out = []
    for job, rows in runs.items():
        failures = consecutive_failures([r.ok for r in rows])
        if failures >= threshold:
            last_ok = next((r.started_at for r in rows if r.ok), None)
            out.append(
                {
                    "job": job,
                    "failures": failures,
                    "last_error": rows[0].error,
                    "last_failed_at": rows[0].started_at,
                    "last_ok_at": last_ok,
                }
            )
    return out
