"""Users (argon2id passwords) and API keys (sha256 of a 256-bit random key, scoped), and
their lifecycle: list, create, revoke, expire, rate limits, deactivate, reset passwords.

Every lifecycle change writes its audit row in the caller's transaction; the CLI, the admin API
and the Settings page call the same functions with their own actor (`monitoring_core.audit`).

Signing in to the UI (`sign_in`; `authenticate_user` is the bare password check under it):
- Throttling. Failed sign-ins are counted per user name as typed (known or not, so the answer
  never tells whether a user exists) and per client address when the caller knows it, in the
  `login_failures` table, so every UI process shares them. After USER_FREE_FAILURES (5)
  failures for a name, or ADDRESS_FREE_FAILURES (20, offices share an address) from an
  address, each further attempt waits a back-off from the last failure: 30 s, doubling with
  each failure (60 s, 2 min, ...) up to 15 min (`login_backoff`, `login_delay`). While it
  runs, attempts are refused without checking the password and do not extend it. A run of
  failures is forgotten an hour after its last one (FAILURE_MEMORY); a successful sign-in
  clears its user name's count (not the address's: signing in to one's own account must not
  reset the address count an attacker sprays many names from). Someone can lock a name out
  for at most 15 minutes at a time by failing on purpose: the price of a back-off per name.
- Audit. Every attempt writes a row: `auth.login` (actor `user:NAME`) on success,
  `auth.login_failed` (actor `system:auth`, details `reason` "password" or "throttled")
  otherwise; the target is `user:NAME` as typed, details hold the `address` when known and
  never the password.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, case, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError

from monitoring_core.audit import record_audit, system_actor, user_actor
from monitoring_core.enums import ApiScope, Role
from monitoring_core.schema import api_keys, login_failures, users

__all__ = [
    "AccountInvalid",
    "AccountNotFound",
    "ApiKey",
    "SignIn",
    "SsoSignIn",
    "User",
    "active_user",
    "add_api_key",
    "add_user",
    "authenticate_user",
    "create_api_key",
    "create_user",
    "deactivate_user",
    "hash_api_key",
    "list_api_keys",
    "list_users",
    "login_backoff",
    "login_delay",
    "lookup_api_key",
    "reset_password",
    "revoke_api_key",
    "sign_in",
    "sso_sign_in",
    "update_api_key",
]

_hasher = PasswordHasher()
KEY_PREFIX = "mk_"


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: Role
    # None: every organisation; else the only organisations this user may see (`org_scope`)
    organization_ids: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    scope: ApiScope
    rate_limit_per_minute: int | None  # requests; None: the configured default, 0: unlimited
    expires_at: datetime | None = None
    allowed_origins: tuple[str, ...] = ()  # browser keys: the Origins they may be sent from
    points_per_minute: int | None = None  # ingested items; None: the default, 0: unlimited


class AccountInvalid(ValueError):
    """A key or user change that cannot be made; `field` names the bad value."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class AccountNotFound(LookupError):
    """No key or user with that id or name."""


_MAX_NAME = 200


def _check_password_rules(password: str) -> None:
    if len(password) < 8:
        raise AccountInvalid("password must have at least 8 characters", "password")


def _name(value: Any, field: str) -> str:
    """A user or key name: text Postgres can store (no NUL), 1 to _MAX_NAME characters."""
    name = value.strip() if isinstance(value, str) else ""
    if not name or len(name) > _MAX_NAME or "\x00" in name:
        raise AccountInvalid(f"must be 1 to {_MAX_NAME} characters, without NUL", field)
    return name


