"""Escalation policies in the database, and the one rule for which policy applies.

`policy_for` is what alert escalation, incident escalation, the API and the pages call:
- on a wedding day (Saturday in the business time zone) the wedding-day policy, for what is
  eligible: incidents always, alerts only of rules marked `weekend_escalation` whose alert is
  at or above the `wedding_day_min_severity` setting (default high; `wedding_day_applies`);
- otherwise the first of the given policy ids that exists (a rule's own, an incident's own,
  the rule linked to an incident);
- otherwise the policy named "Default" (not a wedding-day one), so nothing is left unpaged
  just because nobody chose a policy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, insert, select

from monitoring_core.enums import Severity
from monitoring_core.policies.steps import Step, parse_steps
from monitoring_core.schema import escalation_policies as ep
from monitoring_core.schema import oncall_schedules, settings, users
from monitoring_core.wedding_calendar import is_wedding_day

__all__ = [
    "DEFAULT_NAME",
    "MIN_SEVERITY_SETTING",
    "PolicyInvalid",
    "create_policy",
    "list_policies",
    "policy_for",
    "wedding_day_applies",
    "wedding_min_severity",
]

DEFAULT_NAME = "Default"
MIN_SEVERITY_SETTING = "wedding_day_min_severity"  # settings row: a severity name
DEFAULT_MIN_SEVERITY = Severity.HIGH


class PolicyInvalid(ValueError):
    """A policy body that cannot be stored; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def list_policies(conn: Connection) -> list[dict[str, Any]]:
    """Every policy, oldest first."""
    return [dict(r._mapping) for r in conn.execute(select(ep).order_by(ep.c.id))]


def create_policy(conn: Connection, body: Mapping[str, Any]) -> dict[str, Any]:
    """Store `{name, steps: [{after_minutes, channels?, users?, schedules?}], repeat?,
    is_wedding_day?}`."""
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise PolicyInvalid("name", "name is required")
    try:
        steps = parse_steps(body.get("steps"))
    except ValueError as exc:
        raise PolicyInvalid("steps", str(exc)) from None
    _check_targets(conn, steps)
    if conn.execute(select(ep.c.id).where(ep.c.name == name.strip())).first() is not None:
        raise PolicyInvalid("name", "a policy with this name exists")
    values = {
        "name": name.strip(),
        "steps": body["steps"],
        "repeat": bool(body.get("repeat")),
        "is_wedding_day": bool(body.get("is_wedding_day")),
    }
    return dict(conn.execute(insert(ep).values(**values).returning(*ep.c)).one()._mapping)


def _check_targets(conn: Connection, steps: Sequence[Step]) -> None:
    """PolicyInvalid for a step naming a user or schedule that does not exist."""
    for field, table in (("users", users), ("schedules", oncall_schedules)):
        wanted = {i for step in steps for i in getattr(step, field)}
        found = set(conn.execute(select(table.c.id).where(table.c.id.in_(wanted))).scalars())
        if missing := wanted - found:
            raise PolicyInvalid("steps", f"no {field[:-1]} with id {sorted(missing)}")


def wedding_day_applies(rule_row: Mapping[str, Any], severity: str, minimum: Severity) -> bool:
    """Whether an alert of this rule at this severity climbs the wedding-day policy (pure)."""
    try:
        return bool(rule_row.get("weekend_escalation")) and Severity(severity).at_least(minimum)
    except ValueError:
        return False


def wedding_min_severity(conn: Connection) -> Severity:
    """The `wedding_day_min_severity` setting, else high."""
    value = conn.execute(
        select(settings.c.value).where(settings.c.key == MIN_SEVERITY_SETTING)
    ).scalar_one_or_none()
    try:
        return Severity(value) if isinstance(value, str) else DEFAULT_MIN_SEVERITY
    except ValueError:
        return DEFAULT_MIN_SEVERITY


def policy_for(
    conn: Connection,
    *,
    now: datetime,
    tz: ZoneInfo,
    policy_ids: Sequence[int | None] = (),
    wedding_day_eligible: bool = True,
) -> dict[str, Any] | None:
    """The policy to climb at `now` (see the module docstring), or None when none exists."""
    queries = []
    if wedding_day_eligible and is_wedding_day(now, tz):
        queries.append(select(ep).where(ep.c.is_wedding_day).order_by(ep.c.id))
    queries += [select(ep).where(ep.c.id == pid) for pid in policy_ids if pid is not None]
    queries.append(select(ep).where(ep.c.name == DEFAULT_NAME, ~ep.c.is_wedding_day))
    for query in queries:
        row = conn.execute(query.limit(1)).first()
        if row is not None:
            return dict(row._mapping)
    return None
