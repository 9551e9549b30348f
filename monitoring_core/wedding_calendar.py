"""The wedding calendar: Saturdays are wedding days, May–October is peak season.

Pure functions of a timestamp and the business time zone (MONITORING_TZ).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from monitoring_core.enums import Severity

__all__ = [
    "PEAK_MONTHS",
    "SEASON_STRICTNESS",
    "SEVERITY_ORDER",
    "is_peak_season",
    "is_wedding_day",
    "raise_severity",
    "season_adjusted_threshold",
]

PEAK_MONTHS = frozenset(range(5, 11))  # May..October
SEASON_STRICTNESS = 0.20
# Least to most severe, from the enum (index grows with severity).
SEVERITY_ORDER = tuple(s.value for s in reversed(Severity))
_SATURDAY = 5


def _local(moment: datetime, tz: ZoneInfo) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(tz)


def is_wedding_day(moment: datetime, tz: ZoneInfo) -> bool:
    """Saturday in the business time zone."""
    return _local(moment, tz).weekday() == _SATURDAY


def is_peak_season(moment: datetime, tz: ZoneInfo) -> bool:
    """May to October in the business time zone."""
    return _local(moment, tz).month in PEAK_MONTHS


def raise_severity(severity: str) -> str:
    """One level up (critical stays critical)."""
    index = SEVERITY_ORDER.index(severity)
    return SEVERITY_ORDER[min(index + 1, len(SEVERITY_ORDER) - 1)]


def season_adjusted_threshold(value: float, operator: str) -> float:
    """A threshold 20 % stricter: lower for 'greater than' rules, higher for 'less than' ones."""
    if operator.startswith("greater"):
        return value * (1 - SEASON_STRICTNESS)
    if operator.startswith("less"):
        return value * (1 + SEASON_STRICTNESS)
    return value
