"""UI sign-ins that survive a reload and new tabs, until they expire or are ended.

On sign-in the UI starts a session: 32 random bytes (URL-safe text) go to the browser in a
cookie (`COOKIE`, `SameSite=Strict`, `Secure` on https, scoped to the app's path) and only
their SHA-256 is stored in `ui_sessions`. A new browser session (a reload, a new tab) that
presents the cookie is signed in as that user while the row is neither ended nor expired, the
user is still active, and it was last used less than the idle limit ago; each use moves
`last_seen_at`. Signing out ends the row, so a copied cookie is worthless afterwards; a
deactivated user's sessions stop working on their next use (`resume` re-reads the user). Absolute lifetime `MAX_AGE` (12 hours: one on-call shift), idle limit the UI's
MONITORING_SESSION_IDLE_MINUTES.

The cookie is set from a script (Streamlit has no server-side cookie API), so it cannot be
HttpOnly: a script injected into the page could read it. The pages never render user data as
HTML (`ui/fmt`), which is what keeps that out.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import Connection, select, update

from monitoring_core.accounts import User, active_user
from monitoring_core.schema import ui_sessions

__all__ = ["COOKIE", "MAX_AGE", "end_session", "resume", "start_session"]

COOKIE = "monitoring_session"
MAX_AGE = timedelta(hours=12)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(conn: Connection, *, user_id: int, now: datetime) -> str:
    """A new session for `user_id`; its token (the only time it is seen)."""
    token = secrets.token_urlsafe(32)
    conn.execute(
        ui_sessions.insert().values(
            token_hash=_hash(token),
            user_id=user_id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + MAX_AGE,
        )
    )
    return token


def resume(conn: Connection, token: str | None, *, now: datetime, idle: timedelta) -> User | None:
    """The user a presented token signs in, or None (unknown, ended, expired, idle, or the
    user deactivated); a good token's `last_seen_at` moves to `now`."""
    if not token or len(token) > 200:
        return None
    s = ui_sessions.c
    row = conn.execute(
        select(s.user_id, s.last_seen_at, s.expires_at).where(
            s.token_hash == _hash(token), s.ended_at.is_(None)
        )
    ).first()
    if row is None or row.expires_at <= now or now - row.last_seen_at >= idle:
        return None
    user = active_user(conn, user_id=int(row.user_id))
    if user is None:
        return None
    conn.execute(update(ui_sessions).where(s.token_hash == _hash(token)).values(last_seen_at=now))
    return user


def end_session(conn: Connection, token: str | None, *, now: datetime) -> None:
    """Sign-out: the token stops working everywhere."""
    if token:
        s = ui_sessions.c
        conn.execute(
            update(ui_sessions)
            .where(s.token_hash == _hash(token), s.ended_at.is_(None))
            .values(ended_at=now)
        )
