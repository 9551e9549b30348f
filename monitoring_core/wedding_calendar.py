"""The wedding calendar: Saturdays are wedding days, the peak-season months are stricter.

Pure functions of a timestamp and the business calendar. The calendar (`Calendar`) *is* the
business time zone — a `ZoneInfo` — that also carries the season: its peak months, how much
stricter season-adjusted thresholds are, and how many severity levels a Saturday raises
`weekend_escalation` rules. So every reader of the time zone (pages, API routes, jobs, the
alert engine) is handed the one calendar object and the season travels with it. The admin
changes it as the `wedding_calendar` setting (`monitoring_core.live_settings`); without that
row it is `MONITORING_TZ` with the defaults below. A plain `ZoneInfo` passed instead behaves
as a calendar with the defaults (tests, demo data).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from monitoring_core.enums import Severity

__all__ = [
    "MAX_SATURDAY_LEVELS",
    "MAX_STRICTNESS",
    "PEAK_MONTHS",
    "SATURDAY_LEVELS",
    "SEASON_STRICTNESS",
    "SEVERITY_ORDER",
    "Calendar",
    "is_peak_season",
    "is_wedding_day",
    "make_calendar",
    "parse_calendar",
    "peak_months",
    "raise_severity",
    "saturday_levels",
    "season_adjusted_threshold",
    "season_strictness",
]

PEAK_MONTHS = frozenset(range(5, 11))  # May..October (the default)
SEASON_STRICTNESS = 0.20  # default: season-adjusted thresholds 20 % stricter
MAX_STRICTNESS = 0.9  # at most 90 % stricter (a "greater than" threshold at 10 % of itself)
SATURDAY_LEVELS = 1  # default: a Saturday raises `weekend_escalation` rules one level
MAX_SATURDAY_LEVELS = 3
# Least to most severe, from the enum (index grows with severity).
SEVERITY_ORDER = tuple(s.value for s in reversed(Severity))
_SATURDAY = 5
_FIELDS = ("time_zone", "peak_months", "season_strictness", "saturday_raise_levels")


class Calendar(ZoneInfo):
    """The business time zone with the season's settings (see the module docstring).

    Made by `make_calendar` only (ZoneInfo caches instances by key; a calendar is never shared
    through that cache, so two calendars of one zone may differ in their season)."""

    peak_months: frozenset[int]
    strictness: float
    saturday_levels: int

    def __reduce__(self) -> Any:
        # Pickled (and hashed by Streamlit's caches) with its season, not by its key alone;
        # through a classmethod, which both pickle and Streamlit's hasher take by name.
        months = tuple(sorted(self.peak_months))
        return (Calendar.restore, (self.key, months, self.strictness, self.saturday_levels))

    @classmethod
    def restore(cls, key: str, months: tuple[int, ...], strictness: float, levels: int) -> Calendar:
        return make_calendar(key, months, strictness, levels)

    def __repr__(self) -> str:
        months = ",".join(str(m) for m in sorted(self.peak_months))
        return (
            f"Calendar({self.key!r}, peak_months={months}, strictness={self.strictness}, "
            f"saturday_levels={self.saturday_levels})"
        )

    def as_setting(self) -> dict[str, Any]:
        """The `wedding_calendar` setting's value for this calendar."""
        return {
            "time_zone": self.key,
            "peak_months": sorted(self.peak_months),
            "season_strictness": self.strictness,
            "saturday_raise_levels": self.saturday_levels,
        }


def make_calendar(
    time_zone: str,
    months: Iterable[int] = PEAK_MONTHS,
    strictness: float = SEASON_STRICTNESS,
    levels: int = SATURDAY_LEVELS,
) -> Calendar:
    """A calendar (values as `parse_calendar` accepts them; ValueError otherwise)."""
    try:
        calendar = Calendar.no_cache(time_zone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"time_zone: {time_zone!r} is not a known IANA time zone") from None
    calendar.peak_months = frozenset(months)
    calendar.strictness = float(strictness)
    calendar.saturday_levels = int(levels)
    return calendar


def parse_calendar(value: Any, default_tz: str) -> Calendar:
    """The calendar of a `wedding_calendar` setting value (None: every default, in
    `default_tz`); fields left out take their defaults. ValueError naming every problem."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ValueError(f"must be an object with {', '.join(_FIELDS)}")
    problems = [
        f"{k}: unknown field; known: {', '.join(_FIELDS)}" for k in value if k not in _FIELDS
    ]
    zone = value.get("time_zone", default_tz)
    months = value.get("peak_months", sorted(PEAK_MONTHS))
    strictness = value.get("season_strictness", SEASON_STRICTNESS)
    levels = value.get("saturday_raise_levels", SATURDAY_LEVELS)
    if not isinstance(zone, str) or not zone.strip():
        problems.append("time_zone: must be an IANA time zone name such as Europe/London")
    else:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"time_zone: {zone!r} is not a known IANA time zone")
    if (
        not isinstance(months, list)
        or not all(isinstance(m, int) and not isinstance(m, bool) for m in months)
        or not all(1 <= m <= 12 for m in months)
        or len(set(months)) != len(months)
    ):
        problems.append("peak_months: must be a list of distinct month numbers 1-12 (may be empty)")
    if (
        isinstance(strictness, bool)
        or not isinstance(strictness, int | float)
        or not 0 <= strictness <= MAX_STRICTNESS
    ):
        problems.append(f"season_strictness: must be a number from 0 to {MAX_STRICTNESS}")
    if (
        isinstance(levels, bool)
        or not isinstance(levels, int)
        or not 0 <= levels <= MAX_SATURDAY_LEVELS
    ):
        problems.append(
            f"saturday_raise_levels: must be a whole number from 0 to {MAX_SATURDAY_LEVELS}"
        )
    if problems:
        raise ValueError("; ".join(problems))
    return make_calendar(zone, months, strictness, levels)


def peak_months(tz: ZoneInfo) -> frozenset[int]:
    """The calendar's peak months (a plain ZoneInfo: the default months)."""
    return tz.peak_months if isinstance(tz, Calendar) else PEAK_MONTHS


def season_strictness(tz: ZoneInfo) -> float:
    return tz.strictness if isinstance(tz, Calendar) else SEASON_STRICTNESS


def saturday_levels(tz: ZoneInfo) -> int:
    return tz.saturday_levels if isinstance(tz, Calendar) else SATURDAY_LEVELS


def _local(moment: datetime, tz: ZoneInfo) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(tz)


def is_wedding_day(moment: datetime, tz: ZoneInfo) -> bool:
    """Saturday in the business time zone."""
    return _local(moment, tz).weekday() == _SATURDAY


def is_peak_season(moment: datetime, tz: ZoneInfo) -> bool:
    """One of the calendar's peak months (default May to October) in its time zone."""
    return _local(moment, tz).month in peak_months(tz)


def raise_severity(severity: str, levels: int = 1) -> str:
    """`levels` levels up (critical stays critical)."""
    index = SEVERITY_ORDER.index(severity)
    return SEVERITY_ORDER[min(index + max(levels, 0), len(SEVERITY_ORDER) - 1)]


def season_adjusted_threshold(
    value: float, operator: str, strictness: float = SEASON_STRICTNESS
) -> float:
    """A threshold `strictness` stricter (default 20 %): lower for 'greater than' rules,
    higher for 'less than' ones."""
    if operator.startswith("greater"):
        return value * (1 - strictness)
    if operator.startswith("less"):
        return value * (1 + strictness)
    return value
