"""Read functions for the Errors page, the Read API and the alert engine's `pattern` rules.

Every column name that reaches SQL comes from a fixed mapping; values are bound parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from monitoring_core.enums import ErrorGroupStatus
from monitoring_core.errors.correlation import related_groups
from monitoring_core.errors.group_reads import search_clause
from monitoring_core.errors.search import GroupSearch

__all__ = [
    "DIMENSIONS",
    "GROUP_SORTS",
    "error_analytics",
    "error_count_series",
    "error_trend",
    "group_change_series",
    "group_detail",
    "list_groups",
    "list_services",
]

# Public dimension name -> error_events column.
DIMENSIONS: dict[str, str] = {
    "service": "service_name",
    "level": "level",
    "severity": "severity",
    "error_type": "error_type",
    "group_id": "group_id",
    "environment": "environment",
    "release": "release",
}
GROUP_SORTS: dict[str, str] = {
    "last_seen": "g.last_seen DESC",
    "first_seen": "g.first_seen DESC",
    "events": "events DESC",
    "event_count": "g.event_count DESC",
    "users": "g.user_count DESC",
    "organizations": "g.organization_count DESC",
    "severity": "array_position(ARRAY['info','low','medium','high','critical'], g.severity) DESC",
}


def _dimension(name: str) -> str:
    if name not in DIMENSIONS:
        raise ValueError(f"unknown dimension {name!r}; use one of {', '.join(DIMENSIONS)}")
    return DIMENSIONS[name]


def _filters(filters: Mapping[str, Any] | None, params: dict[str, Any], alias: str = "") -> str:
    """`AND col = :f_i` clauses for known dimensions (ValueError for unknown ones)."""
    clauses = []
    for i, (name, value) in enumerate(sorted((filters or {}).items())):
        column = _dimension(name)
        params[f"f{i}"] = int(value) if column == "group_id" else str(value)
        clauses.append(f" AND {alias}{column} = :f{i}")
    return "".join(clauses)


def error_count_series(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    filters: Mapping[str, Any] | None = None,
    group_by: Sequence[str] = (),
    interval: timedelta = timedelta(minutes=1),
) -> dict[tuple[str, ...], list[tuple[datetime, int]]]:
    """Error events per bucket in [start, end), for `pattern` alert rules.

    Keys are the `group_by` values (an empty tuple without group_by); points are
    (bucket end, count), oldest first, only for buckets with events (a missing bucket is 0).
    `filters`/`group_by` use DIMENSIONS' names: service, level, severity, error_type, group_id,
    environment, release.
    """
    params: dict[str, Any] = {"start": start, "end": end, "step": interval}
    columns = [_dimension(g) for g in group_by]
    select_dims = "".join(f", {c}::text AS d{i}" for i, c in enumerate(columns))
    group_dims = "".join(f", d{i}" for i in range(len(columns)))
    sql = (
        f"SELECT date_bin(:step, time, TIMESTAMPTZ '2000-01-01 00:00:00+00') + :step AS bucket{select_dims}, count(*) AS n"  # noqa: S608 - columns from DIMENSIONS
        f" FROM error_events WHERE time >= :start AND time < :end{_filters(filters, params)}"
        f" GROUP BY bucket{group_dims} ORDER BY bucket"
    )
    out: dict[tuple[str, ...], list[tuple[datetime, int]]] = {}
    for row in conn.execute(text(sql), params):
        key = tuple(str(getattr(row, f"d{i}")) for i in range(len(columns)))
        out.setdefault(key, []).append((row.bucket, int(row.n)))
    return out


def group_change_series(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    kinds: Sequence[str] = ("new", "regressed"),
    service: str | None = None,
) -> list[dict[str, Any]]:
    """New-group and regression events (or other history kinds) in [start, end), oldest first."""
    rows = conn.execute(
        text(
            "SELECT c.time, c.kind, c.group_id, c.release, g.error_type, g.services, g.severity"
            " FROM error_group_changes c JOIN error_groups g ON g.id = c.group_id"
            " WHERE c.time >= :start AND c.time < :end AND c.kind = ANY(:kinds)"
            " AND (CAST(:service AS text) IS NULL OR CAST(:service AS text) = ANY(g.services))"
            " ORDER BY c.time, c.id"
        ),
        {"start": start, "end": end, "kinds": list(kinds), "service": service},
    )
    return [dict(r._mapping) for r in rows]


def error_trend(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    by: str,
    interval: timedelta,
    filters: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Rows {bucket (start), key, count} for a chart of events by one dimension."""
    params: dict[str, Any] = {"start": start, "end": end, "step": interval}
    column = _dimension(by)
    sql = (
        f"SELECT date_bin(:step, time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket, {column}::text AS key, count(*) AS count"  # noqa: S608
        f" FROM error_events WHERE time >= :start AND time < :end{_filters(filters, params)}"
        " GROUP BY bucket, key ORDER BY bucket, key"
    )
    return [dict(r._mapping) for r in conn.execute(text(sql), params)]


