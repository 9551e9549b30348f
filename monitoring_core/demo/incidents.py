"""Demo incidents: a handful of past incidents with full timelines (written through the same
service functions responders use), one post-incident report with action items, one incident
still being worked on, and two runbooks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, Text, cast, func, select
from sqlalchemy.dialects.postgresql import ARRAY

from monitoring_core.audit import system_actor, user_actor
from monitoring_core.incidents import postmortem, runbooks, service
from monitoring_core.incidents.store import link_error_group
from monitoring_core.schema import error_groups, incident_action_items, incident_timeline, incidents
from monitoring_core.schema import runbooks as runbooks_table

__all__ = ["load"]

ROLE = "admin"
# (days back, hour UTC, body, [(minutes after detection, action, actor, kwargs)])
_M = timedelta(minutes=1)
PAYMENTS: list[tuple[float, str, str, dict[str, Any]]] = [
    (2, "acknowledge", "sam", {}),
    (3, "assign", "sam", {"assignee": "priya"}),
    (4, "status", "priya", {"status": "investigating"}),
    (6, "note", "priya", {"message": "Card payments time out at the provider; retries pile up"}),
    (
        9,
        "note",
        "priya",
        {
            "message": "Checkout is slow for couples paying deposits; we are on it",
            "is_public": True,
        },
    ),
    (
        14,
        "status",
        "priya",
        {"status": "mitigating", "message": "failed over to the backup provider"},
    ),
    (
        38,
        "resolve",
        "priya",
        {
            "resolution_summary": "Payments go through the backup provider; "
            "the primary recovered and was switched back after checks",
            "root_cause": "Provider-side outage; our client had no circuit breaker",
        },
    ),
]
SEARCH: list[tuple[float, str, str, dict[str, Any]]] = [
    (9, "acknowledge", "alex", {}),
    (12, "status", "alex", {"status": "investigating"}),
    (
        30,
        "note",
        "alex",
        {"message": "Vendor search index rebuild started by a deploy at peak time"},
    ),
    (45, "status", "alex", {"status": "mitigating", "message": "rebuild paused"}),
    (75, "resolve", "alex", {"resolution_summary": "Rebuild rescheduled to 03:00"}),
]
GALLERY: list[tuple[float, str, str, dict[str, Any]]] = [
    (40, "acknowledge", "jo", {}),
    (60, "status", "jo", {"status": "investigating"}),
    (300, "resolve", "jo", {"resolution_summary": "Thumbnail workers scaled from 2 to 6"}),
]
RSVP: list[tuple[float, str, str, dict[str, Any]]] = [
    (6, "acknowledge", "sam", {}),
    (20, "note", "sam", {"message": "Email provider rate-limited our RSVP batch"}),
    (50, "resolve", "sam", {"resolution_summary": "Batch split into smaller sends"}),
]
EXPORT: list[tuple[float, str, str, dict[str, Any]]] = [
    (15, "acknowledge", "jo", {}),
    (25, "status", "jo", {"status": "investigating"}),
]


def _do(
    conn: Connection, incident_id: int, at: datetime, action: str, actor: str, kw: dict
) -> None:
    who = user_actor(actor)
    common: dict[str, Any] = {"incident_id": incident_id, "actor": who, "role": ROLE, "now": at}
    flows: dict[str, Callable[..., Any]] = {
        "acknowledge": service.acknowledge_incident,
        "assign": service.assign_incident,
        "status": service.change_status,
        "note": service.add_note,
        "resolve": service.resolve_incident,
        "close": service.close_incident,
    }
    flows[action](conn, **common, **kw)


def _incident(conn: Connection, detected: datetime, body: dict[str, Any], steps: list) -> int:
    inc = service.create_incident(
        conn, body=body, actor=system_actor("alerting"), role=ROLE, now=detected
    )
    # The error groups of its services seen by then (organisation-scoped users find their
    # incidents through these links).
    groups = conn.execute(
        select(error_groups.c.id).where(
            error_groups.c.services.op("&&")(cast(body["affected_services"], ARRAY(Text))),
            error_groups.c.first_seen <= detected,
        )
    ).scalars()
    for group_id in groups:
        link_error_group(conn, incident_id=inc["id"], error_group_id=group_id, now=detected)
    for minutes, action, actor, kw in steps:
        _do(conn, inc["id"], detected + minutes * _M, action, actor, kw)
    return int(inc["id"])


def _last_saturday(now: datetime) -> datetime:
    back = (now.weekday() - 5) % 7 or 7
    return (now - timedelta(days=back)).replace(hour=13, minute=12, second=0, microsecond=0)


def _runbooks(conn: Connection, now: datetime) -> None:
    runbooks.create_runbook(
        conn,
        actor=system_actor("demo"),
        role=ROLE,
        now=now,
        body={
            "title": "Payment provider failover",
            "service_name": "payments",
            "wedding_day_approved": True,
            "steps": [
                {"title": "Check the provider's status page", "kind": "manual"},
                {
                    "title": "Check the API answers",
                    "kind": "http",
                    "wedding_day_safe": True,
                    "config": {"url": "http://127.0.0.1:8000/healthz", "method": "GET"},
                },
                {"title": "Switch card payments to the backup provider", "kind": "manual"},
            ],
        },
    )
    runbooks.create_runbook(
        conn,
        actor=system_actor("demo"),
        role=ROLE,
        now=now,
        body={
            "title": "Search index rebuild",
            "service_name": "search",
            "requires_approval": True,
            "steps": [
                {"title": "Pause the rebuild job", "kind": "manual"},
                {"title": "Confirm p95 back under 1 s on the Performance page", "kind": "manual"},
            ],
        },
    )


def load(conn: Connection, *, days: int, now: datetime, rng: np.random.Generator) -> dict[str, int]:
    """Write the demo incidents ending before `now`; rows written per table."""
    del rng  # fixed story: the same incidents every time
    saturday = _last_saturday(now)
    weekday = (now - timedelta(days=min(days, 4) + 0.5)).replace(second=0, microsecond=0)
    pay = _incident(
        conn,
        saturday,
        {
            "title": "Payment provider timeouts during checkout",
            "severity": "SEV1",
            "affected_services": ["payments", "checkout"],
            "affected_users_count": 230,
            "wedding_impact": "wedding_day_critical",
            "tags": ["payments", "provider"],
        },
        PAYMENTS,
    )
    _incident(
        conn,
        weekday,
        {
            "title": "Vendor search slow (p95 over 3 s)",
            "severity": "SEV2",
            "affected_services": ["search"],
            "affected_users_count": 1200,
            "wedding_impact": "medium",
        },
        SEARCH,
    )
    _incident(
        conn,
        weekday + timedelta(days=1, hours=3),
        {
            "title": "Gallery thumbnails delayed",
            "severity": "SEV3",
            "affected_services": ["gallery"],
            "wedding_impact": "low",
        },
        GALLERY,
    )
    rsvp = _incident(
        conn,
        weekday - timedelta(days=1, hours=2),
        {
            "title": "RSVP emails delayed",
            "severity": "SEV2",
            "affected_services": ["notifications"],
            "wedding_impact": "high",
        },
        RSVP,
    )
    _do(conn, rsvp, now - timedelta(hours=30), "close", "sam", {})
    _incident(
        conn,
        now - timedelta(hours=3),
        {
            "title": "Guest list export intermittently failing",
            "severity": "SEV3",
            "affected_services": ["guest-list"],
            "wedding_impact": "low",
        },
        EXPORT,
    )
    at = min(saturday + timedelta(hours=20), now - timedelta(minutes=10))
    for title, owner in (
        ("Add a circuit breaker around the payment provider client", "priya"),
        ("Alert on provider latency before timeouts", "sam"),
    ):
        postmortem.add_action_item(
            conn,
            incident_id=pay,
            title=title,
            owner=owner,
            actor=user_actor("priya"),
            role=ROLE,
            now=at,
            due_at=at + timedelta(days=14),
        )
    postmortem.generate_postmortem(
        conn, incident_id=pay, actor=user_actor("priya"), role=ROLE, now=at
    )
    _do(conn, pay, at + timedelta(minutes=5), "close", "priya", {})
    _runbooks(conn, now)
    tables = (incidents, incident_timeline, incident_action_items, runbooks_table)
    return {
        t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one()) for t in tables
    }
