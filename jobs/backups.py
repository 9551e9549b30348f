"""Scheduled backups: when the `backup_schedule` setting is set, a pg_dump file every
`every_hours` into `directory`, keeping the newest `keep` (monitoring_core.backup)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, select

from monitoring_core.backup import SCHEDULE_SETTING, parse_schedule, run_schedule
from monitoring_core.schema import settings

__all__ = ["scheduled_backup"]


def scheduled_backup(engine: Engine, now: datetime) -> str:
    with engine.connect() as conn:
        value = conn.execute(
            select(settings.c.value).where(settings.c.key == SCHEDULE_SETTING)
        ).scalar_one_or_none()
    if value is None:
        return "off (no backup_schedule setting)"
    schedule = parse_schedule(value)  # a bad value fails the run: job_watch tells someone
    return run_schedule(engine.url.render_as_string(hide_password=False), schedule, now=now)
