"""Writing error events: dedup, group upsert, exact distinct users/orgs, COPY of the events.

Every function takes a Connection and never commits. Concurrency: groups are upserted in
fingerprint order (two batches lock their rows in the same order, so they cannot deadlock),
the upsert's row lock is held until commit, so regression and incident decisions made after
it see a group no other batch can change meanwhile; member pairs go through
`ON CONFLICT DO NOTHING RETURNING`, so a user is counted once per group however many
requests race.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from psycopg.types.json import Jsonb
from sqlalchemy import Connection, bindparam, insert, text, update
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.types import BigInteger, DateTime, Text, TypeDecorator

from monitoring_core.errors.model import ErrorInput
from monitoring_core.ingest.copy import copy_rows
from monitoring_core.schema import error_group_changes, error_groups
from monitoring_core.wedding_calendar import SEVERITY_ORDER

__all__ = [
    "EVENT_COLUMNS",
    "GroupRow",
    "PreparedError",
    "claim_and_upsert",
    "claim_event_ids",
    "insert_events",
    "mark_regressed",
    "open_incident_for_group",
    "record_change",
    "record_members",
    "record_new_groups",
    "store_events_and_members",
    "upsert_groups",
]


class _RawJson(TypeDecorator[bytes]):
    """jsonb from JSON text already serialised by orjson (bytes): SQLAlchemy's JSONB type
    would serialise it again with the standard library."""

    impl = JSONB
    cache_ok = True

    def bind_processor(self, dialect: Any) -> Any:
        return lambda value: Jsonb(value, dumps=_identity)


def _identity(value: Any) -> Any:
    return value


@dataclass
class PreparedError:
    """A scrubbed, fingerprinted, classified event ready to store."""

    event: ErrorInput
    fingerprint: str
    message_template: str
    culprit: str | None
    severity: str
    group_id: int = 0


@dataclass(frozen=True)
class GroupRow:
    id: int
    fingerprint: str
    status: str
    inserted: bool
    resolved_at: datetime | None
    resolved_in_release: str | None


def claim_event_ids(conn: Connection, events: Sequence[PreparedError]) -> list[PreparedError]:
    """The events to store: client event ids seen before (or twice in the batch) are dropped."""
    wanted = {e.event.event_id: e for e in events if e.event.dedup}
    if not wanted:
        return list(events)
    ids = sorted(wanted)  # a fixed order: concurrent batches lock ids alike
    claimed = set(
        conn.execute(
            text(
                "INSERT INTO error_event_ids (event_id, time) "
                "SELECT * FROM unnest(:ids, :times) ON CONFLICT DO NOTHING RETURNING event_id"
            ).bindparams(
                bindparam("ids", type_=ARRAY(UUID(as_uuid=True))),
                bindparam("times", type_=ARRAY(DateTime(timezone=True))),
            ),
            {"ids": ids, "times": [wanted[i].event.time for i in ids]},
        ).scalars()
    )
    kept: list[PreparedError] = []
    for e in events:
        if not e.event.dedup:
            kept.append(e)
        elif e.event.event_id in claimed and wanted[e.event.event_id] is e:
            kept.append(e)
    return kept


def _group_rows(events: Sequence[PreparedError]) -> list[dict[str, Any]]:
    by_fp: dict[str, list[PreparedError]] = defaultdict(list)
    for e in events:
        by_fp[e.fingerprint].append(e)
    rows = []
    for fp in sorted(by_fp):
        group = by_fp[fp]
        latest = max(group, key=lambda e: e.event.time)
        rows.append(
            {
                "fingerprint": fp,
                "error_type": latest.event.error_type,
                "message_template": latest.message_template,
                "culprit": latest.culprit,
                "level": latest.event.level,
                "severity": max((e.severity for e in group), key=SEVERITY_ORDER.index),
                "services": sorted({e.event.service_name for e in group}),
                "first_seen": min(e.event.time for e in group).isoformat(),
                "last_seen": latest.event.time.isoformat(),
                "event_count": len(group),
                "last_release": latest.event.release,
            }
        )
    return rows


_UPSERT_SQL = """
    INSERT INTO error_groups AS g (fingerprint, error_type, message_template, culprit, level,
        severity, services, first_seen, last_seen, event_count, last_release)
    SELECT r.fingerprint, r.error_type, r.message_template, r.culprit, r.level, r.severity,
        r.services, r.first_seen, r.last_seen, r.event_count, r.last_release
    FROM jsonb_to_recordset(:rows) AS r(fingerprint text, error_type text,
        message_template text, culprit text, level text, severity text, services text[],
        first_seen timestamptz, last_seen timestamptz, event_count bigint, last_release text)
    {where}ORDER BY r.fingerprint
    ON CONFLICT (fingerprint) DO UPDATE SET
        event_count = g.event_count + excluded.event_count,
        first_seen = least(g.first_seen, excluded.first_seen),
        last_seen = greatest(g.last_seen, excluded.last_seen),
        services = ARRAY(SELECT DISTINCT s FROM unnest(g.services || excluded.services) s
                         ORDER BY s),
        severity = CASE WHEN array_position(:order, excluded.severity)
                             > array_position(:order, g.severity)
                        THEN excluded.severity ELSE g.severity END,
        error_type = CASE WHEN excluded.last_seen >= g.last_seen
                          THEN excluded.error_type ELSE g.error_type END,
        last_release = CASE WHEN excluded.last_seen >= g.last_seen
                            THEN coalesce(excluded.last_release, g.last_release)
                            ELSE g.last_release END,
        recovered_at = CASE WHEN excluded.last_seen >= g.recovered_at
                            THEN NULL ELSE g.recovered_at END
    RETURNING g.id, g.fingerprint, g.status, (g.xmax = 0) AS inserted, g.resolved_at,
        g.resolved_in_release
    """
# The group rows go as orjson bytes (_RawJson): SQLAlchemy's JSONB type serialised them with
# the standard library's encoder (~10 µs an event in a group commit's batch).
_UPSERT = text(_UPSERT_SQL.format(where="")).bindparams(
    bindparam("rows", type_=_RawJson()), bindparam("order", type_=ARRAY(Text))
)


# The claim and the upsert in one statement (one round trip instead of two), for a batch
# whose event ids are all new, as nearly every batch's are: the groups are upserted only when
# every id was claimed (else nothing is, and the caller upserts the events it kept).
_CLAIM_AND_UPSERT = text(
    "WITH claimed AS ("  # noqa: S608 - constant SQL text (the upsert's), values bound
    " INSERT INTO error_event_ids (event_id, time)"
    " SELECT * FROM unnest(:ids, :times) ON CONFLICT DO NOTHING RETURNING event_id"
    "), upserted AS ("
    + _UPSERT_SQL.format(where="WHERE (SELECT count(*) FROM claimed) = :n\n    ")
    + ") SELECT c.ids AS claimed, u.* FROM (SELECT array_agg(event_id) AS ids FROM claimed) c"
    " LEFT JOIN upserted u ON true"
).bindparams(
    bindparam("ids", type_=ARRAY(UUID(as_uuid=True))),
    bindparam("times", type_=ARRAY(DateTime(timezone=True))),
    bindparam("rows", type_=_RawJson()),
    bindparam("order", type_=ARRAY(Text)),
)


def claim_and_upsert(
    conn: Connection, events: Sequence[PreparedError]
) -> tuple[list[PreparedError], dict[str, GroupRow]]:
    """`claim_event_ids` then `upsert_groups` on the events kept: (kept, groups). One
    statement when every client event id is new; a second when some were seen before."""
    wanted = {e.event.event_id: e for e in events if e.event.dedup}
    if not wanted:
        kept = list(events)
        return kept, upsert_groups(conn, kept)
    # What claim_event_ids keeps when every id is new: one event per id (the last one).
    assumed = [e for e in events if not e.event.dedup or wanted[e.event.event_id] is e]
    ids = sorted(wanted)  # a fixed order: concurrent batches lock ids alike
    result = conn.execute(
        _CLAIM_AND_UPSERT,
        {
            "ids": ids,
            "times": [wanted[i].event.time for i in ids],
            "n": len(ids),
            "rows": _dumps(_group_rows(assumed)),
            "order": list(SEVERITY_ORDER),
        },
    ).all()
    claimed = set(result[0].claimed or ())
    if len(claimed) < len(ids):  # some were stored before: no group was touched
        kept = [e for e in assumed if not e.event.dedup or e.event.event_id in claimed]
        return kept, upsert_groups(conn, kept)
    groups = {
        r.fingerprint: GroupRow(
            id=r.id,
            fingerprint=r.fingerprint,
            status=r.status,
            inserted=r.inserted,
            resolved_at=r.resolved_at,
            resolved_in_release=r.resolved_in_release,
        )
        for r in result
    }
    for e in assumed:
        e.group_id = groups[e.fingerprint].id
    return assumed, groups


def upsert_groups(conn: Connection, events: Sequence[PreparedError]) -> dict[str, GroupRow]:
    """Create or update the groups of these events; sets each event's group_id."""
    rows = _group_rows(events)
    if not rows:
        return {}
    result = conn.execute(_UPSERT, {"rows": _dumps(rows), "order": list(SEVERITY_ORDER)})
    groups = {r.fingerprint: GroupRow(**r._mapping) for r in result}
    for e in events:
        e.group_id = groups[e.fingerprint].id
    return groups


