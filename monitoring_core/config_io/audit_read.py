"""Reading the audit log: who did what to what, when (Admin page)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from monitoring_core.schema import audit_log

__all__ = ["audit_actions", "search_audit"]


def _contains(text: str) -> str:
    """An ILIKE pattern matching `text` literally anywhere (its % and _ escaped)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_audit(
    conn: Connection,
    *,
    since: datetime,
    until: datetime,
    actor: str = "",
    actions: list[str] | None = None,
    target: str = "",
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Entries in [since, until), newest first; `actor`/`target` match anywhere, any case."""
    query = select(audit_log).where(audit_log.c.time >= since, audit_log.c.time < until)
    if actor.strip():
        query = query.where(audit_log.c.actor.ilike(_contains(actor.strip()), escape="\\"))
    if target.strip():
        query = query.where(audit_log.c.target.ilike(_contains(target.strip()), escape="\\"))
    if actions:
        query = query.where(audit_log.c.action.in_(actions))
    query = query.order_by(audit_log.c.time.desc(), audit_log.c.id.desc()).limit(limit)
    return [dict(r._mapping) for r in conn.execute(query)]


def audit_actions(conn: Connection) -> list[str]:
    """Every action name the log holds, for a filter's choices."""
    query = select(audit_log.c.action).group_by(audit_log.c.action).order_by(audit_log.c.action)
    return [str(a) for a in conn.execute(query).scalars()]
