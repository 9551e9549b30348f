"""Apply Alembic migrations (idempotent) and make sure today's partitions exist."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

from monitoring_core.partitions import ensure_partitions

__all__ = ["PARTITION_DAYS_AHEAD", "alembic_config", "migrate"]

PARTITION_DAYS_AHEAD = 3
MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def migrate(engine: Engine, *, now: datetime, days_back: int = 35) -> None:
    """Upgrade to head, then create partitions from `days_back` ago to a few days ahead."""
    cfg = alembic_config()
    with engine.begin() as conn:
        # One migrator at a time when several processes start together.
        conn.execute(text("SELECT pg_advisory_xact_lock(7210001)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        ensure_partitions(
            conn,
            start=now - timedelta(days=days_back),
            end=now + timedelta(days=PARTITION_DAYS_AHEAD),
        )
