"""Auto-recovery: a group that stops occurring on its own is marked recovered (not resolved).

A recovered group keeps its status (a person did not resolve it); `recovered_at` is set and a
`recovered` entry goes into its history. The next event clears `recovered_at` again. The same
job prunes Sentry event ids older than the dedup horizon.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select, update

from monitoring_core.audit import system_actor
from monitoring_core.errors.store import record_change
from monitoring_core.errors.validate import MAX_AGE
from monitoring_core.schema import error_event_ids, error_groups, settings

__all__ = [
    "DEFAULT_QUIET",
    "QUIET_SETTING",
    "load_quiet_period",
    "prune_event_ids",
    "recover_quiet_groups",
]

DEFAULT_QUIET = timedelta(minutes=60)
QUIET_SETTING = "error_recovery_quiet_minutes"  # settings row: a positive number of minutes
ACTOR = system_actor("auto-recovery")


def load_quiet_period(conn: Connection) -> timedelta:
    """The configured quiet period (settings), else one hour."""
    value = conn.execute(
        select(settings.c.value).where(settings.c.key == QUIET_SETTING)
    ).scalar_one_or_none()
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return timedelta(minutes=float(value))
    return DEFAULT_QUIET


def recover_quiet_groups(conn: Connection, *, now: datetime, quiet: timedelta) -> list[int]:
    """Mark active groups silent for `quiet` as recovered; returns their ids.

    A conditional UPDATE: two workers running it at once each recover a group at most once.
    """
    ids = list(
        conn.execute(
            update(error_groups)
            .where(
                error_groups.c.status.in_(["unresolved", "regressed"]),
                error_groups.c.recovered_at.is_(None),
                error_groups.c.last_seen <= now - quiet,
            )
            .values(recovered_at=now)
            .returning(error_groups.c.id)
        ).scalars()
    )
    for group_id in sorted(ids):
        record_change(
            conn,
            group_id=group_id,
            kind="recovered",
            now=now,
            actor=ACTOR,
            details={"quiet_minutes": quiet.total_seconds() / 60},
        )
    return sorted(ids)


def prune_event_ids(conn: Connection, *, now: datetime, horizon: timedelta = MAX_AGE) -> int:
    """Forget Sentry event ids older than the horizon (older events are refused anyway)."""
    result = conn.execute(delete(error_event_ids).where(error_event_ids.c.time < now - horizon))
    return int(result.rowcount or 0)
