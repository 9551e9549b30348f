"""Reads for the Logs page: search with filters, matches over time, volume per service."""

# _FILTERS is a constant of this module; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, text

__all__ = [
    "SEVERITIES",
    "daily_volume",
    "like_pattern",
    "list_log_services",
    "log_histogram",
    "search_logs",
]

# Lowest severity number of each OTLP range, for "this severity and above" filters.
SEVERITIES = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17, "FATAL": 21}

_FILTERS = """
    time >= :s AND time < :e
    AND (CAST(:svc AS text) IS NULL OR service = :svc)
    AND severity_number >= :sev
    AND (CAST(:pat AS text) IS NULL OR body ILIKE :pat ESCAPE '\\')
    AND (CAST(:tid AS text) IS NULL OR trace_id = :tid)
    AND (CAST(:attr AS jsonb) IS NULL OR attributes @> CAST(:attr AS jsonb))
"""


def like_pattern(needle: str) -> str:
    """`%needle%` for ILIKE, with %, _ and the escape character taken literally."""
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _params(
    start: datetime,
    end: datetime,
    service: str | None,
    min_severity: int,
    contains: str | None,
    trace_id: str | None,
    attribute: tuple[str, Any] | None,
) -> dict[str, Any]:
    return {
        "s": start,
        "e": end,
        "svc": service,
        "sev": min_severity,
        "pat": like_pattern(contains) if contains else None,
        "tid": trace_id,
        "attr": orjson.dumps({attribute[0]: attribute[1]}).decode() if attribute else None,
    }


def search_logs(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    service: str | None = None,
    min_severity: int = 0,
    contains: str | None = None,
    trace_id: str | None = None,
    attribute: tuple[str, Any] | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Matching records, newest first (at most `limit`)."""
    params = _params(start, end, service, min_severity, contains, trace_id, attribute)
    rows = conn.execute(
        text(
            "SELECT time, service, severity_number, severity_text, body, trace_id, span_id,"
            f" attributes FROM log_records WHERE {_FILTERS} ORDER BY time DESC LIMIT :limit"
        ),
        {**params, "limit": limit},
    )
    return [dict(row._mapping) for row in rows]


def log_histogram(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    interval: timedelta,
    service: str | None = None,
    min_severity: int = 0,
    contains: str | None = None,
    trace_id: str | None = None,
    attribute: tuple[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Matching records per time bucket and severity range (INFO, WARN, ERROR …)."""
    params = _params(start, end, service, min_severity, contains, trace_id, attribute)
    rows = conn.execute(
        text(
            "SELECT date_bin(:step, time, :s) AS bucket,"
            " CASE WHEN severity_number >= 21 THEN 'FATAL' WHEN severity_number >= 17 THEN 'ERROR'"
            " WHEN severity_number >= 13 THEN 'WARN' WHEN severity_number >= 9 THEN 'INFO'"
            " WHEN severity_number >= 5 THEN 'DEBUG' ELSE 'TRACE' END AS severity,"
            f" count(*) AS count FROM log_records WHERE {_FILTERS} GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        {**params, "step": interval},
    )
    return [dict(row._mapping) for row in rows]


def list_log_services(conn: Connection, *, start: datetime, end: datetime) -> list[str]:
    rows = conn.execute(
        text("SELECT DISTINCT service FROM log_records WHERE time >= :s AND time < :e ORDER BY 1"),
        {"s": start, "e": end},
    )
    return [row[0] for row in rows]


def daily_volume(conn: Connection, *, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Records and body bytes per service and UTC day."""
    rows = conn.execute(
        text(
            "SELECT date_trunc('day', time AT TIME ZONE 'UTC') AS day, service,"
            " count(*) AS records, sum(octet_length(body)) AS body_bytes FROM log_records"
            " WHERE time >= :s AND time < :e GROUP BY 1, 2 ORDER BY 1 DESC, 3 DESC"
        ),
        {"s": start, "e": end},
    )
    return [dict(row._mapping) for row in rows]
