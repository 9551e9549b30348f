"""Severity of an error event: from its level, type and service and the wedding calendar.

Base: the client's severity when it gave one (or Sentry's level), else by layer (database
high, API and third party medium, frontend low). Crashes and lost connections to the database
are at least high. On a wedding day (Saturday in the business time zone) payment and
form-submission errors are critical and every other error goes one level up, capped at high:
only a wedding-day payment/form error or a fatal crash is critical, and those open incidents.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from monitoring_core.enums import ErrorLevel, Severity
from monitoring_core.wedding_calendar import SEVERITY_ORDER, is_wedding_day, raise_severity

__all__ = [
    "INCIDENT_MAX_AGE",
    "SENTRY_LEVEL_SEVERITY",
    "classify_severity",
    "is_payment_or_form",
    "should_open_incident",
]

SENTRY_LEVEL_SEVERITY: dict[str, Severity] = {
    "fatal": Severity.CRITICAL,
    "critical": Severity.CRITICAL,
    "error": Severity.HIGH,
    "warning": Severity.MEDIUM,
    "info": Severity.LOW,
    "debug": Severity.INFO,
}
_LAYER_SEVERITY: dict[str, Severity] = {
    ErrorLevel.DATABASE: Severity.HIGH,
    ErrorLevel.API: Severity.MEDIUM,
    ErrorLevel.THIRD_PARTY: Severity.MEDIUM,
    ErrorLevel.FRONTEND: Severity.LOW,
}
_PAYMENT_OR_FORM = re.compile(
    r"(?i)payment|checkout|billing|invoice|stripe|paypal|charge|card|refund|subscription"
    r"|form|submission|submit|rsvp|booking|enquiry|inquiry"
)
_SERIOUS = re.compile(
    r"(?i)outofmemory|memoryerror|segfault|deadlock|operationalerror|connectionrefused"
    r"|too many connections|connection pool|poolTimeout|diskfull|no space left"
)
# A critical error older than this (a backfill, a queued client) does not page anyone.
INCIDENT_MAX_AGE = timedelta(hours=1)


def is_payment_or_form(*texts: str | None) -> bool:
    """Whether the error type, service or endpoint is about payments or form submissions."""
    return any(t and _PAYMENT_OR_FORM.search(t) for t in texts)


def _max(a: str, b: str) -> str:
    return a if SEVERITY_ORDER.index(a) >= SEVERITY_ORDER.index(b) else b


def classify_severity(
    *,
    level: str,
    error_type: str,
    service_name: str,
    endpoint_path: str | None,
    message: str,
    at: datetime,
    tz: ZoneInfo,
    requested: str | None = None,
) -> str:
    """The severity (`critical|high|medium|low|info`) of one error event occurring `at`."""
    base = requested if requested in SEVERITY_ORDER else _LAYER_SEVERITY.get(level, Severity.MEDIUM)
    severity = str(base)
    if _SERIOUS.search(error_type) or _SERIOUS.search(message[:500]):
        severity = _max(severity, Severity.HIGH)
    if not is_wedding_day(at, tz) or severity == Severity.INFO:
        return severity
    if is_payment_or_form(error_type, service_name, endpoint_path):
        return Severity.CRITICAL
    if severity == Severity.CRITICAL:
        return severity
    return _max(severity, min(raise_severity(severity), Severity.HIGH, key=SEVERITY_ORDER.index))


def should_open_incident(*, severity: str, at: datetime, now: datetime, tz: ZoneInfo) -> bool:
    """A recent critical error on a wedding day opens an incident."""
    return severity == Severity.CRITICAL and is_wedding_day(at, tz) and now - at <= INCIDENT_MAX_AGE
