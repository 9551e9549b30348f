"""Severity of an error event: from its level, type and service and the wedding calendar.

Base: the client's severity when it gave one (or Sentry's level), else by layer (database
high, API and third party medium, frontend low). Crashes and lost connections to the database
are at least high. On a wedding day (Saturday in the business time zone) payment and
form-submission errors are critical and every other error goes one level up, capped at high:
only a wedding-day payment/form error or a fatal crash is critical.

Which errors open an incident is the `IncidentPolicy` (settings row `error_incident_policy`,
`incident_for_error`), on any day. By default: an event of severity critical, at most an hour
old, whose group is new in its batch or regressed, opens SEV2 in a wedding-critical service
(payments, photos, forms, bookings, guests) and SEV3 elsewhere; on Saturdays (the wedding
day) one level higher: SEV1 and SEV2. An event of a group with an open incident joins it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from monitoring_core.enums import ErrorLevel, IncidentSeverity, Severity
from monitoring_core.wedding_calendar import SEVERITY_ORDER, is_wedding_day, raise_severity

__all__ = [
    "INCIDENT_MAX_AGE",
    "INCIDENT_POLICY_SETTING",
    "IncidentPolicy",
    "classify_severity",
    "incident_for_error",
    "is_payment_or_form",
    "parse_incident_policy",
]

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


INCIDENT_POLICY_SETTING = "error_incident_policy"  # settings row: a JSON object, see below
_SEV = tuple(s.value for s in IncidentSeverity)  # SEV1 first


@dataclass(frozen=True)
class IncidentPolicy:
    """Which error events open an incident, and of which severity (every field optional in
    the settings row's JSON object; the defaults below apply to what it leaves out)."""

    min_severity: str = Severity.CRITICAL  # the event's severity, at least this
    groups: str = "new_or_regressed"  # or "any": every qualifying event, known groups too
    wedding_critical_services: frozenset[str] = field(
        default_factory=lambda: frozenset({"payments", "photos", "forms", "bookings", "guests"})
    )
    wedding_critical_incident: str = "SEV2"  # weekday, wedding-critical service
    other_incident: str | None = "SEV3"  # weekday, any other service (null: none)
    saturday_raise: bool = True  # Saturdays (business time zone): one level higher
    max_age_minutes: float = INCIDENT_MAX_AGE.total_seconds() / 60  # older: backfill, no page


def _policy_problem(name: str, value: Any) -> str | None:
    if name == "min_severity" and value not in SEVERITY_ORDER:
        return f"must be one of {', '.join(reversed(SEVERITY_ORDER))}"
    if name == "groups" and value not in ("new_or_regressed", "any"):
        return "must be new_or_regressed or any"
    if name == "wedding_critical_services" and not (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    ):
        return "must be a list of service names"
    if name == "wedding_critical_incident" and value not in _SEV:
        return "must be SEV1..SEV4"
    if name == "other_incident" and value is not None and value not in _SEV:
        return "must be SEV1..SEV4 or null"
    if name == "saturday_raise" and not isinstance(value, bool):
        return "must be true or false"
    if name == "max_age_minutes" and (
        isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
    ):
        return "must be a positive number"
    return None


def parse_incident_policy(value: Any) -> IncidentPolicy:
    """The policy of a settings value (None: the defaults); ValueError naming every problem."""
    if value is None:
        return IncidentPolicy()
    if not isinstance(value, Mapping):
        raise ValueError("error_incident_policy must be a JSON object")
    known = {f.name for f in fields(IncidentPolicy)}
    problems = [f"{k}: unknown field" for k in value if k not in known]
    problems += [
        f"{k}: {p}" for k, v in value.items() if k in known and (p := _policy_problem(k, v))
    ]
    if problems:
        raise ValueError("; ".join(problems))
    given = dict(value)
    if "wedding_critical_services" in given:
        given["wedding_critical_services"] = frozenset(given["wedding_critical_services"])
    return IncidentPolicy(**given)


def incident_for_error(
    policy: IncidentPolicy,
    *,
    severity: str,
    service_name: str,
    new_or_regressed: bool,
    at: datetime,
    now: datetime,
    tz: ZoneInfo,
) -> str | None:
    """The incident severity (SEV1..SEV4) this error event opens under `policy`, or None."""
    if SEVERITY_ORDER.index(severity) < SEVERITY_ORDER.index(policy.min_severity):
        return None
    if policy.groups == "new_or_regressed" and not new_or_regressed:
        return None
    if now - at > timedelta(minutes=policy.max_age_minutes):
        return None
    critical_service = service_name in policy.wedding_critical_services
    chosen = policy.wedding_critical_incident if critical_service else policy.other_incident
    if chosen is None or not (policy.saturday_raise and is_wedding_day(at, tz)):
        return chosen
    return _SEV[max(_SEV.index(chosen) - 1, 0)]
