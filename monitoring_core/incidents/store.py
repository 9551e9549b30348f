"""Incident rows: open one (numbered safely under concurrency), link, write the timeline.

Functions take a Connection and never commit: the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Integer, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from monitoring_core.config import load_settings
from monitoring_core.enums import WeddingImpact
from monitoring_core.incidents.rules import (
    SOURCES,
    default_wedding_impact,
    format_incident_number,
    incident_year,
    validate_severity,
)
from monitoring_core.live_settings import read_live
from monitoring_core.schema import (
    alert_instances,
    incident_alerts,
    incident_error_groups,
    incident_timeline,
    incidents,
)
from monitoring_core.wedding_calendar import is_wedding_day

__all__ = [
    "add_timeline_entry",
    "get_incident",
    "link_alert",
    "link_error_group",
    "list_timeline",
    "next_incident_number",
    "open_incident",
]

# Two-key advisory locks live in their own key space, apart from the jobs' one-key locks.
_NUMBER_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('incident_number'), :year)")


def next_incident_number(conn: Connection, *, year: int) -> str:
    """The next free `INC-YYYY-NNNN`, holding a per-year lock until the transaction ends.

    The transaction-scoped advisory lock serialises numbering per year: a second opener waits
    until the first commits, then its fresh READ COMMITTED snapshot sees the number taken.
    """
    conn.execute(_NUMBER_LOCK, {"year": year})
    sequence = func.split_part(incidents.c.incident_number, "-", 3).cast(Integer)
    highest = conn.execute(
        select(func.max(sequence)).where(incidents.c.incident_number.like(f"INC-{year:04d}-%"))
    ).scalar()
    return format_incident_number(year, (highest or 0) + 1)


def open_incident(
    conn: Connection,
    *,
    title: str,
    severity: str,
    affected_services: Sequence[str],
    source: str,
    created_by: str,
    now: datetime,
    description: str = "",
    wedding_impact: str | None = None,
    alert_instance_id: int | None = None,
    error_group_id: int | None = None,
    tz: ZoneInfo | None = None,
) -> dict[str, Any]:
    """Insert an open incident, link its alert/error group and write the first timeline entry."""
    if not title.strip():
        raise ValueError("title must not be empty")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {sorted(SOURCES)}, got {source!r}")
    sev = validate_severity(severity)
    tz = tz or read_live(conn, load_settings()).calendar
    saturday = is_wedding_day(now, tz)
    impact = (
        WeddingImpact(wedding_impact)
        if wedding_impact is not None
        else default_wedding_impact(sev, is_saturday=saturday)
    )
    number = next_incident_number(conn, year=incident_year(now, tz))
    row = conn.execute(
        insert(incidents)
        .values(
            incident_number=number,
            title=title.strip(),
            description=description,
            severity=sev.value,
            status="open",
            affected_services=list(affected_services),
            detected_at=now,
            created_by=created_by,
            is_saturday=saturday,
            wedding_impact=impact.value,
            created_at=now,
            updated_at=now,
        )
        .returning(*incidents.c)
    ).one()
    incident = dict(row._mapping)
    details = {
        "source": source,
        "severity": sev.value,
        "is_saturday": saturday,
        "wedding_impact": impact.value,
        "alert_instance_id": alert_instance_id,
        "error_group_id": error_group_id,
    }
    add_timeline_entry(
        conn,
        incident_id=incident["id"],
        kind="opened",
        message=f"{number} opened ({sev.value}, from {source}): {incident['title']}",
        actor=created_by,
        now=now,
        details=details,
    )
    if alert_instance_id is not None:
        link_alert(conn, incident_id=incident["id"], alert_instance_id=alert_instance_id, now=now)
    if error_group_id is not None:
        link_error_group(conn, incident_id=incident["id"], error_group_id=error_group_id, now=now)
    return incident


def link_alert(
    conn: Connection,
    *,
    incident_id: int,
    alert_instance_id: int,
    now: datetime,
    actor: str | None = None,
) -> bool:
    """Link an alert instance (and point it back); True when the link is new."""
    created = (
        conn.execute(
            pg_insert(incident_alerts)
            .values(incident_id=incident_id, alert_instance_id=alert_instance_id, created_at=now)
            .on_conflict_do_nothing()
            .returning(text("1"))
        ).first()
        is not None
    )
    conn.execute(
        update(alert_instances)
        .where(alert_instances.c.id == alert_instance_id)
        .values(incident_id=incident_id)
    )
    if created and actor is not None:
        add_timeline_entry(
            conn,
            incident_id=incident_id,
            kind="alert_linked",
            message=f"Alert instance {alert_instance_id} linked",
            actor=actor,
            now=now,
            details={"alert_instance_id": alert_instance_id},
        )
    return bool(created)


def link_error_group(
    conn: Connection,
    *,
    incident_id: int,
    error_group_id: int,
    now: datetime,
    actor: str | None = None,
) -> bool:
    """Link an error group; True when the link is new."""
    created = (
        conn.execute(
            pg_insert(incident_error_groups)
            .values(incident_id=incident_id, error_group_id=error_group_id, created_at=now)
            .on_conflict_do_nothing()
            .returning(text("1"))
        ).first()
        is not None
    )
    if created and actor is not None:
        add_timeline_entry(
            conn,
            incident_id=incident_id,
            kind="error_group_linked",
            message=f"Error group {error_group_id} linked",
            actor=actor,
            now=now,
            details={"error_group_id": error_group_id},
        )
    return bool(created)


def add_timeline_entry(
    conn: Connection,
    *,
    incident_id: int,
    kind: str,
    message: str,
    actor: str | None,
    now: datetime,
    details: dict[str, Any] | None = None,
    is_public: bool = False,
) -> dict[str, Any]:
    """Append one timeline entry and return it."""
    if not kind.strip():
        raise ValueError("kind must not be empty")
    row = conn.execute(
        insert(incident_timeline)
        .values(
            incident_id=incident_id,
            time=now,
            kind=kind,
            actor=actor,
            message=message,
            details=details or {},
            is_public=is_public,
        )
        .returning(*incident_timeline.c)
    ).one()
    return dict(row._mapping)


def get_incident(conn: Connection, *, incident_id: int) -> dict[str, Any] | None:
    """One incident row as a dict, or None."""
    row = conn.execute(select(incidents).where(incidents.c.id == incident_id)).first()
    return dict(row._mapping) if row is not None else None


def list_timeline(conn: Connection, *, incident_id: int) -> list[dict[str, Any]]:
    """An incident's timeline, oldest first."""
    rows = conn.execute(
        select(incident_timeline)
        .where(incident_timeline.c.incident_id == incident_id)
        .order_by(incident_timeline.c.time, incident_timeline.c.id)
    )
    return [dict(r._mapping) for r in rows]
