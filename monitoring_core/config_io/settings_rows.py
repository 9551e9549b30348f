"""The `settings` rows an admin may change, each with its check; setting one is audited.

Known keys are checked the way their readers read them (retention, the error scrubber, the
error→incident policy, the auto-recovery quiet period, the wedding-day minimum severity, the
wedding calendar and the default key limits of `live_settings`), so a
value saved here (Admin page) or by `config apply` is one the system uses rather than ignores.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from monitoring_core.audit import record_audit
from monitoring_core.backup import SCHEDULE_SETTING, parse_schedule
from monitoring_core.config_io.spec import UNMANAGED_SETTINGS
from monitoring_core.enums import Role, Severity
from monitoring_core.errors.recovery import QUIET_SETTING
from monitoring_core.errors.severity import INCIDENT_POLICY_SETTING, parse_incident_policy
from monitoring_core.flows.digest import DIGEST_SETTING
from monitoring_core.flows.digest import parse_schedule as parse_digest
from monitoring_core.flows.error_ingest import SCRUB_FIELDS_SETTING
from monitoring_core.live_settings import (
    CALENDAR_SETTING,
    KEY_LIMITS_SETTING,
    validate_calendar,
    validate_key_limits,
)
from monitoring_core.policies.store import MIN_SEVERITY_SETTING
from monitoring_core.retention import DEFAULT_RETENTION_DAYS
from monitoring_core.retention import SETTINGS_KEY as RETENTION_SETTING
from monitoring_core.roles import require_role
from monitoring_core.schema import settings

__all__ = [
    "EXAMPLES",
    "KNOWN_SETTINGS",
    "clear_setting",
    "read_settings",
    "save_setting",
    "validate_setting",
]


def _retention(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValueError("must be an object of table name to days")
    for key, days in value.items():
        if key not in DEFAULT_RETENTION_DAYS:
            raise ValueError(f"{key}: unknown; known: {', '.join(DEFAULT_RETENTION_DAYS)}")
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise ValueError(f"{key}: must be a whole number of days >= 1")


def _names(value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError("must be a list of field names")


def _severity(value: Any) -> None:
    if value not in set(Severity):
        raise ValueError(f"must be one of {', '.join(Severity)}")


def _minutes(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError("must be a positive number of minutes")


# key -> (what it does, its check)
KNOWN_SETTINGS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    RETENTION_SETTING: ("days each table keeps its rows (unset tables: defaults)", _retention),
    SCRUB_FIELDS_SETTING: ("extra field names scrubbed from error events", _names),
    MIN_SEVERITY_SETTING: ("lowest alert severity the wedding-day policy pages", _severity),
    QUIET_SETTING: ("minutes without events before an error group recovers", _minutes),
    INCIDENT_POLICY_SETTING: ("which error groups open incidents", parse_incident_policy),
    SCHEDULE_SETTING: ("the worker's scheduled backups (pg_dump files)", parse_schedule),
    DIGEST_SETTING: ("the weekly digest: channels, weekday and hour", parse_digest),
    CALENDAR_SETTING: (
        "the business time zone, peak-season months, season strictness and Saturday raise",
        validate_calendar,
    ),
    KEY_LIMITS_SETTING: ("per-minute limits of keys without their own", validate_key_limits),
}

EXAMPLES: dict[str, Any] = {  # shown as placeholders in forms
    RETENTION_SETTING: {"metric_points": 14, "audit_log": 365},
    SCRUB_FIELDS_SETTING: ["iban", "national_insurance"],
    MIN_SEVERITY_SETTING: "high",
    QUIET_SETTING: 60,
    INCIDENT_POLICY_SETTING: {"min_severity": "high", "saturday_raise": True},
    SCHEDULE_SETTING: {"directory": "/var/backups/monitoring", "every_hours": 24, "keep": 7},
    DIGEST_SETTING: {"channel_ids": [1], "weekday": "monday", "hour": 8},
    CALENDAR_SETTING: {
        "time_zone": "Europe/London",
        "peak_months": [5, 6, 7, 8, 9, 10],
        "season_strictness": 0.2,
        "saturday_raise_levels": 1,
    },
    KEY_LIMITS_SETTING: {"requests_per_minute": 12000, "points_per_minute": 600000},
}


def validate_setting(key: str, value: Any) -> None:
    """ValueError naming the key when the value is not one its reader accepts."""
    if key in UNMANAGED_SETTINGS:
        raise ValueError(f"{key} is an installation secret, not configuration")
    check = KNOWN_SETTINGS.get(key, (None, None))[1]
    if check is not None:
        try:
            check(value)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None


def read_settings(conn: Connection) -> dict[str, Any]:
    """Every settings row but the installation secrets."""
    rows = conn.execute(select(settings.c.key, settings.c.value).order_by(settings.c.key))
    return {r.key: r.value for r in rows if r.key not in UNMANAGED_SETTINGS}


def save_setting(
    conn: Connection, *, key: str, value: Any, actor: str, role: str, now: datetime
) -> None:
    """Set one settings row (admins); ValueError when its reader would not accept it."""
    require_role(role, Role.ADMIN)
    validate_setting(key, value)
    values = {"value": value, "updated_at": now, "updated_by": actor}
    stmt = pg_insert(settings).values(key=key, **values)
    conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_=values))
    record_audit(conn, actor=actor, action="setting.update", target=f"setting:{key}", now=now)


def clear_setting(conn: Connection, *, key: str, actor: str, role: str, now: datetime) -> bool:
    """Remove a row (its default applies again); False when it was not set."""
    require_role(role, Role.ADMIN)
    if key in UNMANAGED_SETTINGS:
        raise ValueError(f"{key} is an installation secret, not configuration")
    gone = conn.execute(delete(settings).where(settings.c.key == key)).rowcount
    if gone:
        record_audit(conn, actor=actor, action="setting.clear", target=f"setting:{key}", now=now)
    return bool(gone)
