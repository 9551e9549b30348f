"""What admins do to escalation policies, with the role check and the audit log.

The API route and the Settings page both call this, so a policy added either way leaves the
same audit row.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from monitoring_core.audit import record_audit
from monitoring_core.enums import Role
from monitoring_core.policies.store import create_policy
from monitoring_core.roles import require_role

__all__ = ["policy_create"]


def policy_create(
    conn: Connection, *, body: Mapping[str, Any], actor: str, role: str, now: datetime
) -> dict[str, Any]:
    """The stored policy; PolicyInvalid names the bad field."""
    require_role(role, Role.ADMIN)
    row = create_policy(conn, body)
    record_audit(conn, actor=actor, action="policy.create", target=row["name"], now=now)
    return row
