"""Adding, changing, pausing and resuming health checks (API and Health page alike): validate,
save, audit.

Pausing follows Healthchecks.io: a paused check is not run or judged, so it goes neither late
nor down and writes no `health_check_*` points (alert rules on `health.*` signals see its series
stop, like any absent key, and stay quiet); its status is `paused` until it is resumed from the
page or the API, or, for a heartbeat, until its next ping arrives. A resumed check starts over:
probes run at once, a heartbeat waits (unknown) for its first ping after the resume.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from monitoring_core.audit import actor_name, record_audit
from monitoring_core.health.store import (
    CheckRow,
    create_check,
    get_check,
    set_paused,
    update_check,
)
from monitoring_core.health.validate import validate_check
from monitoring_core.ingest.validate import InvalidItems, ItemError

__all__ = ["pause_check", "resume_check", "save_check"]


def save_check(
    conn: Connection, body: Any, *, check_id: int | None, actor: str, now: datetime
) -> CheckRow | None:
    """Create (check_id None) or partly update a check; None when check_id does not exist.

    Raises InvalidItems for a bad body or a name already taken; the caller commits.
    """
    current = None
    if check_id is not None:
        found = get_check(conn, check_id)
        if found is None:
            return None
        current = {"check_type": found.check_type, "check_config": found.check_config}
    fields = validate_check(body, current=current)
    try:
        with conn.begin_nested():
            row = (
                create_check(conn, fields)
                if check_id is None
                else update_check(conn, check_id, fields)
            )
    except IntegrityError:
        raise InvalidItems(
            [ItemError(None, "check_name", "a check with this name already exists")]
        ) from None
    assert row is not None
    action = "health_check.create" if check_id is None else "health_check.update"
    details = {k: v for k, v in fields.items() if k != "check_config"}  # configs may hold secrets
    record_audit(conn, actor=actor, action=action, target=str(row.id), details=details, now=now)
    return row


def pause_check(conn: Connection, check_id: int, *, actor: str, now: datetime) -> CheckRow | None:
    """Pause a check (audited when it changes anything); None when there is no such check."""
    return _set_paused(conn, check_id, paused=True, actor=actor, now=now)


def resume_check(conn: Connection, check_id: int, *, actor: str, now: datetime) -> CheckRow | None:
    """Resume a paused check (audited when it changes anything); None when there is none."""
    return _set_paused(conn, check_id, paused=False, actor=actor, now=now)


def _set_paused(
    conn: Connection, check_id: int, *, paused: bool, actor: str, now: datetime
) -> CheckRow | None:
    verb = "pause" if paused else "resume"
    before = get_check(conn, check_id)
    row = set_paused(
        conn, check_id, paused=paused, reason=f"{verb}d by {actor_name(actor)}", now=now
    )
    if row is not None and before is not None and (before.paused_at is None) == paused:
        record_audit(
            conn,
            actor=actor,
            action=f"health_check.{verb}",
            target=str(check_id),
            details={"check_name": row.check_name, "status_before": before.status.value},
            now=now,
        )
    return row
