"""Adding and changing health checks (API and Health page alike): validate, save, audit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from monitoring_core.audit import record_audit
from monitoring_core.health.store import CheckRow, create_check, get_check, update_check
from monitoring_core.health.validate import validate_check
from monitoring_core.ingest.validate import InvalidItems, ItemError

__all__ = ["save_check"]


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