_MEMBERS = text(
    """
    WITH fresh AS (
        INSERT INTO error_group_members (group_id, kind, value)
        SELECT * FROM unnest(:group_ids, :kinds, :vals)
        ON CONFLICT DO NOTHING RETURNING group_id, kind
    ), counts AS (
        SELECT group_id, count(*) FILTER (WHERE kind = 'user') AS users,
               count(*) FILTER (WHERE kind = 'organization') AS orgs
        FROM fresh GROUP BY group_id
    )
    UPDATE error_groups g SET user_count = g.user_count + c.users,
                              organization_count = g.organization_count + c.orgs
    FROM counts c WHERE g.id = c.group_id
    """
).bindparams(
    bindparam("group_ids", type_=ARRAY(BigInteger)),
    bindparam("kinds", type_=ARRAY(Text)),
    bindparam("vals", type_=ARRAY(Text)),
)


def _member_pairs(events: Sequence[PreparedError]) -> set[tuple[int, str, str]]:
    pairs = set()
    for e in events:
        if e.event.user_id:
            pairs.add((e.group_id, "user", e.event.user_id))
        if e.event.organization_id:
            pairs.add((e.group_id, "organization", e.event.organization_id))
    return pairs


def record_members(conn: Connection, events: Sequence[PreparedError]) -> None:
    """Count each group's distinct users and organizations exactly once."""
    pairs = _member_pairs(events)
    if not pairs:
        return
    ordered = sorted(pairs)
    conn.execute(
        _MEMBERS,
        {
            "group_ids": [p[0] for p in ordered],
            "kinds": [p[1] for p in ordered],
            "vals": [p[2] for p in ordered],
        },
    )


