"""Reads for the error-group page: the search over groups, one group's trend and releases, its
tag value distributions, its events, and one event with its neighbours.

Tags: Sentry shows more tags than an SDK sends — environment, release, user, browser, os,
runtime, server name, transaction, handled — derived from the event itself. An event's tags
here are the same: the ones derived from its columns and context (TAG_EXPRESSIONS), with the
tags it was sent with taking precedence. Every SQL fragment is fixed text; keys and values
from a search are bound parameters.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from monitoring_core.errors.search import GroupSearch, TagTerm

__all__ = [
    "TAG_EXPRESSIONS",
    "group_event",
    "group_events",
    "group_header",
    "group_history",
    "group_people",
    "group_status_counts",
    "group_tags",
    "search_clause",
    "trend_step",
]


def _pair(name: str, version: str) -> str:
    """`CPython 3.11.7` from a Sentry context's name and version (NULL when both are)."""
    return (
        f"nullif(concat_ws(' ', e.context #>> '{{contexts,{name},name}}',"
        f" e.context #>> '{{contexts,{name},{version}}}'), '')"
    )


# Tag name -> SQL over an error_events row `e` (fixed text; Sentry's names where it has one).
TAG_EXPRESSIONS: dict[str, str] = {
    "environment": "e.environment",
    "release": "e.release",
    "service": "e.service_name",
    "user": "e.user_id",
    "organization": "e.organization_id",
    "endpoint": "e.endpoint_path",
    "browser": "coalesce(e.context ->> 'browser', " + _pair("browser", "version") + ")",
    "os": _pair("os", "version"),
    "runtime": _pair("runtime", "version"),
    "device": "e.context #>> '{contexts,device,model}'",
    "server_name": "e.context ->> 'server_name'",
    "transaction": "e.context ->> 'transaction'",
    "handled": "e.context #>> '{mechanism,handled}'",
}
# Every tag of an event as one jsonb object: derived ones, then the sent ones over them.
_TAG_OBJECT = (
    "(jsonb_strip_nulls(jsonb_build_object("
    + ", ".join(f"'{k}', {v}" for k, v in TAG_EXPRESSIONS.items())
    + ")) || CASE WHEN jsonb_typeof(e.tags) = 'object' THEN e.tags ELSE '{}'::jsonb END)"
)


