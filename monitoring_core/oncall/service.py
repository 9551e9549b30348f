"""What people do to people, schedules, overrides and routes: role checks and the audit log.

Admins change everything. Anyone signed in may set their own time zone and contact methods
(as in PagerDuty and Grafana OnCall, people keep their own contact details). A responder may
add an override putting *themselves* on call (taking a shift, covering a swap) and remove an
override they created for themselves; overrides for others are an admin's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from monitoring_core.audit import record_audit, user_actor
from monitoring_core.enums import Role
from monitoring_core.oncall import store, validate
from monitoring_core.roles import require_role

__all__ = [
    "add_contact_method",
    "add_override",
    "delete_route",
    "remove_contact_method",
    "remove_override",
    "remove_schedule",
    "save_route",
    "save_schedule",
    "set_time_zone",
]


def _is_self(conn: Connection, actor: str, user_id: int) -> bool:
    return actor == user_actor(store.user_name(conn, user_id))


def _require_self_or_admin(conn: Connection, actor: str, role: str, user_id: int) -> None:
    if not _is_self(conn, actor, user_id):
        require_role(role, Role.ADMIN)


def set_time_zone(
    conn: Connection, *, user_id: int, time_zone: Any, actor: str, role: str, now: datetime
) -> None:
    _require_self_or_admin(conn, actor, role, user_id)
    tz = validate.parse_time_zone(time_zone)
    store.set_time_zone(conn, user_id=user_id, time_zone=tz)
    details = {"time_zone": tz}
    record_audit(conn, actor=actor, action="person.time_zone", target=f"user:{user_id}",
                 details=details, now=now)  # fmt: skip


def add_contact_method(
    conn: Connection,
    *,
    user_id: int,
    body: Mapping[str, Any],
    actor: str,
    role: str,
    now: datetime,
) -> dict[str, Any]:
    """A new contact method (an Apprise URL), shown masked; ChannelInvalid / OncallInvalid."""
    _require_self_or_admin(conn, actor, role, user_id)
    label, url = validate.parse_contact(body)
    saved = store.add_contact(conn, user_id=user_id, label=label, url=url)
    record_audit(conn, actor=actor, action="person.contact_add", target=f"user:{user_id}",
                 details={"channel_id": saved["id"], "label": label}, now=now)  # fmt: skip
    return saved


def remove_contact_method(
    conn: Connection, *, user_id: int, channel_id: int, actor: str, role: str, now: datetime
) -> str:
    _require_self_or_admin(conn, actor, role, user_id)
    done = store.remove_contact(conn, user_id=user_id, channel_id=channel_id)
    record_audit(conn, actor=actor, action="person.contact_remove", target=f"user:{user_id}",
                 details={"channel_id": channel_id, "done": done}, now=now)  # fmt: skip
    return done


def save_schedule(
    conn: Connection,
    *,
    schedule_id: int | None,
    body: Mapping[str, Any],
    actor: str,
    role: str,
    now: datetime,
) -> dict[str, Any]:
    """Create (`schedule_id` None) or replace a schedule with its layers."""
    require_role(role, Role.ADMIN)
    values, layers = validate.parse_schedule(body)
    saved = store.save_schedule(conn, schedule_id=schedule_id, values=values, layers=layers)
    record_audit(conn, actor=actor, action="schedule.save", target=f"schedule:{saved['id']}",
                 details={"name": saved["name"], "layers": len(layers)}, now=now)  # fmt: skip
    return saved


def remove_schedule(
    conn: Connection, *, schedule_id: int, actor: str, role: str, now: datetime
) -> None:
    require_role(role, Role.ADMIN)
    gone = store.delete_schedule(conn, schedule_id=schedule_id)
    record_audit(conn, actor=actor, action="schedule.delete", target=f"schedule:{schedule_id}",
                 details={"name": gone["name"]}, now=now)  # fmt: skip


def add_override(
    conn: Connection,
    *,
    schedule_id: int,
    body: Mapping[str, Any],
    actor: str,
    role: str,
    now: datetime,
) -> dict[str, Any]:
    """An override; a responder may put only themselves on call."""
    require_role(role, Role.RESPONDER)
    values = validate.parse_override(body)
    if not _is_self(conn, actor, values["user_id"]):
        require_role(role, Role.ADMIN)  # someone else's cover is an admin's to arrange
    saved = store.add_override(
        conn, schedule_id=schedule_id, values=values, created_by=actor, now=now
    )
    details = {k: str(saved[k]) for k in ("user_id", "starts_at", "ends_at", "reason")}
    record_audit(conn, actor=actor, action="schedule.override_add",
                 target=f"schedule:{schedule_id}", details=details, now=now)  # fmt: skip
    return saved


def remove_override(
    conn: Connection, *, override_id: int, actor: str, role: str, now: datetime
) -> None:
    """Delete an override: admins any, a responder one they created for themselves."""
    require_role(role, Role.RESPONDER)
    row = store.get_override(conn, override_id=override_id)
    own = row["created_by"] == actor and _is_self(conn, actor, row["user_id"])
    if not own:
        require_role(role, Role.ADMIN)
    store.delete_override(conn, override_id=override_id)
    record_audit(conn, actor=actor, action="schedule.override_delete",
                 target=f"schedule:{row['schedule_id']}",
                 details={"override_id": override_id, "user_id": row["user_id"]},
                 now=now)  # fmt: skip


def save_route(
    conn: Connection, *, body: Mapping[str, Any], actor: str, role: str, now: datetime
) -> dict[str, Any]:
    """Set the default route for alerts at or above a severity."""
    require_role(role, Role.ADMIN)
    severity, targets = validate.parse_route(body)
    saved = store.save_route(conn, min_severity=severity, targets=targets)
    record_audit(conn, actor=actor, action="route.save", target=f"route:{severity}",
                 details={"targets": targets}, now=now)  # fmt: skip
    return saved


def delete_route(
    conn: Connection, *, min_severity: str, actor: str, role: str, now: datetime
) -> None:
    require_role(role, Role.ADMIN)
    store.delete_route(conn, min_severity=min_severity)
    record_audit(conn, actor=actor, action="route.delete", target=f"route:{min_severity}",
                 now=now)  # fmt: skip