def record_change(
    conn: Connection,
    *,
    group_id: int,
    kind: str,
    now: datetime,
    actor: str | None = None,
    release: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one entry to a group's history (new, regressed, resolved, recovered …)."""
    conn.execute(
        insert(error_group_changes).values(
            group_id=group_id,
            kind=kind,
            time=now,
            actor=actor,
            release=release,
            details=details or {},
        )
    )


def record_new_groups(conn: Connection, group_ids: Sequence[int], *, now: datetime) -> None:
    """One `new` history entry per group created by this batch (one statement)."""
    if group_ids:
        conn.execute(
            insert(error_group_changes),
            [{"group_id": g, "kind": "new", "time": now, "details": {}} for g in group_ids],
        )


def mark_regressed(conn: Connection, *, group_id: int, now: datetime, release: str | None) -> bool:
    """Flip a resolved group to regressed; True when this call did it."""
    changed = conn.execute(
        update(error_groups)
        .where(error_groups.c.id == group_id, error_groups.c.status == "resolved")
        .values(status="regressed", regressed_at=now)
        .returning(error_groups.c.id)
    ).first()
    if changed is None:
        return False
    record_change(conn, group_id=group_id, kind="regressed", now=now, release=release)
    return True


EVENT_COLUMNS = (
    ("time", "timestamptz"),
    ("event_id", "uuid"),
    ("group_id", "int8"),
    ("error_type", "text"),
    ("message", "text"),
    ("service_name", "text"),
    ("level", "text"),
    ("severity", "text"),
    ("stack_trace", "text"),
    ("frames", "jsonb"),
    ("endpoint_path", "text"),
    ("user_id", "text"),
    ("organization_id", "text"),
    ("session_id", "text"),
    ("request_id", "text"),
    ("trace_id", "text"),
    ("release", "text"),
    ("environment", "text"),
    ("tags", "jsonb"),
    ("context", "jsonb"),
)


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, default=str)  # bytes: psycopg sends them without re-encoding


