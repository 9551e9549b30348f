"""Time ranges as the Read API and pages name them: `1h|24h|7d|30d|90d` or from/to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = [
    "MAX_INTERVAL",
    "PRESETS",
    "TimeRange",
    "parse_interval",
    "parse_time_range",
    "pick_interval",
]

PRESETS: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
}


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def previous(self) -> TimeRange:
        """The period of the same length just before this one (for deltas)."""
        return TimeRange(self.start - self.duration, self.start)


def parse_time_range(
    preset: str | None, *, now: datetime, start: str | None = None, end: str | None = None
) -> TimeRange:
    """A TimeRange from a preset or ISO from/to; ValueError says what is wrong."""
    if start or end:
        if not (start and end):
            raise ValueError("give both 'from' and 'to', or a timeRange preset")
        lo, hi = _iso(start, "from"), _iso(end, "to")
        if hi <= lo:
            raise ValueError("'to' must be after 'from'")
        return TimeRange(lo, hi)
    preset = preset or "24h"
    if preset not in PRESETS:
        raise ValueError(f"timeRange must be one of {', '.join(PRESETS)}, got {preset!r}")
    return TimeRange(now - PRESETS[preset], now)


def _iso(value: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"'{name}' is not an ISO 8601 time: {value!r}") from exc
    if moment.tzinfo is None:
        raise ValueError(f"'{name}' needs a time zone offset, e.g. 2026-06-06T12:00:00Z")
    return moment


def pick_interval(tr: TimeRange) -> timedelta:
    """A chart bucket giving roughly 60–400 points for the range."""
    for step in (
        timedelta(minutes=1),
        timedelta(minutes=5),
        timedelta(minutes=15),
        timedelta(hours=1),
    ):
        if tr.duration / step <= 400:
            return step
    return timedelta(days=1) if tr.duration > timedelta(days=60) else timedelta(hours=6)


MAX_INTERVAL = timedelta(days=366)  # the longest bucket or window any route accepts
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_INTERVAL = re.compile(r"([0-9]{1,6})([smhdw])")  # ASCII digits: int() also reads "٥", "+5"


def parse_interval(interval: timedelta | str, *, maximum: timedelta = MAX_INTERVAL) -> timedelta:
    """'30s', '5m', '1h', '1d', '2w' (or a timedelta), from 1 s to `maximum`; ValueError else."""
    if isinstance(interval, timedelta):
        step = interval
    else:
        match = _INTERVAL.fullmatch(interval)
        if match is None:
            raise ValueError(
                f"interval must look like 30s, 5m, 1h, 1d or 1w; got {interval[:40]!r}"
            )
        number, unit = match.groups()
        step = timedelta(seconds=int(number) * _UNITS[unit])  # < 1e6 weeks: timedelta holds it
    if step <= timedelta(0):
        raise ValueError("interval must be positive")
    if step > maximum:
        raise ValueError(f"interval must be at most {maximum.days} days")
    return step
