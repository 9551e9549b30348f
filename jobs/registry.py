"""The worker's job list: one line per job; every job function lives in jobs/.

A job is a named function `func(engine, now) -> None | str` (the string is a short summary that
the worker logs and shows in its heartbeat status). The function owns its transactions
(`with engine.begin() as conn:`); the worker wraps every run: own timing, logging, a row in
`job_runs`, backoff after failures, and — for `singleton=True` — a Postgres advisory lock so
that among several workers only the elected one runs it.

`every_setting` names a `monitoring_core.config.Settings` attribute that overrides
`every_seconds` (e.g. "eval_interval_s" for the alert evaluation job).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from jobs import alerting, backups, builtin, compaction, errors, external_alerts, incidents, watch
from jobs import collectors as collector_jobs
from jobs.business import business_rollup
from jobs.demo import demo_feed
from jobs.digest import weekly_digest

__all__ = ["JOBS", "Job", "JobFunc", "find_job"]

JobFunc = Callable[[Engine, datetime], "str | None"]


@dataclass(frozen=True)
class Job:
    name: str
    func: JobFunc
    every_seconds: float
    singleton: bool = True
    every_setting: str | None = None
    description: str = ""


JOBS: list[Job] = [
    Job("rollups", builtin.rollups, 15, description="raw points -> 1 min / 1 h / 1 d rollups"),
    Job("partitions", builtin.partitions, 3600, description="create daily partitions ahead"),
    Job("retention", builtin.retention, 3600, description="drop old partitions and rollups"),
    Job("backups", backups.scheduled_backup, 600, description="pg_dump on backup_schedule"),
    Job("compaction", compaction.compact_points, 300, description="raw points -> series chunks"),
    Job(
        "alerts",
        alerting.evaluate_alerts,
        15,
        singleton=False,  # each live worker evaluates its share (monitoring_core.sharding)
        every_setting="eval_interval_s",
        description="evaluate this worker's share of the enabled alert rules",
    ),
    Job(
        "notify",
        alerting.deliver_notifications,
        1,
        singleton=False,
        description="send the notification outbox",
    ),
    Job("escalation", alerting.escalate_alerts, 30, description="climb escalation policies"),
    Job(
        "incident_escalation",
        incidents.escalate_incidents,
        30,
        description="page SEV1/SEV2 incidents",
    ),
    Job(
        "incident_metrics", incidents.incident_metrics, 300, description="MTTA/MTTR/open as metrics"
    ),
    Job(
        "incident_notifications",
        incidents.incident_notifications,
        30,
        description="sent pages on timelines",
    ),
    Job(
        "error_recovery", errors.error_recovery, 60, description="mark quiet error groups recovered"
    ),
    Job(
        "health_checks",
        collector_jobs.health_checks,
        5,
        singleton=False,
        description="run due health checks (claimed per check, bounded concurrency)",
    ),
    Job(
        "collect_system",
        collector_jobs.collect_system,
        30,
        singleton=False,
        description="host CPU, memory, disk, network (psutil)",
    ),
    Job(
        "collect_database",
        collector_jobs.collect_database,
        60,
        description="Postgres health from pg_stat_*",
    ),
    Job(
        "collect_configured",
        collector_jobs.collect_configured,
        10,
        singleton=False,  # each due collector is claimed by one worker (FOR UPDATE SKIP LOCKED)
        description="admin SQL collectors and Prometheus scrapes that are due",
    ),
    Job("business_rollup", business_rollup, 300, description="business KPIs per day + KPI metrics"),
    Job("demo_feed", demo_feed, 60, description="the demo's traffic up to now (demo databases)"),
    Job(
        "heartbeat_ping",
        watch.ping_heartbeat,
        60,
        singleton=False,
        description="ping MONITORING_HEARTBEAT_URL (url/fail while a job keeps failing)",
    ),
    Job("job_watch", watch.watch_jobs, 60, description="self-alert on a job that keeps failing"),
    Job("digest", weekly_digest, 3600, description="the weekly digest, once due (digest setting)"),
    Job(
        "external_alerts",
        external_alerts.expire_external_alerts,
        15,
        description="resolve Prometheus/Grafana alerts not re-sent by their endsAt",
    ),
]


def find_job(name: str) -> Job:
    """The job of that name; KeyError listing the known names otherwise."""
    for job in JOBS:
        if job.name == name:
            return job
    raise KeyError(f"unknown job {name!r}; known: {', '.join(j.name for j in JOBS)}")
