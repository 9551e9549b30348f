"""What responders do to incidents: declare, acknowledge, assign, move, note, resolve, close.

Every action checks the role (responder or admin), writes the timeline with actor and time and
the audit log. Functions take a Connection and never commit. Status updates and resolutions are
public timeline entries (fit for a status page); notes are internal unless marked public.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select, update

from monitoring_core.audit import actor_name, record_audit
from monitoring_core.enums import IncidentStatus, Role
from monitoring_core.incidents.lifecycle import (
    ACTIVE_STATUSES,
    TransitionRefused,
    check_transition,
    validate_wedding_impact,
)
from monitoring_core.incidents.lifecycle import transition_fields as _fields
from monitoring_core.incidents.rules import validate_severity
from monitoring_core.incidents.store import add_timeline_entry, open_incident
from monitoring_core.roles import PermissionDenied, require_role
from monitoring_core.schema import incidents

__all__ = [
    "IncidentInvalid",
    "IncidentNotFound",
    "PermissionDenied",
    "TransitionRefused",
    "acknowledge_incident",
    "add_note",
    "assign_incident",
    "change_status",
    "close_incident",
    "create_incident",
    "load_incident",
    "resolve_incident",
    "update_incident",
]


class IncidentNotFound(LookupError):
    """No incident with that id."""


class IncidentInvalid(ValueError):
    """A body field is wrong; `problems` lists `{field, message}`."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{p['field']}: {p['message']}" for p in problems))
        self.problems = problems


def load_incident(conn: Connection, *, incident_id: int, lock: bool = False) -> dict[str, Any]:
    """The incident row (locked FOR UPDATE when asked); IncidentNotFound otherwise."""
    query = select(incidents).where(incidents.c.id == incident_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise IncidentNotFound(f"incident {incident_id}")
    return dict(row._mapping)


def _save(conn: Connection, incident_id: int, fields: Mapping[str, Any]) -> dict[str, Any]:
    row = conn.execute(
        update(incidents)
        .where(incidents.c.id == incident_id)
        .values(**fields)
        .returning(*incidents.c)
    ).one()
    return dict(row._mapping)


def _log(
    conn: Connection,
    inc: Mapping[str, Any],
    kind: str,
    message: str,
    actor: str,
    now: datetime,
    *,
    details: dict[str, Any] | None = None,
    public: bool = False,
) -> None:
    add_timeline_entry(
        conn,
        incident_id=inc["id"],
        kind=kind,
        message=message,
        actor=actor,
        now=now,
        details=details,
        is_public=public,
    )
    record_audit(
        conn,
        actor=actor,
        action=f"incident.{kind}",
        target=f"incident:{inc['id']}",
        details=details,
        now=now,
    )


def _str_list(body: Mapping[str, Any], field: str, problems: list[dict[str, str]]) -> list[str]:
    value = body.get(field, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        problems.append({"field": field, "message": "must be a list of non-empty strings"})
        return []
    return [v.strip() for v in value]


def _checked_extras(body: Mapping[str, Any], problems: list[dict[str, str]]) -> dict[str, Any]:
    """The optional fields shared by create and update, validated."""
    out: dict[str, Any] = {}
    for field in ("affected_services", "tags"):
        if field in body:
            out[field] = _str_list(body, field, problems)
    if "affected_users_count" in body:
        count = body["affected_users_count"]
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or count < 0
        ):
            problems.append({"field": "affected_users_count", "message": "must be an integer >= 0"})
        out["affected_users_count"] = count
    for field in ("description", "root_cause", "assigned_to"):
        if field in body and body[field] is not None and not isinstance(body[field], str):
            problems.append({"field": field, "message": "must be a string"})
        elif field in body:
            out[field] = body[field]
    for field, check in (
        ("severity", validate_severity),
        ("wedding_impact", validate_wedding_impact),
    ):
        if field in body:
            try:
                out[field] = check(str(body[field])).value
            except ValueError as exc:
                problems.append({"field": field, "message": str(exc)})
    return out


def create_incident(
    conn: Connection,
    *,
    body: Mapping[str, Any],
    actor: str,
    role: str,
    now: datetime,
    tz: ZoneInfo | None = None,
) -> dict[str, Any]:
    """Declare an incident by hand (docs/API.md field names); IncidentInvalid lists problems."""
    require_role(role, Role.RESPONDER)
    problems: list[dict[str, str]] = []
    title = body.get("title")
    if not isinstance(title, str) or not title.strip():
        problems.append({"field": "title", "message": "is required"})
    if "severity" not in body:
        problems.append({"field": "severity", "message": "is required (SEV1..SEV4)"})
    extras = _checked_extras(body, problems)
    if problems:
        raise IncidentInvalid(problems)
    incident = open_incident(
        conn,
        title=str(title),
        severity=extras.pop("severity"),
        affected_services=extras.pop("affected_services", []),
        source="manual",
        created_by=actor,
        now=now,
        description=extras.pop("description", None) or "",
        wedding_impact=extras.pop("wedding_impact", None),
        tz=tz,
    )
    record_audit(
        conn,
        actor=actor,
        action="incident.create",
        target=f"incident:{incident['id']}",
        details={"incident_number": incident["incident_number"]},
        now=now,
    )
    extras = {k: v for k, v in extras.items() if v is not None}
    return _save(conn, incident["id"], {**extras, "updated_at": now}) if extras else incident


def update_incident(
    conn: Connection,
    *,
    incident_id: int,
    body: Mapping[str, Any],
    actor: str,
    role: str,
    now: datetime,
) -> dict[str, Any]:
    """Change severity, wedding impact, services, users affected, tags, description."""
    require_role(role, Role.RESPONDER)
    inc = load_incident(conn, incident_id=incident_id, lock=True)
    problems: list[dict[str, str]] = []
    changes = {k: v for k, v in _checked_extras(body, problems).items() if inc.get(k) != v}
    if problems:
        raise IncidentInvalid(problems)
    if not changes:
        return inc
    old = {k: inc.get(k) for k in changes}
    kind = "severity_changed" if "severity" in changes else "updated"
    text = ", ".join(f"{k.replace('_', ' ')}: {old[k]} → {v}" for k, v in changes.items())
    _log(
        conn,
        inc,
        kind,
        f"{actor_name(actor)} changed {text}",
        actor,
        now,
        details={"from": _plain(old), "to": _plain(changes)},
    )
    return _save(conn, incident_id, {**changes, "updated_at": now})


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}


