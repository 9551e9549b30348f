"""Every status and kind, declared once."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AlertStatus",
    "ApiScope",
    "CheckStatus",
    "ErrorGroupStatus",
    "ErrorLevel",
    "IncidentSeverity",
    "IncidentStatus",
    "Role",
    "Severity",
    "WeddingImpact",
    "VitalRating",
]


class Role(StrEnum):
    """Who may do what; declared from least to most privileged (`rank` follows this order)."""

    VIEWER = "viewer"
    RESPONDER = "responder"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """0 for viewer, 1 for responder, 2 for admin."""
        return list(Role).index(self)


class ApiScope(StrEnum):
    """What an API key may do (docs/API.md "Keys and scopes"); admin may also read and ingest."""

    INGEST = "ingest"  # write routes only: a key that ships inside apps and Sentry DSNs
    READ = "read"  # the read and live routes
    BROWSER = "browser"  # POST /api/monitoring/performance only, from its allowed origins
    ADMIN = "admin"


class Severity(StrEnum):
    """Alert severities, declared from most to least severe (`rank`: 0 is critical)."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        """0 for critical … 4 for info: sort by it, lower is more severe."""
        return list(Severity).index(self)

    def at_least(self, other: Severity) -> bool:
        """True when this severity is `other` or more severe."""
        return self.rank <= other.rank


class AlertStatus(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    SUPPRESSED = "suppressed"
    RESOLVED = "resolved"
    EXPIRED = "expired"
    NO_DATA = "no_data"


class IncidentSeverity(StrEnum):
    SEV1 = "SEV1"
    SEV2 = "SEV2"
    SEV3 = "SEV3"
    SEV4 = "SEV4"


class IncidentStatus(StrEnum):
    OPEN = "open"
    INVESTIGATING = "investigating"
    MITIGATING = "mitigating"
    RESOLVED = "resolved"
    CLOSED = "closed"


class WeddingImpact(StrEnum):
    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    WEDDING_DAY_CRITICAL = "wedding_day_critical"


class ErrorLevel(StrEnum):
    FRONTEND = "frontend"
    API = "api"
    DATABASE = "database"
    THIRD_PARTY = "third_party"


class ErrorGroupStatus(StrEnum):
    UNRESOLVED = "unresolved"
    RESOLVED = "resolved"
    IGNORED = "ignored"
    REGRESSED = "regressed"


class CheckStatus(StrEnum):
    HEALTHY = "healthy"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"
    PAUSED = "paused"  # not run, not judged, not alerted on (health/rules.py)


class VitalRating(StrEnum):
    GOOD = "good"
    NEEDS_IMPROVEMENT = "needs-improvement"
    POOR = "poor"
