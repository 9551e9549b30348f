"""Read functions of health checks shared by the API, the Health page and Overview's card."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from monitoring_core.collectors.store import list_collectors, public_collector
from monitoring_core.enums import CheckStatus
from monitoring_core.health.rules import uptime_ratio
from monitoring_core.health.store import (
    UPTIME_WINDOWS,
    CheckRow,
    list_checks,
    list_flips,
    list_results,
    uptimes,
)

__all__ = [
    "HEARTBEAT_PATH",
    "check_flips",
    "check_results_frame",
    "check_summaries",
    "collector_table",
    "health_overview",
    "masked_config",
    "ping_url",
    "public_check",
    "worker_status",
]

HEARTBEAT_PATH = "/api/monitoring/heartbeat/"
_LAST_RESULTS = text(
    """
    SELECT c.id, r.response_time_ms, r.message
    FROM health_checks c
    LEFT JOIN LATERAL (
        SELECT response_time_ms, message FROM health_check_results
        WHERE check_id = c.id ORDER BY time DESC LIMIT 1
    ) r ON true
    """
)


def ping_url(base_url: str, token: str | None) -> str | None:
    return f"{base_url.rstrip('/')}{HEARTBEAT_PATH}{token}" if token else None


def masked_config(check_type: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config as shown to people: a database URL's password hidden."""
    if check_type != "database" or "url" not in config:
        return dict(config)
    try:
        shown = make_url(str(config["url"])).render_as_string(hide_password=True)
    except ArgumentError:
        shown = "(invalid URL)"
    return {**config, "url": shown}


def public_check(check: CheckRow, base_url: str) -> dict[str, Any]:
    """A check as docs/API.md names its fields, plus state and (heartbeats) the ping URL."""
    return {
        "id": check.id,
        "check_name": check.check_name,
        "check_type": check.check_type,
        "check_config": masked_config(check.check_type, check.check_config),
        "service_name": check.service_name,
        "check_frequency_seconds": check.check_frequency_seconds,
        "timeout_seconds": check.timeout_seconds,
        "retries": check.retries,
        "is_enabled": check.is_enabled,
        "wedding_critical": check.wedding_critical,
        "status": check.status.value,
        "consecutive_failures": check.consecutive_failures,
        "last_checked_at": check.last_checked_at,
        "last_success_at": check.last_success_at,
        "last_ping_at": check.last_ping_at,
        "ping_url": ping_url(base_url, check.ping_token),
    }


def check_summaries(conn: Connection, now: datetime, *, base_url: str) -> list[dict[str, Any]]:
    """Every check with its status, last response time and uptime per window (None: no runs)."""
    counts = uptimes(conn, now)
    last = {row.id: row for row in conn.execute(_LAST_RESULTS)}
    out = []
    for check in list_checks(conn):
        item = public_check(check, base_url)
        windows = counts.get(check.id, {})
        for name in UPTIME_WINDOWS:
            ok, total = windows.get(name, (0, 0))
            item[f"uptime_{name}"] = uptime_ratio(ok, total)
        row = last.get(check.id)
        item["response_time_ms"] = row.response_time_ms if row else None
        item["last_message"] = row.message if row else None
        out.append(item)
    return out


def health_overview(conn: Connection, now: datetime) -> dict[str, Any]:
    """Overview's health card: counts by status and the checks that are not healthy."""
    checks = [c for c in list_checks(conn) if c.is_enabled]
    counts = {status.value: 0 for status in CheckStatus}
    for check in checks:
        counts[check.status.value] += 1
    problems = [
        {
            "check_name": c.check_name,
            "service_name": c.service,
            "status": c.status.value,
            "wedding_critical": c.wedding_critical,
            "last_success_at": c.last_success_at,
        }
        for c in checks
        if c.status in (CheckStatus.CRITICAL, CheckStatus.WARNING)
    ]
    problems.sort(key=lambda p: (p["status"] != "critical", not p["wedding_critical"]))
    return {"total": len(checks), "by_status": counts, "problems": problems, "as_of": now}


def check_results_frame(
    conn: Connection, check_id: int, start: datetime, end: datetime
) -> pd.DataFrame:
    """A check's results in the range, oldest first (time, success, status, response_time_ms)."""
    rows = list_results(conn, check_id, start=start, end=end)
    frame = pd.DataFrame(rows, columns=["time", "success", "status", "response_time_ms", "message"])
    return frame.iloc[::-1].reset_index(drop=True)


def check_flips(
    conn: Connection, since: datetime, check_id: int | None = None
) -> list[dict[str, Any]]:
    return list_flips(conn, since=since, check_id=check_id)


def worker_status(conn: Connection, now: datetime) -> list[dict[str, Any]]:
    """Workers by last heartbeat, newest first, with seconds since they were last seen."""
    rows = conn.execute(
        text(
            "SELECT worker_id, hostname, pid, started_at, last_seen FROM worker_heartbeats "
            "ORDER BY last_seen DESC LIMIT 20"
        )
    ).mappings()
    return [
        {**row, "seconds_ago": max((now - row["last_seen"]).total_seconds(), 0.0)} for row in rows
    ]


def collector_table(conn: Connection) -> list[dict[str, Any]]:
    """Admin-defined collectors with their last run and error (URLs masked)."""
    return [public_collector(row) for row in list_collectors(conn)]
