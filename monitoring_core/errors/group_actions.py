"""What a responder does on the error-group page: resolve, ignore or reopen a group, and assign
it to a person — role-checked (responder and up), recorded in the group's history and in the
audit log, in the caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from monitoring_core.audit import record_audit
from monitoring_core.enums import Role
from monitoring_core.errors.service import change_group_status
from monitoring_core.errors.store import record_change
from monitoring_core.roles import require_role
from monitoring_core.schema import error_groups, users

__all__ = ["act_on_group", "assign_group", "assignable_users"]


def act_on_group(
    conn: Connection,
    *,
    group_id: int,
    action: str,
    actor: str,
    role: str,
    now: datetime,
    release: str | None = None,
) -> dict[str, Any]:
    """resolve / ignore / reopen (errors/rules.TRANSITIONS) as `role`: PermissionDenied below
    responder, LookupError for an unknown group, ValueError for an action that does not apply."""
    require_role(role, Role.RESPONDER)
    updated = change_group_status(
        conn, group_id=group_id, action=action, actor=actor, now=now, release=release
    )
    record_audit(
        conn,
        actor=actor,
        action=f"error_group.{action}",
        target=f"error_group:{group_id}",
        details={"release": release} if release else {},
        now=now,
    )
    return updated


def assignable_users(conn: Connection) -> list[str]:
    """Usernames a group may be assigned to: active responders and admins."""
    return list(
        conn.execute(
            select(users.c.username)
            .where(users.c.is_active, users.c.role.in_([Role.RESPONDER.value, Role.ADMIN.value]))
            .order_by(users.c.username)
        ).scalars()
    )


def assign_group(
    conn: Connection,
    *,
    group_id: int,
    assignee: str | None,
    actor: str,
    role: str,
    now: datetime,
) -> dict[str, Any]:
    """Assign the group to `assignee` (None: unassign) as `role`. PermissionDenied below
    responder, LookupError for an unknown group, ValueError when `assignee` is not an active
    responder or admin. Assigning to whom it already is changes nothing and records nothing."""
    require_role(role, Role.RESPONDER)
    row = conn.execute(
        select(error_groups.c.assigned_to).where(error_groups.c.id == group_id).with_for_update()
    ).first()
    if row is None:
        raise LookupError(f"no error group {group_id}")
    if assignee is not None and assignee not in assignable_users(conn):
        raise ValueError(f"{assignee!r} is not an active responder or admin")
    if row.assigned_to == assignee:
        return {"id": group_id, "assigned_to": assignee, "changed": False}
    conn.execute(
        update(error_groups).where(error_groups.c.id == group_id).values(assigned_to=assignee)
    )
    details = {"from": row.assigned_to, "to": assignee}
    kind = "assigned" if assignee else "unassigned"
    record_change(conn, group_id=group_id, kind=kind, now=now, actor=actor, details=details)
    record_audit(
        conn,
        actor=actor,
        action="error_group.assign",
        target=f"error_group:{group_id}",
        details=details,
        now=now,
    )
    return {"id": group_id, "assigned_to": assignee, "changed": True}
