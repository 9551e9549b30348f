"""Demo health: checks of the platform's services with history, collectors, a pushed job.

History is simulated run by run through the real status rules (`health.rules.transition`),
so statuses, flips and auto-recoveries agree with what the worker would have recorded. The
checks themselves point at this machine (the local API, its database, the disk), so the
worker keeps them running for real after the demo is loaded; one custom check flaps.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, insert, update

from monitoring_core.accounts import create_api_key
from monitoring_core.config import load_settings
from monitoring_core.db import grant_reader_select
from monitoring_core.enums import ApiScope, CheckStatus
from monitoring_core.health.rules import Outcome, cron_next, transition
from monitoring_core.health.runner import check_points
from monitoring_core.health.store import CheckRow, Run, create_check
from monitoring_core.ingest.points import MetricPoint, store_points
from monitoring_core.schema import (
    health_check_flips,
    health_check_pings,
    health_check_results,
    health_checks,
    sql_collectors,
)

__all__ = ["load"]

STEP = timedelta(minutes=5)  # history resolution (the live checks run every minute)


def _checks(api: str, db_url: str) -> list[dict[str, Any]]:
    """(check fields, typical response ms, failure share, outage hours ago or None)."""
    return [
        {
            "check_name": "Ingest API",
            "check_type": "http",
            "service_name": "monitoring",
            "wedding_critical": False,
            "check_config": {
                "url": f"{api}/healthz",
                "keyword": "ok",
                "max_response_time_ms": 2000,
            },
            "_ms": 12,
            "_fail": 0.001,
            "_outage": None,
        },
        {
            "check_name": "Vendor search",
            "check_type": "http",
            "service_name": "api",
            "wedding_critical": True,
            "check_config": {
                "url": f"{api}/healthz",
                "expected_status": 200,
                "keyword": "ok",
                "max_response_time_ms": 2000,
            },
            "_ms": 180,
            "_fail": 0.002,
            "_outage": 50,
        },
        {
            "check_name": "Platform database",
            "check_type": "database",
            "service_name": "database",
            "wedding_critical": True,
            "check_config": {"url": db_url, "query": "SELECT 1"},
            "_ms": 3,
            "_fail": 0.0005,
            "_outage": None,
        },
        {
            "check_name": "API port",
            "check_type": "tcp",
            "service_name": "api",
            "check_config": {"host": "localhost", "port": int(api.rsplit(":", 1)[1])},
            "_ms": 1,
            "_fail": 0.0,
            "_outage": None,
        },
        {
            "check_name": "Disk space",
            "check_type": "custom",
            "service_name": "host",
            "check_config": {"callable": "disk_free", "path": "/", "min_free_percent": 5},
            "_ms": 1,
            "_fail": 0.0,
            "_outage": None,
        },
        {
            "check_name": "Payments partner",
            "check_type": "custom",
            "service_name": "payments",
            "wedding_critical": True,
            "check_config": {"callable": "demo_flapping", "cycle_minutes": 7},
            "_ms": 240,
            "_fail": 0.06,
            "_outage": 20,
        },
        {
            "check_name": "Nightly backup",
            "check_type": "heartbeat",
            "service_name": "backups",
            "check_config": {
                "schedule": "30 1 * * *",  # 01:30 every night, London time
                "tz": "Europe/London",
                "grace_seconds": 3_600,
            },
            "_ms": None,
            "_fail": 0.0,
            "_outage": 30,  # one night's backup did not ping ("Heartbeat Missing" fires)
        },
    ]


def _simulate(
    check: CheckRow, spec: dict[str, Any], start: datetime, now: datetime, rng: np.random.Generator
) -> list[Run]:
    steps = int((now - start) / STEP)
    fails = rng.random(steps) < spec["_fail"]
    if spec["_outage"] is not None:  # a 40-minute outage that ended on its own
        first = steps - int(timedelta(hours=spec["_outage"]) / STEP)
        fails[max(first, 0) : max(first + 8, 0)] = True
    status, failures, runs = CheckStatus.UNKNOWN, 0, []
    for i in range(steps):
        ms = None if spec["_ms"] is None else float(rng.gamma(4.0, spec["_ms"] / 4.0))
        outcome = (
            Outcome(False, "HTTP 503 (expected 200)", ms) if fails[i] else Outcome(True, "ok", ms)
        )
        moved = transition(status, failures, check.retries, outcome)
        runs.append(Run(check, outcome, moved, None))
        status, failures = moved.status, moved.consecutive_failures
    return runs


def _write_history(
    conn: Connection, check: CheckRow, runs: list[Run], start: datetime
) -> tuple[int, int]:
    times = [start + STEP * i for i in range(len(runs))]
    conn.execute(
        insert(health_check_results),
        [
            {
                "check_id": check.id,
                "time": t,
                "success": r.outcome.success,
                "status": r.transition.status.value,
                "response_time_ms": r.outcome.response_time_ms,
                "message": r.outcome.message,
            }
            for t, r in zip(times, runs, strict=True)
        ],
    )
    flips = [
        {
            "check_id": check.id,
            "time": t,
            "from_status": r.transition.flip.from_status.value,
            "to_status": r.transition.flip.to_status.value,
            "reason": r.transition.flip.reason,
            "is_auto_recovery": r.transition.flip.is_auto_recovery,
            "processed_at": t,
        }
        for t, r in zip(times, runs, strict=True)
        if r.transition.flip
    ]
    if flips:
        conn.execute(insert(health_check_flips), flips)
    last = runs[-1]
    successes = [t for t, r in zip(times, runs, strict=True) if r.outcome.success]
    conn.execute(
        update(health_checks)
        .where(health_checks.c.id == check.id)
        .values(
            status=last.transition.status.value,
            consecutive_failures=last.transition.consecutive_failures,
            last_checked_at=times[-1],
            last_success_at=successes[-1] if successes else None,
            last_ping_at=times[-1] if check.check_type == "heartbeat" else None,
        )
    )
    points = [p for t, r in zip(times, runs, strict=True) for p in check_points(r, t)]
    store_points(conn, points)
    return len(runs), len(points)


def _ping_log(
    conn: Connection,
    check: CheckRow,
    spec: dict[str, Any],
    start: datetime,
    now: datetime,
) -> int:
    """A cron heartbeat's nightly /start and success pings (output: size and hash only); the
    night of its outage sent none. The check's last ping and start are the last logged ones.
    Its own random generator: the shared one's later draws (other domains) stay as they were."""
    config, rng = check.check_config, np.random.default_rng(check.id)
    rows: list[dict[str, Any]] = []
    outage = now - timedelta(hours=spec["_outage"]) if spec["_outage"] is not None else None
    run = cron_next(config["schedule"], config["tz"], start)
    while run < now:
        took = timedelta(seconds=float(rng.gamma(12.0, 120.0)))
        skipped = outage is not None and abs(run - outage) < timedelta(hours=12)
        meta = {"source": "10.0.4.12", "method": "POST", "user_agent": "curl/8.5.0"}
        if not skipped:  # every row names every column: executemany takes the first's keys
            nothing = {"duration_s": None, "body_bytes": 0, "body_sha256": None}
            rows.append({"check_id": check.id, "time": run, "kind": "start", **nothing, **meta})
        if not skipped and run + took < now:
            output = f"backup {run:%Y-%m-%d}: {int(rng.integers(4_000, 9_000))} MB".encode()
            rows.append(
                {
                    "check_id": check.id,
                    "time": run + took,
                    "kind": "success",
                    "duration_s": took.total_seconds(),
                    "body_bytes": len(output),
                    "body_sha256": hashlib.sha256(output).hexdigest(),
                    **meta,
                }
            )
        run = cron_next(config["schedule"], config["tz"], run)
    if rows:
        conn.execute(insert(health_check_pings), rows)
        last = {r["kind"]: r["time"] for r in rows}
        conn.execute(
            update(health_checks)
            .where(health_checks.c.id == check.id)
            .values(last_ping_at=last.get("success"), last_start_at=last.get("start"))
        )
    return len(rows)


