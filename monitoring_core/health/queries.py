"""Read functions of health checks shared by the API, the Health page and Overview's card."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from monitoring_core.collectors.store import list_collectors, public_collector
from monitoring_core.enums import CheckStatus
from monitoring_core.health.rules import (
    describe_schedule,
    next_expected_ping,
    status_bands,
    uptime_ratio,
)
from monitoring_core.health.runner import heartbeat_state
from monitoring_core.health.store import (
    UPTIME_WINDOWS,
    CheckRow,
    get_check,
    list_checks,
    list_flips,
    list_pings,
    list_results,
    status_before,
    uptimes,
)

__all__ = [
    "HEARTBEAT_PATH",
    "check_detail",
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
MASK = "****"
# Request headers of HTTP checks shown as they are; every other value (Authorization, cookies,
# API keys under any name) is a secret to everyone but admins editing the check.
PLAIN_HEADERS = frozenset(
    {"accept", "accept-encoding", "accept-language", "cache-control", "content-type", "user-agent"}
)
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


def ping_url(base_url: str, token: str | None, *, reveal: bool = True) -> str | None:
    """The URL a job pings; with `reveal` False the token (the ping's only secret) is cut."""
    if not token:
        return None
    return f"{base_url.rstrip('/')}{HEARTBEAT_PATH}{token if reveal else token[:4] + MASK}"


def masked_config(
    check_type: str, config: dict[str, Any], *, reveal: bool = False
) -> dict[str, Any]:
    """The config as shown: a database URL's password always hidden; unless `reveal` (admins
    editing), an HTTP check's header values (but PLAIN_HEADERS) and URL password too."""
    if check_type == "database" and config.get("url") == "self":
        return dict(config)  # the monitoring database itself, as the read-only role
    if check_type == "database" and "url" in config:
        try:
            shown = make_url(str(config["url"])).render_as_string(hide_password=True)
        except ArgumentError:
            shown = "(invalid URL)"
        return {**config, "url": shown}
    if check_type != "http" or reveal:
        return dict(config)
    out = dict(config)
    if isinstance(config.get("headers"), dict):
        out["headers"] = {
            name: value if str(name).lower() in PLAIN_HEADERS else MASK
            for name, value in config["headers"].items()
        }
    if isinstance(config.get("url"), str):
        out["url"] = _url_without_password(config["url"])
    return out


def _url_without_password(url: str) -> str:
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:  # a port that is not a number, say
        return url.split("://", 1)[0] + "://" + MASK
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{MASK}@{host}"))


def public_check(check: CheckRow, base_url: str, *, reveal_secrets: bool = False) -> dict[str, Any]:
    """A check as docs/API.md names its fields, plus state and (heartbeats) the ping URL.

    Secrets (header values, the ping token) are masked unless `reveal_secrets`: only for
    admins, who edit checks and hand ping URLs to jobs.
    """
    return {
        "id": check.id,
        "check_name": check.check_name,
        "check_type": check.check_type,
        "check_config": masked_config(check.check_type, check.check_config, reveal=reveal_secrets),
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
        "ping_url": ping_url(base_url, check.ping_token, reveal=reveal_secrets),
        "paused": check.paused_at is not None,
        "paused_at": check.paused_at,
        "schedule": (
            describe_schedule(check.check_config) if check.check_type == "heartbeat" else None
        ),
    }


def expected_ping_at(check: CheckRow, now: datetime) -> datetime | None:
    """A heartbeat's next expected ping (past when overdue); None for probes and paused checks."""
    if check.check_type != "heartbeat" or check.paused_at is not None:
        return None
    return next_expected_ping(heartbeat_state(check), now)


def check_summaries(
    conn: Connection, now: datetime, *, base_url: str, reveal_secrets: bool = False
) -> list[dict[str, Any]]:
    """Every check with its status, last response time and uptime per window (None: no runs);
    secrets masked unless `reveal_secrets` (see `public_check`)."""
    counts = uptimes(conn, now)
    last = {row.id: row for row in conn.execute(_LAST_RESULTS)}
    out = []
    for check in list_checks(conn):
        item = public_check(check, base_url, reveal_secrets=reveal_secrets)
        windows = counts.get(check.id, {})
        for name in UPTIME_WINDOWS:
            ok, total = windows.get(name, (0, 0))
            item[f"uptime_{name}"] = uptime_ratio(ok, total)
        row = last.get(check.id)
        item["response_time_ms"] = row.response_time_ms if row else None
        item["last_message"] = row.message if row else None
        item["next_expected_at"] = expected_ping_at(check, now)
        out.append(item)
    return out


def health_overview(conn: Connection, now: datetime) -> dict[str, Any]:
    """Overview's health card: counts by status (paused ones apart from the total) and the
    checks that are not healthy."""
    checks = [c for c in list_checks(conn) if c.is_enabled]
    counts = {status.value: 0 for status in CheckStatus}
    for check in checks:
        counts[check.status.value] += 1
    checks = [c for c in checks if c.paused_at is None]
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


def check_detail(
    conn: Connection,
    check_id: int,
    now: datetime,
    start: datetime,
    end: datetime,
    *,
    base_url: str,
    reveal_secrets: bool = False,
) -> dict[str, Any] | None:
    """One check for its detail view: the check, its ping log and results in [start, end),
    the status bands over the range, the last and next expected ping; None when not found."""
    check = get_check(conn, check_id)
    if check is None:
        return None
    flips = list_flips(conn, since=start, check_id=check_id)
    changes = [(f["time"], f["to_status"]) for f in reversed(flips)]
    until = max(start, min(end, now))  # the timeline stops at now
    bands = status_bands(status_before(conn, check_id, start), changes, start, until)
    return {
        "check": public_check(check, base_url, reveal_secrets=reveal_secrets),
        "pings": list_pings(conn, check_id, start=start, end=end),
        "results": list_results(conn, check_id, start=start, end=end, limit=500),
        "flips": flips,
        "bands": [{"from": a, "to": b, "status": s} for a, b, s in bands],
        "last_ping_at": check.last_ping_at,
        "next_expected_at": expected_ping_at(check, now),
        "grace_seconds": float(check.check_config.get("grace_seconds", 60)),
    }


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
