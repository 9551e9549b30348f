"""Acknowledge from the notification: the link in a page opens what it acknowledges, and
one button acknowledges it as the person the page was sent to.

- `add_ack_link` appends a fresh link to an alert or incident notification as it is sent
  (one link per delivery, so each records its own recipient);
- `describe_link` answers what a link will acknowledge (refusing forged, expired, used links);
- `use_link` acknowledges once and records the use; the alert's or incident's history, the
  audit log and the incident timeline name `link:RECIPIENT` as who acted.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from monitoring_core.alerts.service import ActionRefused
from monitoring_core.alerts.store import RuleNotFound, get_instance
from monitoring_core.audit import link_actor
from monitoring_core.enums import Role
from monitoring_core.flows.alert_actions import acknowledge_alert
from monitoring_core.incidents.lifecycle import TransitionRefused
from monitoring_core.incidents.service import IncidentNotFound, acknowledge_incident, load_incident
from monitoring_core.notify.acklinks import (
    AckClaim,
    LinkRefused,
    ack_url,
    link_secret,
    mark_used,
    mint,
    verify,
)
from monitoring_core.notify.delivery import Claimed
from monitoring_core.schema import ack_link_uses

__all__ = ["LINKED_KINDS", "add_ack_link", "describe_link", "use_link"]

LINKED_KINDS = frozenset({"firing", "repeat", "escalation", "no_data"})


def add_ack_link(conn: Connection, item: Claimed, *, now: datetime, api_public_url: str) -> Claimed:
    """The item with an acknowledge link at the end of its body, when it pages about an
    alert or an incident; unchanged otherwise (tests, self-alerts, resolutions)."""
    if item.kind not in LINKED_KINDS:
        return item
    if item.alert_instance_id is not None:
        kind, target = "alert", item.alert_instance_id
    elif item.incident_id is not None:
        kind, target = "incident", item.incident_id
    else:
        return item
    token = mint(
        link_secret(conn), kind=kind, target_id=target, recipient=item.channel_name, now=now
    )
    link = ack_url(api_public_url, token)
    return dataclasses.replace(item, body=f"{item.body}\n\nAcknowledge: {link}")


def _claim(conn: Connection, token: str, now: datetime) -> AckClaim:
    claim = verify(link_secret(conn), token, now)
    used = conn.execute(select(ack_link_uses.c.jti).where(ack_link_uses.c.jti == claim.jti))
    if used.first() is not None:
        raise LinkRefused("used", "this link has already been used")
    return claim


def _target(conn: Connection, claim: AckClaim) -> dict[str, Any]:
    try:
        if claim.kind == "alert":
            alert = get_instance(conn, instance_id=claim.target_id)
            return {
                "title": alert["alert_name"],
                "severity": alert["severity"],
                "status": alert["status"],
            }
        incident = load_incident(conn, incident_id=claim.target_id)
    except (RuleNotFound, IncidentNotFound):
        raise LinkRefused("gone", f"the {claim.kind} of this link no longer exists") from None
    return {
        "title": f"{incident['incident_number']} {incident['title']}",
        "severity": incident["severity"],
        "status": incident["status"]
        if incident["acknowledged_at"] is None
        else f"{incident['status']}, acknowledged",
    }


def describe_link(conn: Connection, token: str, now: datetime) -> dict[str, Any]:
    """What the link acknowledges; LinkRefused for forged, expired, used or dangling links."""
    claim = _claim(conn, token, now)
    return {
        "kind": claim.kind,
        "id": claim.target_id,
        "recipient": claim.recipient,
        "expires_at": claim.expires_at,
        **_target(conn, claim),
    }


def use_link(conn: Connection, token: str, now: datetime) -> dict[str, Any]:
    """Acknowledge what the link names, once; LinkRefused when the link cannot be used, and
    ("done") when the alert or incident needs no acknowledgement any more."""
    claim = _claim(conn, token, now)
    actor = link_actor(claim.recipient)
    described = {"kind": claim.kind, "id": claim.target_id, "recipient": claim.recipient}
    described |= _target(conn, claim)
    try:
        if claim.kind == "alert":
            acknowledge_alert(
                conn, instance_id=claim.target_id, actor=actor, role=Role.RESPONDER, now=now
            )
        else:
            acknowledge_incident(
                conn, incident_id=claim.target_id, actor=actor, role=Role.RESPONDER, now=now
            )
    except (ActionRefused, TransitionRefused) as exc:
        raise LinkRefused("done", f"nothing to acknowledge: {exc}") from None
    mark_used(conn, claim, actor=actor, now=now)
    return {**described, "acknowledged_by": actor}
