"""The audit log: who did what to which object."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert

from monitoring_core.schema import audit_log

__all__ = ["record_audit"]


def record_audit(
    conn: Connection,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    details: dict[str, Any] | None = None,
    now: datetime,
) -> None:
    """Append one audit entry in the caller's transaction."""
    conn.execute(
        insert(audit_log).values(
            time=now, actor=actor, action=action, target=target, details=details or {}
        )
    )