def _pushed_job(conn: Connection, start: datetime, now: datetime, rng: np.random.Generator) -> int:
    """A nightly invoice export that pushes with prometheus_client at 02:00 every day."""
    group = {"job": "nightly_invoice_export", "instance": "billing-1"}
    points = []
    day = start.replace(hour=2, minute=0, second=0, microsecond=0)
    while day < now:
        if day >= start:
            rows = float(rng.poisson(1800))
            points += [
                MetricPoint("invoice_export_rows", rows, day, group, "pushgateway"),
                MetricPoint(
                    "invoice_export_duration_seconds",
                    float(rng.gamma(9, 10)),
                    day,
                    group,
                    "pushgateway",
                ),
                MetricPoint("push_time_seconds", day.timestamp(), day, group, "pushgateway"),
            ]
        day += timedelta(days=1)
    store_points(conn, points)
    return len(points)


def _collectors(conn: Connection) -> int:
    settings = load_settings()
    api = f"http://localhost:{settings.api_port}"
    # The API's /metrics needs a read key (unless MONITORING_OPEN_SERVICE_ROUTES): a key of
    # its own for this scrape, sent as the Basic password (shown masked on the Health page).
    scrape_key = create_api_key(conn, name="demo: monitoring-api scrape", scope=ApiScope.READ)
    rows: list[dict[str, Any]] = [
        {
            "name": "Connections by state",
            "kind": "sql",
            "url": "self",
            "metric_name": "db_connections_by_state",
            "interval_seconds": 300,
            "query": "SELECT coalesce(state, backend_type) AS state, count(*) AS value"
            " FROM pg_stat_activity GROUP BY 1",
        },
        {
            "name": "Business events last hour",
            "kind": "sql",
            "url": "self",
            "metric_name": "business_events_last_hour",
            "interval_seconds": 60,
            "query": "SELECT event_type, count(*) AS value FROM business_events WHERE time > now() - interval '1 hour' GROUP BY event_type",
        },
        {
            "name": "monitoring-api",
            "kind": "prometheus_scrape",
            "url": f"{api.replace('://', f'://scrape:{scrape_key}@')}/metrics",
            "metric_name": None,
            "interval_seconds": 60,
            "query": None,
        },
    ]
    conn.execute(insert(sql_collectors), rows)
    # `self` runs as the reader role, which reads only what an admin granted it.
    grant_reader_select(conn, ["business_events"])
    return len(rows)


def load(conn: Connection, *, days: int, now: datetime, rng: np.random.Generator) -> dict[str, int]:
    """Checks with `days` of history, three collectors and a pushed job's points."""
    api = f"http://localhost:{load_settings().api_port}"
    db_url = "self"  # the reader role: a check never stores the application's credentials
    start = now - timedelta(days=days)
    results = points = 0
    specs = _checks(api, db_url)
    for spec in specs:
        fields = {k: v for k, v in spec.items() if not k.startswith("_")}
        check = create_check(conn, fields)
        written = _write_history(conn, check, _simulate(check, spec, start, now, rng), start)
        if check.check_config.get("schedule"):
            _ping_log(conn, check, spec, start, now)
        results, points = results + written[0], points + written[1]
    return {
        "health_checks": len(specs),
        "health_check_results": results,
        "sql_collectors": _collectors(conn),
        "metric_points": points + _pushed_job(conn, start, now, rng),
    }
