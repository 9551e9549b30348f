"""Reads for the Logs page: search with filters, matches over time, volume per service.

A body substring (`contains`) is matched with ASCII letters case-folded (`logs.trigrams`):
with three bytes or more the GIN index over the blocks' trigrams picks the blocks that can
hold it, and only their rows are read and checked; a shorter needle reads the window's rows.
"""

# _FILTERS is a constant of this module; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, text

from monitoring_core.logs.trigrams import ASCII_LOWER, ASCII_UPPER, fold, needle_trigrams

__all__ = [
    "SEVERITIES",
    "daily_volume",
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
    AND (CAST(:pat AS text) IS NULL
         OR strpos(translate(body, :upper, :lower), CAST(:pat AS text)) > 0)
    AND (CAST(:tid AS text) IS NULL OR trace_id = :tid)
    AND (CAST(:attr AS jsonb) IS NULL OR attributes @> CAST(:attr AS jsonb))
"""
# The blocks that can hold the needle: their earliest row carries the trigrams (GIN index) and
# the block's latest time; blocks are per UTC day, so that row is at most a day before :s.
_BLOCKS = """
    AND block IN (
        SELECT b.block FROM log_records b
        WHERE b.block_trgm @> CAST(:q AS int4[])
          AND b.time >= CAST(:s AS timestamptz) - interval '1 day' AND b.time < :e
          AND b.block_end >= :s
          AND (CAST(:svc AS text) IS NULL OR b.service = :svc))
"""


def _where(contains: str | None) -> str:
    """The filters, with the block index when the needle has a trigram."""
    return _FILTERS + (_BLOCKS if contains and needle_trigrams(contains) else "")


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
        "pat": fold(contains).decode("utf-8", "surrogatepass") if contains else None,
        "q": needle_trigrams(contains) if contains else [],
        "upper": ASCII_UPPER,
        "lower": ASCII_LOWER,
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
            f" attributes FROM log_records WHERE {_where(contains)} ORDER BY time DESC LIMIT :limit"
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
            f" count(*) AS count FROM log_records WHERE {_where(contains)} GROUP BY 1, 2 ORDER BY 1, 2"
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
    """Records stored, body bytes and records refused over the daily cap, per service and
    UTC day (`log_volume`, kept by every write), newest day first."""
    rows = conn.execute(
        text(
            "SELECT day, service, records, body_bytes, refused FROM log_volume"
            " WHERE day >= CAST(:s AS date) AND day <= CAST(:e AS date)"
            " ORDER BY day DESC, records DESC, service"
        ),
        {"s": start.astimezone(UTC), "e": end.astimezone(UTC)},
    )
    return [dict(row._mapping) for row in rows]