def error_analytics(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    interval: timedelta,
    group_by: str = "service",
    severity: str | None = None,
) -> dict[str, Any]:
    """Totals, a breakdown by one dimension and its trend, new groups and regressions."""
    filters = {"severity": severity} if severity else {}
    params: dict[str, Any] = {"start": start, "end": end}
    where = f"time >= :start AND time < :end{_filters(filters, params)}"
    totals = conn.execute(
        text(
            "SELECT count(*) AS events, count(DISTINCT group_id) AS groups,"  # noqa: S608
            " count(DISTINCT user_id) AS users, count(DISTINCT organization_id) AS organizations,"
            " count(*) FILTER (WHERE severity = 'critical') AS critical"
            f" FROM error_events WHERE {where}"
        ),
        params,
    ).one()
    column = _dimension(group_by)
    breakdown = conn.execute(
        text(
            f"SELECT {column}::text AS key, count(*) AS count FROM error_events WHERE {where}"  # noqa: S608
            " GROUP BY key ORDER BY count DESC, key LIMIT 50"
        ),
        params,
    )
    changes = group_change_series(conn, start=start, end=end)
    return {
        "from": start,
        "to": end,
        "totals": dict(totals._mapping),
        "new_groups": sum(1 for c in changes if c["kind"] == "new"),
        "regressions": sum(1 for c in changes if c["kind"] == "regressed"),
        "group_by": group_by,
        "breakdown": [dict(r._mapping) for r in breakdown],
        "series": error_trend(
            conn, start=start, end=end, by=group_by, interval=interval, filters=filters
        ),
    }


def list_groups(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    status: str | None = None,
    service: str | None = None,
    level: str | None = None,
    severity: str | None = None,
    sort: str = "last_seen",
    limit: int = 200,
    search: GroupSearch | None = None,
) -> list[dict[str, Any]]:
    """Groups seen in [start, end) with their event count in the range; `search` narrows
    them (errors/search.py: words, is:, type:, tag:value …)."""
    if status is not None and status not in set(ErrorGroupStatus):
        raise ValueError(f"status must be one of {', '.join(ErrorGroupStatus)}")
    if sort not in GROUP_SORTS:
        raise ValueError(f"sort must be one of {', '.join(GROUP_SORTS)}")
    params: dict[str, Any] = {
        "start": start,
        "end": end,
        "status": status,
        "service": service,
        "level": level,
        "severity": severity,
        "limit": max(1, min(limit, 1000)),
    }
    searched = search_clause(search, params)
    rows = conn.execute(
        text(
            "SELECT g.id, g.error_type, g.message_template, g.culprit, g.level, g.severity,"  # noqa: S608
            " g.status, g.services, g.first_seen, g.last_seen, g.event_count, g.user_count,"
            " g.organization_count, g.resolved_at, g.regressed_at, g.recovered_at,"
            " g.last_release, g.assigned_to, coalesce(r.events, 0) AS events"
            " FROM error_groups g LEFT JOIN (SELECT group_id, count(*) AS events"
            "   FROM error_events WHERE time >= :start AND time < :end GROUP BY group_id) r"
            "   ON r.group_id = g.id"
            " WHERE g.last_seen >= :start AND g.first_seen < :end"
            " AND (CAST(:status AS text) IS NULL OR g.status = :status)"
            " AND (CAST(:service AS text) IS NULL OR CAST(:service AS text) = ANY(g.services))"
            " AND (CAST(:level AS text) IS NULL OR g.level = :level)"
            " AND (CAST(:severity AS text) IS NULL OR g.severity = :severity)"
            f"{searched} ORDER BY {GROUP_SORTS[sort]}, g.id LIMIT :limit"
        ),
        params,
    )
    return [dict(r._mapping) for r in rows]


