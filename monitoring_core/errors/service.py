"""What responders do to a group: resolve (optionally in a release), ignore, reopen."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from monitoring_core.errors.rules import next_status
from monitoring_core.errors.store import record_change
from monitoring_core.schema import error_groups

__all__ = ["change_group_status"]


def change_group_status(
    conn: Connection,
    *,
    group_id: int,
    action: str,
    actor: str,
    now: datetime,
    release: str | None = None,
) -> dict[str, Any]:
    """A responder resolves, ignores or reopens a group (locked, recorded in its history).

    `release` on resolve is the release the fix ships in: events from older releases then do
    not count as a regression. LookupError for an unknown group, ValueError for an action that
    does not apply.
    """
    row = conn.execute(
        select(error_groups.c.status).where(error_groups.c.id == group_id).with_for_update()
    ).first()
    if row is None:
        raise LookupError(f"no error group {group_id}")
    target = next_status(row.status, action)
    values: dict[str, Any] = {"status": target.value}
    if target == "resolved":
        values |= {"resolved_at": now, "resolved_by": actor, "resolved_in_release": release}
    elif target == "unresolved":
        values |= {"resolved_at": None, "resolved_by": None, "resolved_in_release": None}
    updated = conn.execute(
        update(error_groups)
        .where(error_groups.c.id == group_id)
        .values(**values)
        .returning(*error_groups.c)
    ).one()
    record_change(conn, group_id=group_id, kind=action, now=now, actor=actor, release=release)
    return dict(updated._mapping)