def _like(value: str, *, wildcard: bool) -> str:
    """A LIKE pattern matching `value` literally (`*` as any text when `wildcard`)."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%") if wildcard else f"%{escaped}%"


def _tag_condition(term: TagTerm, i: int, params: dict[str, Any]) -> str:
    params[f"tk{i}"] = term.key
    derived = TAG_EXPRESSIONS.get(term.key)
    value = f"coalesce(e.tags ->> :tk{i}, {derived})" if derived else f"(e.tags ->> :tk{i})"
    if "*" in term.value:
        params[f"tv{i}"] = _like(term.value, wildcard=True)
        test = f"coalesce({value} ILIKE :tv{i}, false)"
    else:
        params[f"tv{i}"] = term.value
        test = f"coalesce({value} = :tv{i}, false)"
    return f"NOT {test}" if term.negated else test


def _field_condition(term: TagTerm, i: int, params: dict[str, Any]) -> str:
    name = f"sf{i}"
    if term.key == "type":
        params[name] = _like(term.value, wildcard=True) if "*" in term.value else term.value
        test = f"g.error_type ILIKE :{name}"
    elif term.key == "message":
        params[name] = _like(term.value, wildcard=False)
        test = f"g.message_template ILIKE :{name}"
    elif term.key == "service":
        params[name] = term.value
        test = f"CAST(:{name} AS text) = ANY(g.services)"
    elif term.key in ("level", "severity"):
        params[name] = term.value
        test = f"g.{term.key} = :{name}"  # key checked against GROUP_FIELDS by the parser
    else:
        raise ValueError(f"unknown group field {term.key!r}")
    return f"NOT ({test})" if term.negated else test


def search_clause(search: GroupSearch | None, params: dict[str, Any]) -> str:
    """` AND …` conditions on error_groups `g` (and its events in [:start, :end)) for a search;
    the values go into `params`."""
    if search is None or search.empty:
        return ""
    clauses: list[str] = []
    for i, word in enumerate(search.words):
        params[f"sw{i}"] = _like(word, wildcard=False)
        clauses.append(f"concat_ws(' ', g.error_type, g.message_template, g.culprit) ILIKE :sw{i}")
    if search.statuses:
        params["s_statuses"] = list(search.statuses)
        clauses.append("g.status = ANY(CAST(:s_statuses AS text[]))")
    if search.assigned is not None:
        clauses.append(f"g.assigned_to IS {'NOT ' if search.assigned else ''}NULL")
    if search.assignees:
        params["s_assignees"] = [a for a in search.assignees if a]
        none = " OR g.assigned_to IS NULL" if "" in search.assignees else ""
        clauses.append(f"(g.assigned_to = ANY(CAST(:s_assignees AS text[])){none})")
    clauses += [_field_condition(t, i, params) for i, t in enumerate(search.fields)]
    if search.tags:
        tests = " AND ".join(_tag_condition(t, i, params) for i, t in enumerate(search.tags))
        clauses.append(
            "EXISTS (SELECT 1 FROM error_events e WHERE e.group_id = g.id"  # noqa: S608 - fixed text, values bound
            f" AND e.time >= :start AND e.time < :end AND {tests})"
        )
    return "".join(f" AND {c}" for c in clauses)


def group_status_counts(conn: Connection, *, start: datetime, end: datetime) -> dict[str, int]:
    """Groups seen in [start, end) by status (every status present, 0 when none) — the counts
    the group list shows with its status filter."""
    rows = conn.execute(
        text(
            "SELECT status, count(*) AS n FROM error_groups"
            " WHERE last_seen >= :start AND first_seen < :end GROUP BY status"
        ),
        {"start": start, "end": end},
    )
    counts = {s: 0 for s in ("unresolved", "regressed", "resolved", "ignored")}
    counts.update({r.status: int(r.n) for r in rows})
    return counts


def trend_step(start: datetime, end: datetime) -> timedelta:
    """A sparkline bucket: an hour up to 3 days, 6 hours up to 2 weeks, else a day."""
    span = end - start
    if span <= timedelta(days=3):
        return timedelta(hours=1) if span > timedelta(hours=2) else timedelta(minutes=5)
    return timedelta(hours=6) if span <= timedelta(days=14) else timedelta(days=1)


def group_header(
    conn: Connection, *, group_id: int, start: datetime, end: datetime
) -> dict[str, Any] | None:
    """A group with its first and last release seen, its events and users in [start, end),
    and its trend: `trend` is [(bucket start, events)], zero-filled, `step` apart."""
    group = conn.execute(text("SELECT * FROM error_groups WHERE id = :g"), {"g": group_id}).first()
    if group is None:
        return None
    step = trend_step(start, end)
    params = {"g": group_id, "start": start, "end": end, "step": step}
    releases = conn.execute(
        text(
            "SELECT (SELECT release FROM error_events WHERE group_id = :g AND release IS NOT NULL"
            "   ORDER BY time LIMIT 1) AS first_release,"
            " (SELECT release FROM error_events WHERE group_id = :g AND release IS NOT NULL"
            "   ORDER BY time DESC LIMIT 1) AS last_release"
        ),
        params,
    ).one()
    in_range = conn.execute(
        text(
            "SELECT count(*) AS events, count(DISTINCT user_id) AS users FROM error_events"
            " WHERE group_id = :g AND time >= :start AND time < :end"
        ),
        params,
    ).one()
    trend = conn.execute(
        text(
            "WITH b AS (SELECT date_bin(:step, time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,"
            "   count(*) AS n FROM error_events"
            "   WHERE group_id = :g AND time >= :start AND time < :end GROUP BY bucket)"
            " SELECT s.bucket, coalesce(b.n, 0) AS n FROM generate_series("
            "   date_bin(:step, CAST(:start AS timestamptz), TIMESTAMPTZ '2000-01-01 00:00:00+00'),"
            "   CAST(:end AS timestamptz) - interval '1 microsecond', :step) AS s(bucket)"
            " LEFT JOIN b ON b.bucket = s.bucket ORDER BY s.bucket"
        ),
        params,
    )
    incidents = conn.execute(
        text(
            "SELECT i.id, i.incident_number, i.title, i.status FROM incidents i"
            " JOIN incident_error_groups l ON l.incident_id = i.id WHERE l.error_group_id = :g"
            " ORDER BY i.id"
        ),
        params,
    )
    return {
        "group": dict(group._mapping),
        "incidents": [dict(r._mapping) for r in incidents],
        "first_release": releases.first_release,
        "last_release": releases.last_release,
        "events": int(in_range.events),
        "users": int(in_range.users),
        "step": step,
        "trend": [(r.bucket, int(r.n)) for r in trend],
    }


def group_tags(
    conn: Connection, *, group_id: int, start: datetime, end: datetime, per_key: int = 10
) -> list[dict[str, Any]]:
    """Tag value distributions of a group's events in [start, end): per key (most tagged
    first) its top `per_key` values with `events`, the key's `total` tagged events and
    `distinct` values; `share` = events / total."""
    rows = conn.execute(
        text(
            "WITH kv AS (SELECT t.key, t.value FROM error_events e,"  # noqa: S608 - fixed text
            f"   jsonb_each_text({_TAG_OBJECT}) t"
            "   WHERE e.group_id = :g AND e.time >= :start AND e.time < :end),"
            " c AS (SELECT key, value, count(*) AS n FROM kv GROUP BY key, value),"
            " r AS (SELECT key, value, n, sum(n) OVER w AS total, count(*) OVER w AS distinct_n,"
            "   row_number() OVER (PARTITION BY key ORDER BY n DESC, value) AS rank"
            "   FROM c WINDOW w AS (PARTITION BY key))"
            " SELECT key, value, n, total, distinct_n FROM r WHERE rank <= :per_key"
            " ORDER BY total DESC, key, rank"
        ),
        {"g": group_id, "start": start, "end": end, "per_key": max(1, min(per_key, 50))},
    )
    return [
        {
            "key": r.key,
            "value": r.value,
            "events": int(r.n),
            "total": int(r.total),
            "distinct": int(r.distinct_n),
            "share": int(r.n) / int(r.total),
        }
        for r in rows
    ]


def _hex(value: Any) -> str:
    return value.hex if isinstance(value, uuid.UUID) else str(value).replace("-", "")


def group_events(
    conn: Connection, *, group_id: int, start: datetime, end: datetime, limit: int = 100
) -> list[dict[str, Any]]:
    """A group's newest events in [start, end) (event ids as 32 hex digits, Sentry's form)."""
    rows = conn.execute(
        text(
            "SELECT event_id, time, message, service_name, release, environment, user_id,"
            " organization_id, endpoint_path, trace_id FROM error_events"
            " WHERE group_id = :g AND time >= :start AND time < :end"
            " ORDER BY time DESC, event_id DESC LIMIT :n"
        ),
        {"g": group_id, "start": start, "end": end, "n": max(1, min(limit, 1000))},
    )
    return [dict(r._mapping) | {"event_id": _hex(r.event_id)} for r in rows]


_NEIGHBOURS = {
    # name: (condition on (time, event_id) against the shown event, order)
    "older": ("(time, event_id) < (:t, :id)", "time DESC, event_id DESC"),
    "newer": ("(time, event_id) > (:t, :id)", "time, event_id"),
    "oldest": ("(time, event_id) < (:t, :id)", "time, event_id"),
    "newest": ("(time, event_id) > (:t, :id)", "time DESC, event_id DESC"),
}


def group_event(
    conn: Connection, *, group_id: int, event_id: str | None = None
) -> dict[str, Any] | None:
    """One event of a group (the newest when `event_id` is None or not in the group) with the
    ids of its `older`/`newer` neighbours and the group's `oldest`/`newest` (None at an end)
    — navigation over the group's whole history, as Sentry's. `asked_missing`: an id was
    asked for and is not one of this group's events."""
    row = None
    if event_id:
        try:
            wanted = uuid.UUID(event_id)
        except ValueError:
            wanted = None
        if wanted is not None:
            row = conn.execute(
                text(
                    f"SELECT e.*, {_TAG_OBJECT} AS all_tags FROM error_events e"  # noqa: S608 - fixed text
                    " WHERE e.group_id = :g AND e.event_id = :id LIMIT 1"
                ),
                {"g": group_id, "id": wanted},
            ).first()
    asked_missing = bool(event_id) and row is None
    if row is None:
        row = conn.execute(
            text(
                f"SELECT e.*, {_TAG_OBJECT} AS all_tags FROM error_events e"  # noqa: S608 - fixed text
                " WHERE e.group_id = :g ORDER BY e.time DESC, e.event_id DESC LIMIT 1"
            ),
            {"g": group_id},
        ).first()
    if row is None:
        return None
    params = {"g": group_id, "t": row.time, "id": row.event_id}
    neighbours: dict[str, str | None] = {}
    for name, (condition, order) in _NEIGHBOURS.items():
        found = conn.execute(
            text(
                f"SELECT event_id FROM error_events WHERE group_id = :g AND {condition}"  # noqa: S608 - fixed text
                f" ORDER BY {order} LIMIT 1"
            ),
            params,
        ).scalar()
        neighbours[name] = _hex(found) if found is not None else None
    event = dict(row._mapping) | {"event_id": _hex(row.event_id)}
    return {"event": event, "asked_missing": asked_missing, **neighbours}


def group_people(
    conn: Connection, *, group_id: int, start: datetime, end: datetime, top: int = 20
) -> dict[str, list[dict[str, Any]]]:
    """The users and organizations with the most events of the group in [start, end)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, column in (("users", "user_id"), ("organizations", "organization_id")):
        rows = conn.execute(
            text(
                f"SELECT {column} AS value, count(*) AS events, max(time) AS last_seen"  # noqa: S608 - fixed names
                f" FROM error_events WHERE group_id = :g AND time >= :start AND time < :end"
                f" AND {column} IS NOT NULL GROUP BY value ORDER BY events DESC, value LIMIT :n"
            ),
            {"g": group_id, "start": start, "end": end, "n": max(1, min(top, 200))},
        )
        out[name] = [dict(r._mapping) for r in rows]
    return out


def group_history(conn: Connection, *, group_id: int) -> list[dict[str, Any]]:
    """A group's history (new, regressed, resolved, assigned …), newest first."""
    rows = conn.execute(
        text(
            "SELECT time, kind, actor, release, details FROM error_group_changes"
            " WHERE group_id = :g ORDER BY time DESC, id DESC LIMIT 500"
        ),
        {"g": group_id},
    )
    return [dict(r._mapping) for r in rows]