def create_user(conn: Connection, *, username: str, password: str, role: Role) -> User:
    """Insert a user with an argon2id password hash."""
    username = _name(username, "username")
    _check_password_rules(password)
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
        select(users.c.id, users.c.password_hash, users.c.role, users.c.organization_ids).where(
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
    return User(row.id, username, Role(row.role), _organizations(row.organization_ids))


def _organizations(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


# ---------------------------------------------------------------- signing in
USER_FREE_FAILURES = 5
ADDRESS_FREE_FAILURES = 20
FIRST_BACKOFF = timedelta(seconds=30)
MAX_BACKOFF = timedelta(minutes=15)
FAILURE_MEMORY = timedelta(hours=1)  # longer than MAX_BACKOFF, so a lock always runs out first


def login_backoff(failures: int, *, free: int = USER_FREE_FAILURES) -> timedelta:
    """How long after the last of `failures` failures the next attempt must wait."""
    if failures < free:
        return timedelta(0)
    doublings = min(failures - free, 16)  # 30 s * 2**16 is far past the cap
    return min(FIRST_BACKOFF * 2**doublings, MAX_BACKOFF)


def login_delay(
    failures: int, last_failure: datetime | None, now: datetime, *, free: int = USER_FREE_FAILURES
) -> timedelta:
    """The time still to wait at `now` before another attempt (zero: go ahead)."""
    if last_failure is None or now - last_failure >= FAILURE_MEMORY:
        return timedelta(0)
    return max(last_failure + login_backoff(failures, free=free) - now, timedelta(0))


@dataclass(frozen=True)
class SignIn:
    """The answer to a sign-in: the user, or None with the wait when it was throttled."""

    user: User | None
    retry_after: timedelta = timedelta(0)  # > 0: refused without checking the password


def _subjects(username: str, address: str | None) -> list[tuple[str, str, int]]:
    """(kind, subject, free failures) of the counts this attempt is judged by."""
    out = [("user", _storable(username), USER_FREE_FAILURES)]
    if address:
        out.append(("address", _storable(address), ADDRESS_FREE_FAILURES))
    return out


def _storable(value: str) -> str:
    """Text Postgres can store and index: no NUL, at most _MAX_NAME characters."""
    return value.replace("\x00", "\ufffd")[:_MAX_NAME]


def _throttle_delay(
    conn: Connection, subjects: list[tuple[str, str, int]], now: datetime
) -> timedelta:
    delay = timedelta(0)
    for kind, subject, free in subjects:
        row = conn.execute(
            select(login_failures.c.failures, login_failures.c.last_failure_at).where(
                login_failures.c.kind == kind, login_failures.c.subject == subject
            )
        ).first()
        if row is not None:
            delay = max(delay, login_delay(row.failures, row.last_failure_at, now, free=free))
    return delay


def _count_failure(conn: Connection, subjects: list[tuple[str, str, int]], now: datetime) -> None:
    """Add one failure to each count (atomically, for concurrent UI processes); drop old runs."""
    forgotten = now - FAILURE_MEMORY
    conn.execute(delete(login_failures).where(login_failures.c.last_failure_at <= forgotten))
    for kind, subject, _free in subjects:
        stmt = pg_insert(login_failures).values(
            kind=kind, subject=subject, failures=1, last_failure_at=now
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[login_failures.c.kind, login_failures.c.subject],
                set_={
                    "failures": case(
                        (login_failures.c.last_failure_at <= forgotten, 1),
                        else_=login_failures.c.failures + 1,
                    ),
                    "last_failure_at": now,
                },
            )
        )


def sign_in(
    conn: Connection, *, username: str, password: str, address: str | None, now: datetime
) -> SignIn:
    """A UI sign-in: throttled, audited, in the caller's transaction (see the module notes).

    `address` is the client's address when known (None: throttled per user name only).
    """
    subjects = _subjects(username, address)
    target = f"user:{subjects[0][1]}"
    details: dict[str, Any] = {"address": address} if address else {}
    delay = _throttle_delay(conn, subjects, now)
    if delay > timedelta(0):
        record_audit(
            conn,
            actor=system_actor("auth"),
            action="auth.login_failed",
            target=target,
            details={**details, "reason": "throttled"},
            now=now,
        )
        return SignIn(user=None, retry_after=delay)
    user = None
    if username and _storable(username) == username:
        user = authenticate_user(conn, username=username, password=password, now=now)
    else:
        _hasher.hash(password)  # a name no user can have: spend the same time
    if user is None:
        _count_failure(conn, subjects, now)
        record_audit(
            conn,
            actor=system_actor("auth"),
            action="auth.login_failed",
            target=target,
            details={**details, "reason": "password"},
            now=now,
        )
        return SignIn(user=None)
    conn.execute(
        delete(login_failures).where(
            login_failures.c.kind == "user", login_failures.c.subject == username
        )
    )
    record_audit(
        conn,
        actor=user_actor(user.username),
        action="auth.login",
        target=target,
        details=details,
        now=now,
    )
    return SignIn(user=user)


@dataclass(frozen=True)
class SsoSignIn:
    """The answer to a single sign-on: the user, or None with the reason shown to the person."""

    user: User | None
    refused: str = ""
    created: bool = False  # an account was made for this e-mail (auto-create as viewer)


def sso_sign_in(
    conn: Connection,
    *,
    email: str | None,
    verified: bool,
    auto_create_viewer: bool,
    address: str | None,
    now: datetime,
) -> SsoSignIn:
    """A sign-in by the identity provider's verified e-mail (Streamlit's OIDC login, `st.user`).

    The e-mail names the account: the active user whose user name is that address (the same
    letters, case aside). An unknown address is refused, unless `auto_create_viewer` is on: then
    a **viewer** account is made for it (with a random password nobody knows; never another
    role). An unverified or missing e-mail and a deactivated account are refused. Audited in the
    caller's transaction like `sign_in`: `auth.login` (details `method` "oidc") or
    `auth.login_failed` (`reason` "unverified e-mail", "unknown e-mail", "deactivated"), and
    `user.create` (actor `system:auth`) for an account made here.
    """
    name = _storable(email.strip()) if isinstance(email, str) else ""
    details: dict[str, Any] = {"method": "oidc", **({"address": address} if address else {})}

    def refuse(reason: str, message: str) -> SsoSignIn:
        record_audit(
            conn,
            actor=system_actor("auth"),
            action="auth.login_failed",
            target=f"user:{name or '?'}",
            details={**details, "reason": reason},
            now=now,
        )
        return SsoSignIn(user=None, refused=message)

    if not name or "@" not in name:
        return refuse("no e-mail", "The identity provider did not give an e-mail address.")
    if not verified:
        return refuse(
            "unverified e-mail",
            f"The identity provider has not verified {name}; verify it there and sign in again.",
        )
    rows = conn.execute(
        select(users.c.id, users.c.username, users.c.is_active)
        .where(func.lower(users.c.username) == name.lower())
        .order_by((users.c.username == name).desc(), users.c.id)
    ).all()
    created = False
    if not rows and auto_create_viewer:
        try:
            with conn.begin_nested():
                create_user(
                    conn, username=name, password=secrets.token_urlsafe(32), role=Role.VIEWER
                )
        except IntegrityError:  # made by a concurrent sign-in: read it below
            pass
        else:
            record_audit(
                conn,
                actor=system_actor("auth"),
                action="user.create",
                target=f"user:{name}",
                details={"method": "oidc", "role": Role.VIEWER.value},
                now=now,
            )
            created = True
        rows = conn.execute(
            select(users.c.id, users.c.username, users.c.is_active).where(
                func.lower(users.c.username) == name.lower()
            )
        ).all()
    if not rows:
        return refuse(
            "unknown e-mail",
            f"No account is set up for {name}. Ask an administrator to add a user named "
            f"{name} (Admin → Users, or `python -m monitoring_core user add {name} --role viewer`).",
        )
    if not rows[0].is_active:
        return refuse("deactivated", f"The account {rows[0].username} is deactivated.")
    conn.execute(update(users).where(users.c.id == rows[0].id).values(last_login_at=now))
    user = active_user(conn, user_id=rows[0].id)
    assert user is not None
    record_audit(
        conn,
        actor=user_actor(user.username),
        action="auth.login",
        target=f"user:{user.username}",
        details=details,
        now=now,
    )
    return SsoSignIn(user=user, created=created)


def hash_api_key(key: str) -> str:
    # Keys are 256-bit random tokens, so a fast hash is safe here (as for GitHub tokens);
    # a slow KDF would cost milliseconds on every ingest request.
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(
    conn: Connection,
    *,
    name: str,
    scope: ApiScope,
    rate_limit_per_minute: int | None = None,
    expires_at: datetime | None = None,
    allowed_origins: Iterable[str] = (),
    points_per_minute: int | None = None,
) -> str:
    """Create a key and return it; only its hash is stored, so this is the one time it is seen.

    Rates: None takes the configured default (limits are on by default), 0 is unlimited."""
    return _insert_key(
        conn,
        name=name,
        scope=scope,
        rate_limit_per_minute=rate_limit_per_minute,
        points_per_minute=points_per_minute,
        expires_at=expires_at,
        allowed_origins=allowed_origins,
    )[1]


def _insert_key(
    conn: Connection,
    *,
    name: str,
    scope: ApiScope | str,
    rate_limit_per_minute: int | None,
    expires_at: datetime | None,
    allowed_origins: Iterable[str],
    points_per_minute: int | None = None,
) -> tuple[int, str]:
    name = _name(name, "name")
    try:
        scope = ApiScope(scope)
    except ValueError:
        raise AccountInvalid(f"scope must be one of {', '.join(ApiScope)}", "scope") from None
    origins = _origins(allowed_origins)
    if origins and scope is not ApiScope.BROWSER:
        raise AccountInvalid("allowed origins apply to browser keys only", "allowed_origins")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = conn.execute(
        insert(api_keys)
        .values(
            name=name,
            prefix=key[:10],
            key_hash=hash_api_key(key),
            scope=scope.value,
            rate_limit_per_minute=_rate_limit(rate_limit_per_minute),
            points_per_minute=_rate_limit(points_per_minute, "points_per_minute"),
            expires_at=expires_at,
            allowed_origins=list(origins),
        )
        .returning(api_keys.c.id)
    ).scalar_one()
    return key_id, key


_MAX_RATE = {"rate_limit_per_minute": 1_000_000, "points_per_minute": 1_000_000_000}


def _rate_limit(value: Any, field: str = "rate_limit_per_minute") -> int | None:
    """A per-minute limit: None (the configured default), 0 (unlimited) or a positive number."""
    if value is None:
        return None
    top = _MAX_RATE[field]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise AccountInvalid(
            f"{field} must be a whole number from 0 (unlimited) to {top}, or null (the default)",
            field,
        )
    return value


def _origins(values: Iterable[str]) -> tuple[str, ...]:
    """Origins as browsers send them (`https://host[:port]`, no path, no default port)."""
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise AccountInvalid("allowed_origins must be a list of origins", "allowed_origins")
    out = [_origin(value) for value in values]
    return tuple(dict.fromkeys(out))


def _origin(value: Any) -> str:
    problem = AccountInvalid(
        f"{value!r} is not an origin like https://www.example.com", "allowed_origins"
    )
    try:
        text = value.strip().lower() if isinstance(value, str) and "\x00" not in value else ""
        parts = urlsplit(text) if text else None
        port = parts.port if parts is not None else None  # ValueError when not a port
    except ValueError:
        raise problem from None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise problem
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default_port = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + ("" if port in (None, default_port) else f":{port}")


def _future(expires_at: datetime | None, now: datetime) -> datetime | None:
    if expires_at is not None and (expires_at.tzinfo is None or expires_at <= now):
        raise AccountInvalid("expires_at must be a future time with a time zone", "expires_at")
    return expires_at


_KEY_COLUMNS = (
    api_keys.c.id,
    api_keys.c.name,
    api_keys.c.prefix,
    api_keys.c.scope,
    api_keys.c.rate_limit_per_minute,
    api_keys.c.points_per_minute,
    api_keys.c.allowed_origins,
    api_keys.c.created_at,
    api_keys.c.last_used_at,
    api_keys.c.expires_at,
    api_keys.c.revoked_at,
)


def list_api_keys(conn: Connection) -> list[dict[str, Any]]:
    """Every key, newest first, without its hash (revoked and expired ones too, for the record)."""
    rows = conn.execute(select(*_KEY_COLUMNS).order_by(api_keys.c.id.desc())).mappings()
    return [dict(row) for row in rows]


def _key_row(conn: Connection, key_id: int) -> dict[str, Any]:
    row = conn.execute(select(*_KEY_COLUMNS).where(api_keys.c.id == key_id)).mappings().first()
    if row is None:
        raise AccountNotFound(f"API key {key_id}")
    return dict(row)


def add_api_key(
    conn: Connection,
    *,
    name: str,
    scope: ApiScope | str,
    actor: str,
    now: datetime,
    rate_limit_per_minute: int | None = None,
    expires_at: datetime | None = None,
    allowed_origins: Iterable[str] = (),
    points_per_minute: int | None = None,
) -> tuple[dict[str, Any], str]:
    """Create a key (audited `apikey.create`): its row and the key, which is shown only now."""
    key_id, key = _insert_key(
        conn,
        name=name,
        scope=scope,
        rate_limit_per_minute=rate_limit_per_minute,
        points_per_minute=points_per_minute,
        expires_at=_future(expires_at, now),
        allowed_origins=allowed_origins,
    )
    row = _key_row(conn, key_id)
    details = {"scope": row["scope"], "expires_at": expires_at and expires_at.isoformat()}
    record_audit(
        conn, actor=actor, action="apikey.create", target=_key_target(row), details=details, now=now
    )
    return row, key


def _key_target(row: dict[str, Any]) -> str:
    return f"apikey:{row['id']}:{row['name']}"


def revoke_api_key(conn: Connection, *, key_id: int, actor: str, now: datetime) -> dict[str, Any]:
    """Revoke a key from `now` on (audited `apikey.revoke`); revoking twice keeps the first time."""
    row = _key_row(conn, key_id)
    if row["revoked_at"] is None:
        conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=now))
        record_audit(conn, actor=actor, action="apikey.revoke", target=_key_target(row), now=now)
    return _key_row(conn, key_id)


