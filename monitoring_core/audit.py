"""The audit log, and the one way to name who acted.

Every stored "who" — `audit_log.actor`, `alert_events.actor`, `incident_timeline.actor`,
`error_group_changes.actor` and the `*_by` columns (acknowledged, created, resolved, requested,
approved) — is `KIND:NAME`, built by one of the functions below and never by hand:

- `user:NAME` — a person signed in to the UI (`user_actor(user.username)`);
- `apikey:NAME` — a request made with an API key (`key_actor(key.name)`);
- `system:JOB` — the worker or the ingest path acting on its own (`system_actor("escalation")`);
- `link:RECIPIENT` — a person acting from an acknowledge link sent to RECIPIENT (a channel's
  name), who signed in nowhere (`link_actor(channel_name)`).

Migration 0007 rewrote rows written before this format (bare user names, `api-key:NAME`,
bare job names).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, insert

from monitoring_core.schema import audit_log

__all__ = [
    "ActorKind",
    "actor_name",
    "key_actor",
    "link_actor",
    "record_audit",
    "system_actor",
    "user_actor",
]


class ActorKind(StrEnum):
    USER = "user"
    KEY = "apikey"
    SYSTEM = "system"
    LINK = "link"


def _actor(kind: ActorKind, name: str) -> str:
    if not name:
        raise ValueError(f"a {kind.value} actor needs a name")
    return f"{kind.value}:{name}"


def user_actor(username: str) -> str:
    """`user:NAME`: a person signed in to the UI."""
    return _actor(ActorKind.USER, username)


def key_actor(key_name: str) -> str:
    """`apikey:NAME`: a request made with the API key of that name."""
    return _actor(ActorKind.KEY, key_name)


def system_actor(job: str) -> str:
    """`system:JOB`: the worker or the ingest path acting on its own."""
    return _actor(ActorKind.SYSTEM, job)


def link_actor(recipient: str) -> str:
    """`link:RECIPIENT`: whoever opened an acknowledge link sent to RECIPIENT."""
    return _actor(ActorKind.LINK, recipient)


# the actor kinds other than a person, as a reader names them
_KIND_WORDS = {"system": "system", "apikey": "API key", "link": "acknowledge link"}


def actor_name(who: str) -> str:
    """An actor in words, for messages people read (incident timelines, alert history, the
    public status page): `user:sam` → `sam`, `system:escalation` → `escalation (system)`,
    `apikey:ci` → `ci (API key)`, `link:Ops` → `Ops (acknowledge link)`; other text as it
    is. The stored `actor` column keeps `KIND:NAME`."""
    kind, colon, name = who.partition(":")
    if not colon or not name:
        return who
    return name if kind == ActorKind.USER else f"{name} ({_KIND_WORDS.get(kind, kind)})"


def record_audit(
    conn: Connection,
    *,
    actor: str,
    action: str,
    target: str | None = None,
    details: dict[str, Any] | None = None,
    now: datetime,
) -> None:
    """Append one audit entry in the caller's transaction."""
    conn.execute(
        insert(audit_log).values(
            time=now, actor=actor, action=action, target=target, details=details or {}
        )
    )
