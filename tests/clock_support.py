"""Instants for tests whose subject is the weekday rules (Saturdays are wedding days)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["off_wedding_day"]

LONDON = ZoneInfo("Europe/London")  # MONITORING_TZ in the tests
_LOOKBACK = timedelta(hours=1)  # tests set their incidents up to an hour before now


def off_wedding_day(moment: datetime) -> datetime:
    """`moment`, moved on by whole days until neither it nor the hour before is a Saturday.

    Sunday 00:02 becomes Monday 00:02: still just after midnight, but its incidents opened
    ten minutes earlier are not on a wedding day.
    """
    while any(
        (moment - ago).astimezone(LONDON).weekday() == 5 for ago in (timedelta(0), _LOOKBACK)
    ):
        moment += timedelta(days=1)
    return moment
