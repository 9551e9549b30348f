"""The compaction job: raw metric points the rollups have passed, older than 2 h, become
compressed series chunks (monitoring_core/compaction.py). Owns its transactions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

__all__ = ["compact_points"]


def compact_points(engine: Engine, now: datetime) -> str:
    from monitoring_core.compaction import compact

    return compact(engine, now).summary()
