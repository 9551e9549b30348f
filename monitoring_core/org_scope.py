"""Organisation-scoped views: users limited to some organisations read under row-level security.

A user with `users.organization_ids` set (suppliers' own staff, account managers) sees only those
organisations' error events and groups and business events. The limit is the database's, not
the page's: their reads run as the `monitoring_scoped` role (`db.scoped_url`), which owns
nothing, may read only `db.SCOPED_TABLES`, and passes every row through the policies of
migration 0024. A session proves its scope with a random token (`open_grant`) whose SHA-256 is
stored in `org_scope_grants` with the organisations and an expiry; the session sets it as
`monitoring.scope_token` (`scoped_connection`) and the policies ask `monitoring_scope_orgs()`.
Hand-written SQL in such a session, with no WHERE clause, still sees only those organisations;
it cannot widen the scope without another user's live token; without a token it sees nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, text, update

from monitoring_core.accounts import AccountInvalid, _user_row
from monitoring_core.audit import record_audit
from monitoring_core.schema import org_scope_grants, users

__all__ = [
    "GRANT_TTL",
    "close_grant",
    "open_grant",
    "purge_expired",
    "scoped_connection",
    "set_user_organizations",
]

GRANT_TTL = timedelta(hours=1)
MAX_ORGANIZATIONS = 1000
_SETTING = "monitoring.scope_token"


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _clean(organizations: Iterable[Any]) -> list[str]:
    found: list[str] = []
    for value in organizations:
        if not isinstance(value, str) or not value.strip() or "\x00" in value or len(value) > 200:
            raise AccountInvalid(f"not an organisation id: {value!r}", "organization_ids")
        if value.strip() not in found:
            found.append(value.strip())
    if len(found) > MAX_ORGANIZATIONS:
        raise AccountInvalid(f"at most {MAX_ORGANIZATIONS} organisations", "organization_ids")
    return found


def set_user_organizations(
    conn: Connection,
    *,
    user: int | str,
    organizations: Iterable[Any] | None,
    actor: str,
    now: datetime,
) -> dict[str, Any]:
    """Limit a user (by id or name) to `organizations`, or lift the limit with None; audited
    `user.organizations`. Open UI sessions take the change on their next rerun; the user's live
    grants end at once."""
    row = _user_row(conn, user)
    value = None if organizations is None else _clean(organizations)
    if value == []:
        raise AccountInvalid("name at least one organisation, or none to lift the limit")
    conn.execute(update(users).where(users.c.id == row["id"]).values(organization_ids=value))
    conn.execute(delete(org_scope_grants).where(org_scope_grants.c.user_id == row["id"]))
    shown = "every organisation" if value is None else ", ".join(value)
    record_audit(
        conn,
        actor=actor,
        action="user.organizations",
        target=f"user:{row['username']}",
        details={"organizations": shown},
        now=now,
    )
    return _user_row(conn, row["id"])


def open_grant(
    conn: Connection,
    *,
    user_id: int | None,
    organizations: Iterable[str],
    ttl: timedelta = GRANT_TTL,
) -> str:
    """A new token naming `organizations` for `ttl` (only its hash is stored). The database
    both sets and enforces the expiry, by its own clock."""
    orgs = _clean(organizations)
    token = secrets.token_urlsafe(32)
    conn.execute(
        insert(org_scope_grants).values(
            token_hash=_hash(token),
            user_id=user_id,
            organization_ids=orgs,
            expires_at=func.now() + ttl,
        )
    )
    return token


def close_grant(conn: Connection, token: str) -> None:
    conn.execute(delete(org_scope_grants).where(org_scope_grants.c.token_hash == _hash(token)))


def purge_expired(conn: Connection) -> int:
    """Delete grants past their expiry (by the database's clock); how many."""
    done = conn.execute(delete(org_scope_grants).where(org_scope_grants.c.expires_at <= func.now()))
    return int(done.rowcount or 0)


@contextmanager
def scoped_connection(scoped_engine: Engine, token: str) -> Iterator[Connection]:
    """A connection of the scoped role carrying `token`; the token leaves the pooled connection
    when the block ends."""
    with scoped_engine.connect() as conn:
        conn.execute(
            text("SELECT set_config(:name, :token, false)"), {"name": _SETTING, "token": token}
        )
        conn.commit()
        try:
            yield conn
        finally:
            conn.rollback()
            conn.execute(text("SELECT set_config(:name, '', false)"), {"name": _SETTING})
            conn.commit()
