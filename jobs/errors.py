"""Error tracking's job: quiet groups recover, old event ids are pruned (thin adapter)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

__all__ = ["error_recovery"]


def error_recovery(engine: Engine, now: datetime) -> str:
    """Recover quiet groups, prune old event ids."""
    from monitoring_core.errors.recovery import (
        load_quiet_period,
        prune_event_ids,
        recover_quiet_groups,
    )

    with engine.begin() as conn:
        recovered = recover_quiet_groups(conn, now=now, quiet=load_quiet_period(conn))
        pruned = prune_event_ids(conn, now=now)
    return f"{len(recovered)} groups recovered, {pruned} event ids pruned"