_UNSET: Any = object()


def update_api_key(
    conn: Connection,
    *,
    key_id: int,
    actor: str,
    now: datetime,
    rate_limit_per_minute: int | None = _UNSET,
    expires_at: datetime | None = _UNSET,
    points_per_minute: int | None = _UNSET,
) -> dict[str, Any]:
    """Set a key's request or point rate (None: the configured default, 0: unlimited) or its
    expiry (None: never); audited `apikey.update`."""
    values: dict[str, Any] = {}
    if rate_limit_per_minute is not _UNSET:
        values["rate_limit_per_minute"] = _rate_limit(rate_limit_per_minute)
    if points_per_minute is not _UNSET:
        values["points_per_minute"] = _rate_limit(points_per_minute, "points_per_minute")
    if expires_at is not _UNSET:
        values["expires_at"] = _future(expires_at, now)
    row = _key_row(conn, key_id)
    if row["revoked_at"] is not None:
        raise AccountInvalid(f"API key {key_id} is revoked")
    if values:
        conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(**values))
        details = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}
        record_audit(
            conn,
            actor=actor,
            action="apikey.update",
            target=_key_target(row),
            details=details,
            now=now,
        )
    return _key_row(conn, key_id)


def lookup_api_key(conn: Connection, key: str) -> ApiKey | None:
    """The key's record when it exists and is not revoked; its expiry is the caller's to check
    against the time of the request (a cached record outlives a lookup)."""
    query = select(
        api_keys.c.id,
        api_keys.c.name,
        api_keys.c.scope,
        api_keys.c.rate_limit_per_minute,
        api_keys.c.points_per_minute,
        api_keys.c.expires_at,
        api_keys.c.allowed_origins,
    ).where(api_keys.c.key_hash == hash_api_key(key), api_keys.c.revoked_at.is_(None))
    row = conn.execute(query).first()
    if row is None:
        return None
    return ApiKey(
        id=row.id,
        name=row.name,
        scope=ApiScope(row.scope),
        rate_limit_per_minute=row.rate_limit_per_minute,
        expires_at=row.expires_at,
        allowed_origins=tuple(row.allowed_origins or ()),
        points_per_minute=row.points_per_minute,
    )


