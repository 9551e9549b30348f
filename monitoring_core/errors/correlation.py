"""Related errors: the same trace or request across services, and bursts that start together.

A burst starts in a minute with events after `quiet` minutes without any; minutes too close to
the start of the data (no quiet period visible before them) are not counted as starts, so a
steady stream is not a burst. Two groups in different services are related when one of their
burst starts lie within `window` (5 minutes) of each other.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import BigInteger

__all__ = [
    "BURST_MIN_EVENTS",
    "BURST_QUIET",
    "BURST_WINDOW",
    "burst_starts",
    "related_by_burst",
    "related_events",
    "related_groups",
]

BURST_QUIET = timedelta(minutes=30)
BURST_WINDOW = timedelta(minutes=5)
BURST_MIN_EVENTS = 3


def burst_starts(
    minutes: Mapping[datetime, int],
    *,
    since: datetime,
    quiet: timedelta = BURST_QUIET,
    min_events: int = BURST_MIN_EVENTS,
) -> list[datetime]:
    """Minutes that begin a burst: events after `quiet` without any, and at least
    `min_events` within BURST_WINDOW from there (a lone error is not a burst); the counts are
    known from `since` on."""
    starts: list[datetime] = []
    ordered = sorted(minutes)
    previous: datetime | None = None
    for i, minute in enumerate(ordered):
        gap_start = previous if previous is not None else since
        previous = minute
        if minute - gap_start < quiet:
            continue
        window = sum(minutes[m] for m in ordered[i:] if m - minute < BURST_WINDOW)
        if window >= min_events:
            starts.append(minute)
    return starts


def related_by_burst(
    target: int,
    starts: Mapping[int, list[datetime]],
    services: Mapping[int, Iterable[str]],
    *,
    window: timedelta = BURST_WINDOW,
) -> dict[int, timedelta]:
    """Groups in other services with a burst start within `window` of one of target's: the gap."""
    mine = starts.get(target, [])
    own = set(services.get(target, ()))
    related: dict[int, timedelta] = {}
    for group, theirs in starts.items():
        if group == target or not set(services.get(group, ())) - own:
            continue
        gaps = [abs(a - b) for a in mine for b in theirs if abs(a - b) <= window]
        if gaps:
            related[group] = min(gaps)
    return related


def related_events(conn: Connection, *, event_id: uuid.UUID, limit: int = 100) -> dict[str, Any]:
    """The event and the other events sharing its trace_id or request_id (any service)."""
    event = conn.execute(
        text(
            "SELECT event_id, time, group_id, service_name, trace_id, request_id "
            "FROM error_events WHERE event_id = :id ORDER BY time DESC LIMIT 1"
        ),
        {"id": event_id},
    ).first()
    if event is None:
        raise LookupError(f"no error event {event_id}")
    rows = conn.execute(
        text(
            "SELECT event_id, time, group_id, service_name, level, severity, error_type, message,"
            " trace_id, request_id, CASE WHEN trace_id = CAST(:trace AS text) THEN 'trace_id' ELSE 'request_id'"
            " END AS shared FROM error_events"
            " WHERE event_id <> :id AND (trace_id = CAST(:trace AS text)"
            " OR request_id = CAST(:request AS text))"
            " ORDER BY time LIMIT :limit"
        ),
        {"id": event_id, "trace": event.trace_id, "request": event.request_id, "limit": limit},
    )
    return {"event": dict(event._mapping), "related": [dict(r._mapping) for r in rows]}


def _minutes_by_group(
    conn: Connection, *, start: datetime, end: datetime
) -> tuple[dict[int, dict[datetime, int]], dict[int, set[str]]]:
    rows = conn.execute(
        text(
            "SELECT group_id, date_trunc('minute', time) AS minute, count(*) AS n,"
            " array_agg(DISTINCT service_name) AS services FROM error_events"
            " WHERE time >= :start AND time < :end GROUP BY group_id, minute"
        ),
        {"start": start, "end": end},
    )
    minutes: dict[int, dict[datetime, int]] = {}
    services: dict[int, set[str]] = {}
    for r in rows:
        minutes.setdefault(r.group_id, {})[r.minute] = int(r.n)
        services.setdefault(r.group_id, set()).update(r.services)
    return minutes, services


def _trace_related(
    conn: Connection, *, group_id: int, start: datetime, end: datetime
) -> dict[int, int]:
    # Two statements rather than a self-join on trace_id: error_events is distributed by
    # group_id (docs/SCALING.md), so the first reads one group's shard and the second is a
    # filter every shard answers on its own.
    mine = conn.execute(
        text(
            "SELECT array_agg(DISTINCT trace_id) FILTER (WHERE trace_id IS NOT NULL),"
            " array_agg(DISTINCT request_id) FILTER (WHERE request_id IS NOT NULL)"
            " FROM error_events WHERE group_id = :g AND time >= :start AND time < :end"
        ),
        {"g": group_id, "start": start, "end": end},
    ).one()
    traces, requests = mine[0] or [], mine[1] or []
    if not traces and not requests:
        return {}
    rows = conn.execute(
        text(
            "SELECT group_id, count(DISTINCT trace_id) + count(DISTINCT request_id) AS n"
            " FROM error_events WHERE group_id <> :g AND time >= :start AND time < :end"
            " AND (trace_id = ANY(:traces) OR request_id = ANY(:requests))"
            " GROUP BY group_id"
        ),
        {"g": group_id, "start": start, "end": end, "traces": traces, "requests": requests},
    )
    return {int(r.group_id): int(r.n) for r in rows}


def related_groups(
    conn: Connection, *, group_id: int, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Groups related to this one in [start, end): shared traces/requests, bursts together."""
    shared = _trace_related(conn, group_id=group_id, start=start, end=end)
    minutes, services = _minutes_by_group(conn, start=start - BURST_QUIET, end=end)
    starts = {g: burst_starts(m, since=start - BURST_QUIET) for g, m in minutes.items()}
    bursts = related_by_burst(group_id, starts, services)
    ids = sorted(set(shared) | set(bursts))
    if not ids:
        return []
    rows = conn.execute(
        text(
            "SELECT id, error_type, message_template, services, level, severity, status,"
            " last_seen, event_count FROM error_groups WHERE id = ANY(:ids)"
        ).bindparams(bindparam("ids", type_=ARRAY(BigInteger))),
        {"ids": ids},
    )
    out = []
    for r in rows:
        reasons = []
        if r.id in shared:
            reasons.append(f"{shared[r.id]} shared trace/request ids")
        if r.id in bursts:
            reasons.append(f"bursts began {int(bursts[r.id].total_seconds() // 60)} min apart")
        out.append({**dict(r._mapping), "reasons": reasons, "shared_ids": shared.get(r.id, 0)})
    return sorted(out, key=lambda g: (-g["shared_ids"], g["id"]))
