"""Reading incidents: lists with filters, the detail (timeline, alerts, error groups), API form."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, select

from monitoring_core.incidents.lifecycle import ACTIVE_STATUSES, target_state
from monitoring_core.incidents.store import list_timeline
from monitoring_core.schema import (
    alert_instances,
    alert_rules,
    error_groups,
    incident_alerts,
    incident_error_groups,
    incidents,
)

__all__ = [
    "API_FIELDS",
    "active_incidents",
    "incident_detail",
    "incident_to_api",
    "linked_alerts",
    "linked_error_groups",
    "list_incidents",
]

# docs/API.md field names, plus this system's own (wedding calendar, escalation, report).
API_FIELDS = (
    "id",
    "incident_number",
    "title",
    "description",
    "severity",
    "status",
    "affected_services",
    "affected_users_count",
    "root_cause",
    "resolution_summary",
    "detected_at",
    "acknowledged_at",
    "resolved_at",
    "closed_at",
    "assigned_to",
    "created_by",
    "tags",
    "mitigated_at",
    "is_saturday",
    "wedding_impact",
    "escalation_step",
    "updated_at",
)
_SEVERITY_ORDER = case({"SEV1": 1, "SEV2": 2, "SEV3": 3}, value=incidents.c.severity, else_=4)


def incident_to_api(row: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """An incident row in API form; with `now`, its age against the response target."""
    out = {f: row.get(f) for f in API_FIELDS}
    out["affected_services"] = list(out["affected_services"] or [])
    out["tags"] = list(out["tags"] or [])
    if now is not None:
        out["response"] = target_state(row, now)
    return out


def list_incidents(
    conn: Connection,
    *,
    status: str | None = None,
    severity: str | None = None,
    service: str | None = None,
    wedding_impact: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    active_only: bool = False,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Incidents newest first (active ones most severe first when `active_only`)."""
    query = select(incidents)
    if active_only:
        query = query.where(incidents.c.status.in_([s.value for s in ACTIVE_STATUSES]))
        query = query.order_by(_SEVERITY_ORDER, incidents.c.detected_at)
    else:
        query = query.order_by(incidents.c.detected_at.desc(), incidents.c.id.desc())
    for column, value in (
        (incidents.c.status, status),
        (incidents.c.severity, severity),
        (incidents.c.wedding_impact, wedding_impact),
    ):
        if value:
            query = query.where(column == value)
    if service:
        query = query.where(incidents.c.affected_services.any_() == service)
    if start is not None:
        query = query.where(incidents.c.detected_at >= start)
    if end is not None:
        query = query.where(incidents.c.detected_at < end)
    rows = conn.execute(query.limit(max(1, min(limit, 1000))))
    return [dict(r._mapping) for r in rows]


def active_incidents(conn: Connection, *, now: datetime) -> list[dict[str, Any]]:
    """Open, investigating and mitigating incidents in API form with their target state."""
    return [incident_to_api(r, now) for r in list_incidents(conn, active_only=True, limit=1000)]


def linked_alerts(conn: Connection, *, incident_id: int) -> list[dict[str, Any]]:
    """The incident's alert instances with their rule's name, metric and severity."""
    rows = conn.execute(
        select(
            alert_instances.c.id,
            alert_instances.c.alert_key,
            alert_instances.c.status,
            alert_instances.c.first_triggered_at,
            alert_instances.c.resolved_at,
            alert_instances.c.trigger_value,
            alert_instances.c.alert_configuration_id,
            alert_rules.c.alert_name,
            alert_rules.c.metric_name,
            alert_rules.c.severity_level,
            alert_rules.c.runbook_id,
            alert_rules.c.condition_config,
        )
        .join(incident_alerts, incident_alerts.c.alert_instance_id == alert_instances.c.id)
        .join(alert_rules, alert_rules.c.id == alert_instances.c.alert_configuration_id)
        .where(incident_alerts.c.incident_id == incident_id)
        .order_by(alert_instances.c.id)
    )
    return [dict(r._mapping) for r in rows]


def linked_error_groups(conn: Connection, *, incident_id: int) -> list[dict[str, Any]]:
    """The incident's error groups (type, message, counts, status)."""
    rows = conn.execute(
        select(
            error_groups.c.id,
            error_groups.c.error_type,
            error_groups.c.message_template,
            error_groups.c.status,
            error_groups.c.event_count,
            error_groups.c.user_count,
            error_groups.c.services,
            error_groups.c.first_seen,
            error_groups.c.last_seen,
        )
        .join(incident_error_groups, incident_error_groups.c.error_group_id == error_groups.c.id)
        .where(incident_error_groups.c.incident_id == incident_id)
        .order_by(error_groups.c.id)
    )
    return [dict(r._mapping) for r in rows]


def incident_detail(
    conn: Connection,
    *,
    incident_id: int,
    now: datetime,
    include_internal: bool = True,
    error_groups_only: bool = False,
) -> dict[str, Any] | None:
    """The incident in API form with `timeline`, `alerts`, `error_groups`; None if unknown.
    `error_groups_only`: the incident and its error groups, timeline and alerts empty (all an
    organisation-scoped session may read, monitoring_core.org_scope)."""
    row = conn.execute(select(incidents).where(incidents.c.id == incident_id)).first()
    if row is None:
        return None
    out = incident_to_api(dict(row._mapping), now)
    out["error_groups"] = [
        {**g, "services": list(g["services"] or [])}
        for g in linked_error_groups(conn, incident_id=incident_id)
    ]
    if error_groups_only:
        return out | {"timeline": [], "alerts": [], "postmortem_markdown": None}
    timeline = list_timeline(conn, incident_id=incident_id)
    out["timeline"] = [
        {k: e[k] for k in ("id", "time", "kind", "actor", "message", "details", "is_public")}
        for e in timeline
        if include_internal or e["is_public"]
    ]
    out["alerts"] = linked_alerts(conn, incident_id=incident_id)
    out["postmortem_markdown"] = row._mapping["postmortem_markdown"]
    return out
