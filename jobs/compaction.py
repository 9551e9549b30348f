"""The compaction job: raw metric points the rollups have passed, older than 2 h, become
compressed series chunks, and API timings older than a day are packed
(monitoring_core/compaction.py). Owns its transactions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

__all__ = ["compact_points"]


def compact_points(engine: Engine, now: datetime) -> str:
    from monitoring_core.compaction import compact, pack_api_timings

    return f"{compact(engine, now).summary()}; {pack_api_timings(engine, now).summary()}"