def acknowledge_incident(
    conn: Connection, *, incident_id: int, actor: str, role: str, now: datetime
) -> dict[str, Any]:
    """First acknowledgement (MTTA stops here; so does escalation)."""
    require_role(role, Role.RESPONDER)
    inc = load_incident(conn, incident_id=incident_id, lock=True)
    if inc["status"] not in ACTIVE_STATUSES:
        raise TransitionRefused(f"a {inc['status']} incident cannot be acknowledged")
    if inc["acknowledged_at"] is not None:
        raise TransitionRefused(f"already acknowledged at {inc['acknowledged_at'].isoformat()}")
    _log(conn, inc, "acknowledged", f"Acknowledged by {actor_name(actor)}", actor, now, public=True)
    fields: dict[str, Any] = {"acknowledged_at": now, "updated_at": now}
    if not inc["assigned_to"]:
        # Whoever acknowledges owns it until reassigned; the assignee is a person's plain name
        # (free text, as "Assign to" takes it), so a UI user's actor loses its `user:` kind.
        fields["assigned_to"] = actor.removeprefix("user:")
    return _save(conn, incident_id, fields)


def assign_incident(
    conn: Connection, *, incident_id: int, assignee: str, actor: str, role: str, now: datetime
) -> dict[str, Any]:
    """Give the incident to someone (an empty name unassigns)."""
    require_role(role, Role.RESPONDER)
    inc = load_incident(conn, incident_id=incident_id, lock=True)
    if inc["status"] == IncidentStatus.CLOSED:
        raise TransitionRefused("a closed incident cannot be reassigned")
    who = assignee.strip() or None
    by = actor_name(actor)
    text = f"Assigned to {who} by {by}" if who else f"Unassigned by {by}"
    _log(conn, inc, "assigned", text, actor, now, details={"from": inc["assigned_to"], "to": who})
    return _save(conn, incident_id, {"assigned_to": who, "updated_at": now})


def change_status(
    conn: Connection,
    *,
    incident_id: int,
    status: str,
    actor: str,
    role: str,
    now: datetime,
    message: str = "",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Move along the lifecycle (TransitionRefused for a move the table does not allow)."""
    require_role(role, Role.RESPONDER)
    inc = load_incident(conn, incident_id=incident_id, lock=True)
    to = check_transition(inc["status"], status)
    kind = {IncidentStatus.RESOLVED: "resolved", IncidentStatus.CLOSED: "closed"}.get(
        to, "status_changed"
    )
    text = f"Status {inc['status']} → {to.value} by {actor_name(actor)}" + (
        f": {message}" if message else ""
    )
    _log(
        conn,
        inc,
        kind,
        text,
        actor,
        now,
        public=True,
        details={"from": inc["status"], "to": to.value},
    )
    return _save(conn, incident_id, {**_fields(inc, to, now), **(extra or {})})


def add_note(
    conn: Connection,
    *,
    incident_id: int,
    message: str,
    actor: str,
    role: str,
    now: datetime,
    is_public: bool = False,
    kind: str = "note",
) -> dict[str, Any]:
    """A manual timeline entry (internal unless `is_public`); returns the entry."""
    require_role(role, Role.RESPONDER)
    if not message.strip():
        raise IncidentInvalid([{"field": "message", "message": "must not be empty"}])
    if not kind.strip() or len(kind) > 40:
        raise IncidentInvalid([{"field": "kind", "message": "must be 1-40 characters"}])
    inc = load_incident(conn, incident_id=incident_id)
    entry = add_timeline_entry(
        conn,
        incident_id=incident_id,
        kind=kind.strip(),
        message=message.strip(),
        actor=actor,
        now=now,
        is_public=is_public,
    )
    conn.execute(update(incidents).where(incidents.c.id == inc["id"]).values(updated_at=now))
    return entry


def resolve_incident(
    conn: Connection,
    *,
    incident_id: int,
    resolution_summary: str,
    actor: str,
    role: str,
    now: datetime,
    root_cause: str | None = None,
) -> dict[str, Any]:
    """Resolve with a summary (required: the post-incident report starts from it)."""
    if not resolution_summary.strip():
        raise IncidentInvalid([{"field": "resolution_summary", "message": "is required"}])
    extra: dict[str, Any] = {"resolution_summary": resolution_summary.strip()}
    if root_cause:
        extra["root_cause"] = root_cause.strip()
    return change_status(
        conn,
        incident_id=incident_id,
        status="resolved",
        actor=actor,
        role=role,
        now=now,
        message=resolution_summary.strip(),
        extra=extra,
    )


def close_incident(
    conn: Connection, *, incident_id: int, actor: str, role: str, now: datetime
) -> dict[str, Any]:
    """Close a resolved incident (final)."""
    return change_status(
        conn, incident_id=incident_id, status="closed", actor=actor, role=role, now=now
    )
