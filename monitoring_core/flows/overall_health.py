"""Overall health: one status for the platform and the reasons for it.

`overall_health(api, checks, alerts, incidents)` is pure; `read_overall_health` reads the four
inputs through the domains' queries. The status is the worst level among the reasons
(critical > degraded > unknown > healthy; healthy when there is no reason):

- critical: API timings critical (5xx rate >= 5 % or p95 >= 2 s over the range); a
  wedding-critical health check critical; a critical alert firing (acknowledged or
  suppressed ones too: the condition still holds); an open SEV1 incident.
- degraded: API timings degraded (5xx rate >= 1 % or p95 >= 1 s); any other health check
  critical, or any check warning; a high alert firing; an open SEV2 incident.
- unknown: no API requests in the range (when nothing above applies).

Alerts with no data or still pending say nothing about health: they are not reasons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from monitoring_core.alerts.store import list_active_alerts
from monitoring_core.health.queries import health_overview
from monitoring_core.incidents.queries import active_incidents
from monitoring_core.performance.queries import overview_summary
from monitoring_core.timerange import TimeRange

__all__ = ["LEVELS", "Reason", "overall_health", "read_overall_health"]

LEVELS = ("critical", "degraded", "unknown", "healthy")  # worst first
_HOLDING = ("firing", "acknowledged", "suppressed")  # the alert's condition holds
_ALERT_LEVEL = {"critical": "critical", "high": "degraded"}
_INCIDENT_LEVEL = {"SEV1": "critical", "SEV2": "degraded"}


@dataclass(frozen=True)
class Reason:
    level: str  # critical|degraded|unknown
    source: str  # api|check|alert|incident
    message: str


def _api_reasons(api: Mapping[str, Any]) -> list[Reason]:
    status = api.get("status")
    if status == "unknown":
        return [Reason("unknown", "api", "No API requests in the range")]
    if status not in ("critical", "degraded"):
        return []
    rate, p95 = api.get("error_rate") or 0.0, api.get("p95_ms")
    latency = f", p95 {p95:,.0f} ms" if p95 is not None else ""
    return [Reason(status, "api", f"API {status}: 5xx rate {rate:.1%}{latency}")]


def _check_reasons(checks: Sequence[Mapping[str, Any]]) -> list[Reason]:
    out = []
    for check in checks:
        status, name = check.get("status"), check["check_name"]
        if status == "critical" and check.get("wedding_critical"):
            out.append(Reason("critical", "check", f"Wedding-critical check {name} is critical"))
        elif status == "critical":
            out.append(Reason("degraded", "check", f"Health check {name} is critical"))
        elif status == "warning":
            kind = "Wedding-critical check" if check.get("wedding_critical") else "Health check"
            out.append(Reason("degraded", "check", f"{kind} {name} is warning"))
    return out


def _alert_reasons(alerts: Sequence[Mapping[str, Any]]) -> list[Reason]:
    out = []
    for alert in alerts:
        level = _ALERT_LEVEL.get(alert["severity"])
        if level and alert["status"] in _HOLDING:
            key = f" ({alert['alert_key']})" if alert.get("alert_key") else ""
            message = f"{alert['severity'].capitalize()} alert {alert['status']}: "
            out.append(Reason(level, "alert", f"{message}{alert['alert_name']}{key}"))
    return out


def _incident_reasons(incidents: Sequence[Mapping[str, Any]]) -> list[Reason]:
    out = []
    for incident in incidents:
        level = _INCIDENT_LEVEL.get(incident["severity"])
        if level:
            message = f"{incident['severity']} incident {incident['incident_number']} open"
            out.append(Reason(level, "incident", f"{message}: {incident['title']}"))
    return out


def overall_health(
    api: Mapping[str, Any],
    checks: Sequence[Mapping[str, Any]],
    alerts: Sequence[Mapping[str, Any]],
    incidents: Sequence[Mapping[str, Any]],
) -> tuple[str, list[Reason]]:
    """The overall status and its reasons, worst first (see the module docstring)."""
    reasons = [
        *_api_reasons(api),
        *_check_reasons(checks),
        *_alert_reasons(alerts),
        *_incident_reasons(incidents),
    ]
    reasons.sort(key=lambda r: LEVELS.index(r.level))  # stable: sources keep their order
    return (reasons[0].level if reasons else "healthy"), reasons


def read_overall_health(conn: Connection, tr: TimeRange) -> dict[str, Any]:
    """`{"status", "reasons": [{level, source, message}]}` for the range ending `tr.end`."""
    now: datetime = tr.end
    status, reasons = overall_health(
        overview_summary(conn, tr),
        health_overview(conn, now)["problems"],
        list_active_alerts(conn),
        active_incidents(conn, now=now),
    )
    return {"status": status, "reasons": [asdict(r) for r in reasons]}
