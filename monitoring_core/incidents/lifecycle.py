"""Pure incident lifecycle rules: response targets, allowed status moves, wedding impact.

Response targets (minutes; the Saturday column applies on wedding days in the business time
zone, when couples cannot wait):

| severity | acknowledge | Saturday | resolve | Saturday | re-page after ack if not mitigated |
|----------|-------------|----------|---------|----------|-------------------------------------|
| SEV1     | 5           | 2        | 60      | 30       | 30 (Saturday 15)                    |
| SEV2     | 15          | 5        | 240     | 120      | 60 (Saturday 30)                    |
| SEV3     | 60          | 30       | 1440    | 720      | none (not escalated)                |
| SEV4     | 240         | 240      | 4320    | 4320     | none (not escalated)                |

Statuses move forward `open -> investigating -> mitigating -> resolved -> closed`; a step may
be skipped forward (a fix found at once goes straight to `resolved`), `mitigating` may fall
back to `investigating` (the mitigation did not hold), and a `resolved` incident may be
reopened to `investigating` until it is closed. `closed` is final.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from monitoring_core.enums import IncidentSeverity, IncidentStatus, WeddingImpact

__all__ = [
    "ACTIVE_STATUSES",
    "ESCALATED_SEVERITIES",
    "TRANSITIONS",
    "ResponseTarget",
    "TransitionRefused",
    "check_transition",
    "response_target",
    "target_state",
    "transition_fields",
    "validate_wedding_impact",
]

S = IncidentStatus
ACTIVE_STATUSES = (S.OPEN, S.INVESTIGATING, S.MITIGATING)
ESCALATED_SEVERITIES = (IncidentSeverity.SEV1, IncidentSeverity.SEV2)

TRANSITIONS: dict[IncidentStatus, frozenset[IncidentStatus]] = {
    S.OPEN: frozenset({S.INVESTIGATING, S.MITIGATING, S.RESOLVED}),
    S.INVESTIGATING: frozenset({S.MITIGATING, S.RESOLVED}),
    S.MITIGATING: frozenset({S.INVESTIGATING, S.RESOLVED}),
    S.RESOLVED: frozenset({S.CLOSED, S.INVESTIGATING}),
    S.CLOSED: frozenset(),
}


class TransitionRefused(ValueError):
    """The incident cannot move to that status from where it is."""


@dataclass(frozen=True)
class ResponseTarget:
    acknowledge_minutes: float
    resolve_minutes: float
    reescalate_minutes: float | None  # None: no re-paging after acknowledgement


# (weekday, Saturday) per severity.
_TARGETS: dict[IncidentSeverity, tuple[ResponseTarget, ResponseTarget]] = {
    IncidentSeverity.SEV1: (ResponseTarget(5, 60, 30), ResponseTarget(2, 30, 15)),
    IncidentSeverity.SEV2: (ResponseTarget(15, 240, 60), ResponseTarget(5, 120, 30)),
    IncidentSeverity.SEV3: (ResponseTarget(60, 1440, None), ResponseTarget(30, 720, None)),
    IncidentSeverity.SEV4: (ResponseTarget(240, 4320, None), ResponseTarget(240, 4320, None)),
}


def response_target(severity: str, *, is_saturday: bool) -> ResponseTarget:
    """The targets of a severity (ValueError for anything but SEV1..SEV4)."""
    try:
        weekday, saturday = _TARGETS[IncidentSeverity(severity)]
    except ValueError:
        raise ValueError(f"severity must be one of SEV1..SEV4, got {severity!r}") from None
    return saturday if is_saturday else weekday


def check_transition(current: str, target: str) -> IncidentStatus:
    """The target status when the move is allowed; TransitionRefused (with why) otherwise."""
    try:
        to = IncidentStatus(target)
    except ValueError:
        allowed = ", ".join(s.value for s in IncidentStatus)
        raise TransitionRefused(f"unknown status {target!r}; one of {allowed}") from None
    src = IncidentStatus(current)
    if to == src:
        raise TransitionRefused(f"the incident is already {src.value}")
    if to not in TRANSITIONS[src]:
        if src == S.CLOSED:
            raise TransitionRefused("a closed incident is final; open a new incident instead")
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[src]))
        raise TransitionRefused(f"cannot move from {src.value} to {to.value}; allowed: {allowed}")
    return to


def transition_fields(incident: Mapping[str, Any], to: IncidentStatus, now: datetime) -> dict:
    """Timestamps that change with a move (an acknowledgement is implied by any progress)."""
    fields: dict[str, Any] = {"status": to.value, "updated_at": now}
    if incident.get("acknowledged_at") is None:
        fields["acknowledged_at"] = now
    if to == S.MITIGATING and incident.get("mitigated_at") is None:
        fields["mitigated_at"] = now
    if to == S.RESOLVED:
        fields["resolved_at"] = now
        if incident.get("mitigated_at") is None:
            fields["mitigated_at"] = now
    if to == S.CLOSED:
        fields["closed_at"] = now
    if to == S.INVESTIGATING and incident.get("status") in (S.RESOLVED, S.MITIGATING):
        fields.update(resolved_at=None, mitigated_at=None)  # reopened / mitigation failed
    return fields


def target_state(incident: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Age against the targets: which target applies, minutes left (negative: breached)."""
    target = response_target(incident["severity"], is_saturday=bool(incident["is_saturday"]))
    detected: datetime = incident["detected_at"]
    if incident.get("acknowledged_at") is None:
        kind, minutes, end = "acknowledge", target.acknowledge_minutes, now
    else:
        kind, minutes = "resolve", target.resolve_minutes
        end = incident.get("resolved_at") or now
    due = detected + timedelta(minutes=minutes)
    left = (due - end).total_seconds() / 60
    return {"target": kind, "target_minutes": minutes, "minutes_left": left, "breached": left < 0}


def validate_wedding_impact(value: str) -> WeddingImpact:
    """One of none|low|medium|high|wedding_day_critical, else ValueError."""
    try:
        return WeddingImpact(value)
    except ValueError:
        allowed = ", ".join(w.value for w in WeddingImpact)
        raise ValueError(f"wedding_impact must be one of {allowed}, got {value!r}") from None
