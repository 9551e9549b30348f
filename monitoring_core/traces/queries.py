"""Reads for the Traces page: trace search, one trace's spans, errors and logs by trace id."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, text

from monitoring_core.traces.rules import waterfall

__all__ = [
    "TRACE_WINDOW",
    "list_operations",
    "list_services",
    "search_traces",
    "trace_detail",
    "trace_errors",
]

# A trace's spans are looked for this far around the time it was found at (partitions pruned).
TRACE_WINDOW = timedelta(days=1)


def list_services(conn: Connection, *, start: datetime, end: datetime) -> list[str]:
    rows = conn.execute(
        text("SELECT DISTINCT service FROM spans WHERE time >= :s AND time < :e ORDER BY 1"),
        {"s": start, "e": end},
    )
    return [row[0] for row in rows]


def list_operations(
    conn: Connection, *, start: datetime, end: datetime, service: str | None = None
) -> list[str]:
    rows = conn.execute(
        text(
            "SELECT name FROM spans WHERE time >= :s AND time < :e"
            " AND (CAST(:svc AS text) IS NULL OR service = :svc)"
            " GROUP BY name ORDER BY count(*) DESC, name LIMIT 200"
        ),
        {"s": start, "e": end, "svc": service},
    )
    return [row[0] for row in rows]


def search_traces(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    service: str | None = None,
    operation: str | None = None,
    min_duration_ms: float | None = None,
    errors_only: bool = False,
    attribute: tuple[str, Any] | None = None,
    trace_id: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Traces with a span matching every filter, newest first: the root span's service,
    name and duration, the number of spans and errors."""
    attr = None
    if attribute is not None:
        attr = orjson.dumps({attribute[0]: attribute[1]}).decode()
    rows = conn.execute(
        text(
            """
            WITH hits AS (
                SELECT trace_id, min(time) AS first_seen
                FROM spans
                WHERE time >= :s AND time < :e
                  AND (CAST(:svc AS text) IS NULL OR service = :svc)
                  AND (CAST(:op AS text) IS NULL OR name = :op)
                  AND (CAST(:min AS float8) IS NULL OR duration_ms >= :min)
                  AND (NOT :err OR status_code = 2)
                  AND (CAST(:attr AS jsonb) IS NULL OR attributes @> CAST(:attr AS jsonb))
                  AND (CAST(:tid AS text) IS NULL OR trace_id = :tid)
                GROUP BY trace_id
                ORDER BY first_seen DESC
                LIMIT :limit
            )
            SELECT h.trace_id, h.first_seen, t.spans, t.errors, t.services,
                   coalesce(r.service, t.first_service) AS service,
                   coalesce(r.name, t.first_name) AS name,
                   coalesce(r.duration_ms, t.longest) AS duration_ms
            FROM hits h
            CROSS JOIN LATERAL (
                SELECT count(*) AS spans, count(*) FILTER (WHERE status_code = 2) AS errors,
                       count(DISTINCT service) AS services, max(duration_ms) AS longest,
                       (array_agg(service ORDER BY time))[1] AS first_service,
                       (array_agg(name ORDER BY time))[1] AS first_name
                FROM spans s
                WHERE s.trace_id = h.trace_id
                  AND s.time >= h.first_seen - :w AND s.time < h.first_seen + :w
            ) t
            LEFT JOIN LATERAL (
                SELECT service, name, duration_ms FROM spans s
                WHERE s.trace_id = h.trace_id AND s.parent_span_id IS NULL
                  AND s.time >= h.first_seen - :w AND s.time < h.first_seen + :w
                ORDER BY time LIMIT 1
            ) r ON true
            ORDER BY h.first_seen DESC
            """
        ),
        {
            "s": start,
            "e": end,
            "svc": service,
            "op": operation,
            "min": min_duration_ms,
            "err": errors_only,
            "attr": attr,
            "tid": trace_id,
            "limit": limit,
            "w": TRACE_WINDOW,
        },
    )
    return [dict(row._mapping) for row in rows]


def trace_detail(
    conn: Connection, *, trace_id: str, around: datetime | None = None
) -> list[dict[str, Any]]:
    """The trace's spans in waterfall order (`traces.rules.waterfall`); around a time when
    known (prunes partitions), else in every partition."""
    lower = around - TRACE_WINDOW if around is not None else None
    upper = around + TRACE_WINDOW if around is not None else None
    rows = conn.execute(
        text(
            "SELECT time, trace_id, span_id, parent_span_id, service, name, kind, duration_ms,"
            " status_code, status_message, attributes, events, resource, scope FROM spans"
            " WHERE trace_id = :t"
            " AND (CAST(:lo AS timestamptz) IS NULL OR time >= :lo)"
            " AND (CAST(:hi AS timestamptz) IS NULL OR time < :hi)"
            " ORDER BY time LIMIT 10000"
        ),
        {"t": trace_id, "lo": lower, "hi": upper},
    )
    return waterfall([dict(row._mapping) for row in rows])


def trace_errors(conn: Connection, *, trace_id: str) -> list[dict[str, Any]]:
    """Error events carrying this trace id (Sentry's trace context, or the own API's field)."""
    rows = conn.execute(
        text(
            "SELECT e.time, e.group_id, e.service_name, e.severity, e.message, g.error_type"
            " FROM error_events e LEFT JOIN error_groups g ON g.id = e.group_id"
            " WHERE e.trace_id = :t ORDER BY e.time LIMIT 200"
        ),
        {"t": trace_id},
    )
    return [dict(row._mapping) for row in rows]