# ---------------------------------------------------------------- users
_USER_COLUMNS = (
    users.c.id,
    users.c.username,
    users.c.role,
    users.c.is_active,
    users.c.organization_ids,
    users.c.created_at,
    users.c.last_login_at,
)


def list_users(conn: Connection) -> list[dict[str, Any]]:
    """Every user by name, without the password hash."""
    return [
        dict(r) for r in conn.execute(select(*_USER_COLUMNS).order_by(users.c.username)).mappings()
    ]


def active_user(conn: Connection, *, user_id: int) -> User | None:
    """The user as stored now (role included), or None when deactivated or gone."""
    row = conn.execute(
        select(users.c.id, users.c.username, users.c.role, users.c.organization_ids).where(
            users.c.id == user_id, users.c.is_active
        )
    ).first()
    if row is None:
        return None
    return User(row.id, row.username, Role(row.role), _organizations(row.organization_ids))


def _user_row(conn: Connection, user: int | str) -> dict[str, Any]:
    where = users.c.id == user if isinstance(user, int) else users.c.username == user
    row = conn.execute(select(*_USER_COLUMNS).where(where)).mappings().first()
    if row is None:
        raise AccountNotFound(f"user {user}")
    return dict(row)


def add_user(
    conn: Connection, *, username: str, password: str, role: Role | str, actor: str, now: datetime
) -> dict[str, Any]:
    """Create a user (audited `user.create`); AccountInvalid for a bad role or password, or a
    name that is taken."""
    try:
        role = Role(role)
    except ValueError:
        raise AccountInvalid(f"role must be one of {', '.join(Role)}", "role") from None
    name = _name(username, "username")
    try:
        with conn.begin_nested():
            user = create_user(conn, username=name, password=password, role=role)
    except IntegrityError:
        raise AccountInvalid(f"a user named {name!r} already exists", "username") from None
    record_audit(conn, actor=actor, action="user.create", target=f"user:{name}", now=now)
    return _user_row(conn, user.id)


def deactivate_user(
    conn: Connection, *, user: int | str, actor: str, now: datetime
) -> dict[str, Any]:
    """Stop a user (by id or name) signing in or acting; audited `user.deactivate`.

    Open UI sessions end on their next rerun (`ui/auth.py` re-reads the user).
    """
    row = _user_row(conn, user)
    if row["is_active"]:
        conn.execute(update(users).where(users.c.id == row["id"]).values(is_active=False))
        record_audit(
            conn, actor=actor, action="user.deactivate", target=f"user:{row['username']}", now=now
        )
    return _user_row(conn, row["id"])


def reset_password(
    conn: Connection, *, user: int | str, password: str, actor: str, now: datetime
) -> dict[str, Any]:
    """Set a new password (by id or name); audited `user.reset_password` (never the password)."""
    _check_password_rules(password)
    row = _user_row(conn, user)
    conn.execute(
        update(users).where(users.c.id == row["id"]).values(password_hash=_hasher.hash(password))
    )
    record_audit(
        conn, actor=actor, action="user.reset_password", target=f"user:{row['username']}", now=now
    )
    return row
