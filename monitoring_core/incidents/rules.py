"""Pure incident rules: numbers, severities from alerts, wedding impact, timeline kinds."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from monitoring_core.enums import IncidentSeverity, WeddingImpact
from monitoring_core.wedding_calendar import is_wedding_day

__all__ = [
    "NUMBER_PATTERN",
    "SOURCES",
    "default_wedding_impact",
    "format_incident_number",
    "incident_year",
    "parse_incident_number",
    "severity_for_alert",
    "validate_severity",
]

NUMBER_PATTERN = re.compile(r"^INC-(\d{4})-(\d{4,})$")
SOURCES = frozenset({"alert", "error", "health_check", "manual"})


def format_incident_number(year: int, sequence: int) -> str:
    """`INC-YYYY-NNNN` (the sequence grows past four digits rather than wrap)."""
    if sequence < 1:
        raise ValueError("incident sequence starts at 1")
    return f"INC-{year:04d}-{sequence:04d}"


def parse_incident_number(number: str) -> tuple[int, int]:
    """(year, sequence) of an incident number; ValueError when it is not one."""
    match = NUMBER_PATTERN.match(number)
    if match is None:
        raise ValueError(f"not an incident number: {number!r}")
    return int(match.group(1)), int(match.group(2))


def incident_year(now: datetime, tz: ZoneInfo) -> int:
    """The year numbers are counted in: the business time zone's, like Saturdays."""
    if now.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return now.astimezone(tz).year


def validate_severity(severity: str) -> IncidentSeverity:
    """SEV1..SEV4, else ValueError."""
    try:
        return IncidentSeverity(severity)
    except ValueError:
        raise ValueError(f"severity must be one of SEV1..SEV4, got {severity!r}") from None


def severity_for_alert(*, now: datetime, tz: ZoneInfo, wedding_critical: bool) -> IncidentSeverity:
    """A critical alert's incident: SEV1 on a Saturday or for wedding-critical services, else SEV2."""
    if wedding_critical or is_wedding_day(now, tz):
        return IncidentSeverity.SEV1
    return IncidentSeverity.SEV2


def default_wedding_impact(severity: str, *, is_saturday: bool) -> WeddingImpact:
    """Impact when the caller gives none: only Saturdays touch weddings by default.

    A SEV1 on a Saturday is `wedding_day_critical`, any other Saturday incident `high`;
    on other days `none` until a person says otherwise.
    """
    if not is_saturday:
        return WeddingImpact.NONE
    if severity == IncidentSeverity.SEV1:
        return WeddingImpact.WEDDING_DAY_CRITICAL
    return WeddingImpact.HIGH
