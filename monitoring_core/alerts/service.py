"""What admins do to alert rules, with role checks and the audit log."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from monitoring_core.alerts import signals
from monitoring_core.alerts.rules import RuleInvalid
from monitoring_core.alerts.silences import create_silence, delete_silence, end_silence
from monitoring_core.alerts.store import (
    RuleNotFound,
    create_rule,
    delete_rule,
    get_rule,
    rule_to_api,
    update_rule,
)
from monitoring_core.audit import record_audit
from monitoring_core.enums import Role
from monitoring_core.roles import require_role

__all__ = [
    "ActionRefused",
    "RuleNotFound",
    "rule_create",
    "rule_delete",
    "rule_duplicate",
    "rule_update",
    "silence_create",
    "silence_delete",
    "silence_end",
]


class ActionRefused(ValueError):
    """The alert is not in a state this action applies to."""


def _check_signal(conn: Connection, body: Mapping[str, Any]) -> None:
    """RuleInvalid when the condition names no known signal (or one it cannot use)."""
    cfg = body.get("condition_config")
    if isinstance(cfg, Mapping) and (problems := signals.problems(conn, cfg)):
        raise RuleInvalid(problems)


def rule_create(
    conn: Connection, *, body: Mapping[str, Any], actor: str, role: str, now: datetime
) -> dict[str, Any]:
    require_role(role, Role.ADMIN)
    _check_signal(conn, body)
    rule = create_rule(conn, body=body, created_by=actor, now=now)
    record_audit(
        conn,
        actor=actor,
        action="alert_rule.create",
        target=f"rule:{rule['id']}",
        details={"alert_name": rule["alert_name"]},
        now=now,
    )
    return rule


def rule_update(
    conn: Connection, *, rule_id: int, body: Mapping[str, Any], actor: str, role: str, now: datetime
) -> dict[str, Any]:
    require_role(role, Role.ADMIN)
    _check_signal(conn, body)
    rule = update_rule(conn, rule_id=rule_id, body=body, now=now)
    record_audit(
        conn,
        actor=actor,
        action="alert_rule.update",
        target=f"rule:{rule_id}",
        details={"fields": sorted(body)},
        now=now,
    )
    return rule


def rule_duplicate(
    conn: Connection, *, rule_id: int, actor: str, role: str, now: datetime
) -> dict[str, Any]:
    """A disabled copy of a rule named "… (copy)" (RuleNotFound); admins."""
    require_role(role, Role.ADMIN)
    original = rule_to_api(get_rule(conn, rule_id=rule_id))
    body = {
        k: v
        for k, v in original.items()
        if k not in ("id", "created_by", "created_at", "updated_at")
    }
    body.update(alert_name=f"{original['alert_name']} (copy)", is_enabled=False)
    rule = create_rule(conn, body=body, created_by=actor, now=now)
    record_audit(
        conn,
        actor=actor,
        action="alert_rule.duplicate",
        target=f"rule:{rule['id']}",
        details={"from_rule": rule_id},
        now=now,
    )
    return rule


def rule_delete(conn: Connection, *, rule_id: int, actor: str, role: str, now: datetime) -> None:
    require_role(role, Role.ADMIN)
    delete_rule(conn, rule_id=rule_id)
    record_audit(conn, actor=actor, action="alert_rule.delete", target=f"rule:{rule_id}", now=now)


def silence_create(
    conn: Connection,
    *,
    matchers: list[dict[str, Any]],
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    actor: str,
    role: str,
    now: datetime,
    recurrence: dict[str, Any] | None = None,
) -> int:
    """A new silence's id (ValueError listing problems); responders and admins."""
    require_role(role, Role.RESPONDER)
    silence_id = create_silence(
        conn,
        matchers=matchers,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        created_by=actor,
        recurrence=recurrence,
    )
    record_audit(
        conn, actor=actor, action="silence.create", target=f"silence:{silence_id}", now=now
    )
    return silence_id


def silence_delete(
    conn: Connection, *, silence_id: int, actor: str, role: str, now: datetime
) -> bool:
    """False when there was no such silence; responders and admins."""
    require_role(role, Role.RESPONDER)
    deleted = delete_silence(conn, silence_id=silence_id)
    if deleted:
        record_audit(
            conn, actor=actor, action="silence.delete", target=f"silence:{silence_id}", now=now
        )
    return deleted


def silence_end(conn: Connection, *, silence_id: int, actor: str, role: str, now: datetime) -> bool:
    """End a silence at `now`, kept for the record (False: no such silence still running);
    responders and admins."""
    require_role(role, Role.RESPONDER)
    ended = end_silence(conn, silence_id=silence_id, now=now)
    if ended:
        record_audit(
            conn, actor=actor, action="silence.end", target=f"silence:{silence_id}", now=now
        )
    return ended