def _event_row(p: PreparedError) -> tuple[Any, ...]:
    e = p.event
    return (
        e.time,
        e.event_id,
        p.group_id,
        e.error_type,
        e.message,
        e.service_name,
        e.level,
        p.severity,
        e.stack_trace,
        Jsonb(e.frames, dumps=_dumps),
        e.endpoint_path,
        e.user_id,
        e.organization_id,
        e.session_id,
        e.request_id,
        e.trace_id,
        e.release,
        e.environment,
        Jsonb(e.tags, dumps=_dumps),
        Jsonb(e.context, dumps=_dumps),
    )


def insert_events(conn: Connection, events: Sequence[PreparedError]) -> int:
    """COPY the events into error_events (their partitions must exist)."""
    return copy_rows(
        conn,
        "error_events",
        [c for c, _ in EVENT_COLUMNS],
        [t for _, t in EVENT_COLUMNS],
        (_event_row(p) for p in events),
    )


# A group commit's batch (a few events from as many requests): the events and their groups'
# distinct users and organizations in one statement, instead of a members statement and a
# COPY (two round trips of its own: start, then end). Larger batches keep COPY.
SMALL_INSERT = 64
_EVENT_RECORD = ", ".join(f"{c} {t}" for c, t in EVENT_COLUMNS)
_EVENT_NAMES = ", ".join(c for c, _ in EVENT_COLUMNS)
_EVENTS_AND_MEMBERS = text(
    f"""
    WITH events AS (
        INSERT INTO error_events ({_EVENT_NAMES})
        SELECT {_EVENT_NAMES} FROM jsonb_to_recordset(:events) AS r({_EVENT_RECORD})
    ), fresh AS (
        INSERT INTO error_group_members (group_id, kind, value)
        SELECT * FROM unnest(:group_ids, :kinds, :vals)
        ON CONFLICT DO NOTHING RETURNING group_id, kind
    ), counts AS (
        SELECT group_id, count(*) FILTER (WHERE kind = 'user') AS users,
               count(*) FILTER (WHERE kind = 'organization') AS orgs
        FROM fresh GROUP BY group_id
    )
    UPDATE error_groups g SET user_count = g.user_count + c.users,
                              organization_count = g.organization_count + c.orgs
    FROM counts c WHERE g.id = c.group_id
    """  # noqa: S608 - column names from EVENT_COLUMNS, values bound
).bindparams(
    bindparam("events", type_=_RawJson()),
    bindparam("group_ids", type_=ARRAY(BigInteger)),
    bindparam("kinds", type_=ARRAY(Text)),
    bindparam("vals", type_=ARRAY(Text)),
)


def _event_dict(p: PreparedError) -> dict[str, Any]:
    e = p.event
    return {
        "time": e.time,
        "event_id": e.event_id,
        "group_id": p.group_id,
        "error_type": e.error_type,
        "message": e.message,
        "service_name": e.service_name,
        "level": e.level,
        "severity": p.severity,
        "stack_trace": e.stack_trace,
        "frames": e.frames,
        "endpoint_path": e.endpoint_path,
        "user_id": e.user_id,
        "organization_id": e.organization_id,
        "session_id": e.session_id,
        "request_id": e.request_id,
        "trace_id": e.trace_id,
        "release": e.release,
        "environment": e.environment,
        "tags": e.tags,
        "context": e.context,
    }


def store_events_and_members(conn: Connection, events: Sequence[PreparedError]) -> int:
    """`record_members` and `insert_events` for these events: one statement for a small
    batch (up to SMALL_INSERT events), the two of them for a larger one. Returns the count."""
    if len(events) > SMALL_INSERT:
        record_members(conn, events)
        return insert_events(conn, events)
    if not events:
        return 0
    ordered = sorted(_member_pairs(events))
    conn.execute(
        _EVENTS_AND_MEMBERS,
        {
            "events": _dumps([_event_dict(p) for p in events]),
            "group_ids": [p[0] for p in ordered],
            "kinds": [p[1] for p in ordered],
            "vals": [p[2] for p in ordered],
        },
    )
    return len(events)


def open_incident_for_group(conn: Connection, *, group_id: int) -> int | None:
    """The id of an unresolved incident already linked to the group, if any."""
    row = conn.execute(
        text(
            "SELECT i.id FROM incident_error_groups l JOIN incidents i ON i.id = l.incident_id "
            "WHERE l.error_group_id = :g AND i.status NOT IN ('resolved', 'closed') "
            "ORDER BY i.id DESC LIMIT 1"
        ),
        {"g": group_id},
    ).first()
    return None if row is None else int(row[0])
