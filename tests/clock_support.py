"""Instants for tests whose subject is the weekday rules (Saturdays are wedding days)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["off_wedding_day"]

LONDON = ZoneInfo("Europe/London")  # MONITORING_TZ in the tests


def off_wedding_day(moment: datetime) -> datetime:
    """`moment`, or a day later when it falls on a Saturday in London (a wedding day)."""
    return moment + timedelta(days=1) if moment.astimezone(LONDON).weekday() == 5 else moment
