"""The weekly digest (monitoring_core.flows.digest): built once the `digest` setting's weekday and
hour of the following week have come, then queued for its channels through the outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from monitoring_core.config import load_settings
from monitoring_core.flows.digest import send_due
from monitoring_core.live_settings import read_calendar

__all__ = ["weekly_digest"]


def weekly_digest(engine: Engine, now: datetime) -> str:
    return send_due(engine, now, tz=read_calendar(engine, load_settings()))