def list_services(conn: Connection) -> list[str]:
    """Every service that has reported an error, for filters."""
    return list(
        conn.execute(
            text("SELECT DISTINCT unnest(services) AS s FROM error_groups ORDER BY s")
        ).scalars()
    )


def _top(conn: Connection, column: str, group_id: int, start: datetime, end: datetime) -> list:
    rows = conn.execute(
        text(
            f"SELECT {column} AS value, count(*) AS events FROM error_events"  # noqa: S608 - fixed names
            f" WHERE group_id = :g AND time >= :start AND time < :end AND {column} IS NOT NULL"
            " GROUP BY value ORDER BY events DESC, value LIMIT 20"
        ),
        {"g": group_id, "start": start, "end": end},
    )
    return [dict(r._mapping) for r in rows]


def _tag_counts(conn: Connection, group_id: int, start: datetime, end: datetime) -> list:
    rows = conn.execute(
        text(
            "SELECT t.key, t.value, count(*) AS events FROM error_events e,"
            " jsonb_each_text(e.tags) t WHERE e.group_id = :g AND e.time >= :start"
            " AND e.time < :end GROUP BY t.key, t.value ORDER BY t.key, events DESC LIMIT 100"
        ),
        {"g": group_id, "start": start, "end": end},
    )
    return [dict(r._mapping) for r in rows]


def group_detail(
    conn: Connection, *, group_id: int, start: datetime, end: datetime, occurrences: int = 50
) -> dict[str, Any] | None:
    """A group with its latest event (scrubbed stack trace), occurrences, tags, users, history."""
    group = conn.execute(text("SELECT * FROM error_groups WHERE id = :g"), {"g": group_id}).first()
    if group is None:
        return None
    params = {"g": group_id, "start": start, "end": end, "n": occurrences}
    latest = conn.execute(
        text("SELECT * FROM error_events WHERE group_id = :g ORDER BY time DESC LIMIT 1"), params
    ).first()
    recent = conn.execute(
        text(
            "SELECT event_id, time, service_name, severity, message, user_id, organization_id,"
            " release, environment, trace_id, request_id, endpoint_path FROM error_events"
            " WHERE group_id = :g AND time >= :start AND time < :end ORDER BY time DESC LIMIT :n"
        ),
        params,
    )
    history = conn.execute(
        text(
            "SELECT time, kind, actor, release, details FROM error_group_changes"
            " WHERE group_id = :g ORDER BY time, id"
        ),
        params,
    )
    incidents = conn.execute(
        text(
            "SELECT i.id, i.incident_number, i.title, i.severity, i.status FROM incidents i"
            " JOIN incident_error_groups l ON l.incident_id = i.id WHERE l.error_group_id = :g"
            " ORDER BY i.id"
        ),
        params,
    )
    return {
        "group": dict(group._mapping),
        "latest_event": dict(latest._mapping) if latest is not None else None,
        "occurrences": [dict(r._mapping) for r in recent],
        "tags": _tag_counts(conn, group_id, start, end),
        "users": _top(conn, "user_id", group_id, start, end),
        "organizations": _top(conn, "organization_id", group_id, start, end),
        "releases": _top(conn, "release", group_id, start, end),
        "history": [dict(r._mapping) for r in history],
        "incidents": [dict(r._mapping) for r in incidents],
        "related": related_groups(conn, group_id=group_id, start=start, end=end),
    }
