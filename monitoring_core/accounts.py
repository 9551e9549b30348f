"""Users (argon2id passwords) and API keys (sha256 of a 256-bit random key, scoped)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, insert, select, update

from monitoring_core.enums import ApiScope, Role
from monitoring_core.schema import api_keys, users

__all__ = [
    "ApiKey",
    "User",
    "authenticate_user",
    "create_api_key",
    "create_user",
    "hash_api_key",
    "lookup_api_key",
]

_hasher = PasswordHasher()
KEY_PREFIX = "mk_"


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: Role


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    scope: ApiScope
    rate_limit_per_minute: int | None


def create_user(conn: Connection, *, username: str, password: str, role: Role) -> User:
    """Insert a user with an argon2id password hash."""
    if not username.strip():
        raise ValueError("username must not be empty")
    if len(password) < 8:
        raise ValueError("password must have at least 8 characters")
    user_id = conn.execute(
        insert(users)
        .values(username=username, password_hash=_hasher.hash(password), role=Role(role).value)
        .returning(users.c.id)
    ).scalar_one()
    return User(id=user_id, username=username, role=Role(role))


def authenticate_user(
    conn: Connection, *, username: str, password: str, now: datetime
) -> User | None:
    """The active user when the password matches, else None (same answer for unknown names)."""
    row = conn.execute(
        select(users.c.id, users.c.password_hash, users.c.role).where(
            users.c.username == username, users.c.is_active
        )
    ).first()
    if row is None:
        _hasher.hash(password)  # spend the same time as a real check
        return None
    try:
        _hasher.verify(row.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    conn.execute(update(users).where(users.c.id == row.id).values(last_login_at=now))
    return User(id=row.id, username=username, role=Role(row.role))


def hash_api_key(key: str) -> str:
    # Keys are 256-bit random tokens, so a fast hash is safe here (as for GitHub tokens);
    # a slow KDF would cost milliseconds on every ingest request.
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(conn: Connection, *, name: str, scope: ApiScope) -> str:
    """Create a key and return it; only its hash is stored, so this is the one time it is seen."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        insert(api_keys).values(
            name=name, prefix=key[:10], key_hash=hash_api_key(key), scope=ApiScope(scope).value
        )
    )
    return key


def lookup_api_key(conn: Connection, key: str) -> ApiKey | None:
    """The active key record for a presented key, or None."""
    row = conn.execute(
        select(
            api_keys.c.id, api_keys.c.name, api_keys.c.scope, api_keys.c.rate_limit_per_minute
        ).where(api_keys.c.key_hash == hash_api_key(key), api_keys.c.revoked_at.is_(None))
    ).first()
    if row is None:
        return None
    return ApiKey(
        id=row.id,
        name=row.name,
        scope=ApiScope(row.scope),
        rate_limit_per_minute=row.rate_limit_per_minute,
    )
