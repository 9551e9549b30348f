"""Authentication and rate limiting as FastAPI dependencies (docs/API.md "Keys and scopes").

A key is read from `Authorization: Bearer KEY`, `X-API-Key: KEY`, HTTP Basic (the password;
the user name when the password is empty), and on ingest routes also `?key=KEY`, since
`navigator.sendBeacon` cannot set headers. Sentry routes pass the key from `X-Sentry-Auth`
or `?sentry_key=` to `check_key` themselves (see `sentry_key`).

Rates (`ratelimit.py`): `check_key` spends one request of the key's request allowance; an
ingest route then calls `count_points(request, n)` once with the number of items it is about
to store, before storing them. Both answer 429 with `Retry-After` naming the limit exceeded.

Scopes (`ApiScope`): `ingest` writes only, `read` reads only, `admin` does everything, and
`browser` may only POST Web Vitals and timings to `BROWSER_PATHS`, from its allowed origins when
it has any. Keys that ship to browsers, apps and Sentry DSNs are public: none of them reads.
"""

from __future__ import annotations

import base64
import binascii
import time
from datetime import UTC, datetime

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from monitoring_core.accounts import ApiKey
from monitoring_core.api.ratelimit import effective_limit
from monitoring_core.enums import ApiScope

__all__ = [
    "ADMIN_SCOPES",
    "BROWSER_PATHS",
    "INGEST_SCOPES",
    "READ_SCOPES",
    "check_key",
    "count_points",
    "presented_key",
    "require_admin",
    "require_ingest",
    "require_read",
    "require_service_reader",
    "sentry_key",
]

INGEST_SCOPES = frozenset({ApiScope.INGEST, ApiScope.ADMIN})
READ_SCOPES = frozenset({ApiScope.READ, ApiScope.ADMIN})
ADMIN_SCOPES = frozenset({ApiScope.ADMIN})
# What a browser key may do: POST here (Web Vitals and page timings, sent by sendBeacon).
BROWSER_PATHS = frozenset({"/api/monitoring/performance"})
_INGEST_ROUTE_SCOPES = INGEST_SCOPES | {ApiScope.BROWSER}  # browser keys: see _check_browser
_CHALLENGE = {"WWW-Authenticate": 'Bearer, Basic realm="monitoring"'}


def presented_key(request: Request, *, allow_query: bool) -> str | None:
    """The API key the request carries, if any (headers first, then `?key=` when allowed)."""
    headers = request.headers
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():
        key = _basic_password(value.strip())
        if key:
            return key
    if headers.get("x-api-key", "").strip():
        return headers["x-api-key"].strip()
    if allow_query and request.query_params.get("key"):
        return request.query_params["key"]
    return None


def _basic_password(token: str) -> str | None:
    try:
        decoded = base64.b64decode(token, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return password or user or None


def sentry_key(request: Request) -> str | None:
    """The key of a Sentry SDK request: `X-Sentry-Auth: Sentry sentry_key=KEY, …` or `?sentry_key=`."""
    header = request.headers.get("x-sentry-auth", "")
    if header[:7].lower() == "sentry ":
        header = header[7:]
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip() == "sentry_key" and value.strip():
            return value.strip()
    return request.query_params.get("sentry_key") or None


async def check_key(request: Request, key: str | None, allowed: frozenset[ApiScope]) -> ApiKey:
    """The key's record when it exists, has an allowed scope and is within its rate limit.

    401 missing/unknown, 403 wrong scope, 429 rate limited (with Retry-After); the record is
    also left on `request.state.api_key`.
    """
    if not key:
        raise HTTPException(401, "missing API key", headers=_CHALLENGE)
    cache = request.app.state.keys
    hit, record = cache.cached(key)
    if not hit:
        record = await run_in_threadpool(cache.lookup, key)
    if record is None:
        raise HTTPException(401, "unknown or revoked API key", headers=_CHALLENGE)
    if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
        raise HTTPException(401, "expired API key", headers=_CHALLENGE)
    if record.scope not in allowed:
        raise HTTPException(403, f"this key's scope {record.scope.value!r} may not use this route")
    if record.scope is ApiScope.BROWSER:
        _check_browser(request, record)
    defaults = request.app.state.live.key_limits  # the key_rate_limits setting (live_settings)
    limit = effective_limit(record.rate_limit_per_minute, defaults.requests_per_minute)
    retry_after = request.app.state.limiter.check(record.id, limit, time.monotonic())
    request.app.state.usage_sync.start()  # share this process's use with the others
    if retry_after is not None:
        raise HTTPException(
            429,
            f"request rate limit exceeded: this key may make {limit} requests per minute",
            headers={"Retry-After": str(retry_after)},
        )
    request.state.api_key = record
    return record


def count_points(request: Request, points: int) -> None:
    """Spend `points` of the request's key's point allowance; 429 with Retry-After past it.

    Every ingest route calls this once, after parsing and before storing, with the number of
    items (metric points, samples, events …) the request carries. A request without a checked
    key (`check_key` not run) is not counted.
    """
    record: ApiKey | None = getattr(request.state, "api_key", None)
    if record is None or points <= 0:
        return
    limit = effective_limit(
        record.points_per_minute, request.app.state.live.key_limits.points_per_minute
    )
    retry_after = request.app.state.limiter.check(
        record.id, limit, time.monotonic(), kind="points", amount=points
    )
    if retry_after is not None:
        raise HTTPException(
            429,
            f"point rate limit exceeded: this key may send {limit} points per minute"
            f" (this request carries {points})",
            headers={"Retry-After": str(retry_after)},
        )


def _check_browser(request: Request, record: ApiKey) -> None:
    """403 unless a browser key POSTs to a browser path from one of its origins (if it has any)."""
    if request.method != "POST" or request.url.path.rstrip("/") not in BROWSER_PATHS:
        raise HTTPException(403, f"a browser key may only POST to {', '.join(BROWSER_PATHS)}")
    origin = request.headers.get("origin", "").strip().lower().rstrip("/")
    if record.allowed_origins and origin not in record.allowed_origins:
        raise HTTPException(403, f"origin {origin or '(none)'!r} is not allowed for this key")


async def require_ingest(request: Request) -> ApiKey:
    """Scope ingest or admin (browser keys on `BROWSER_PATHS`); the key may come as `?key=`."""
    key = presented_key(request, allow_query=True)
    return await check_key(request, key, _INGEST_ROUTE_SCOPES)


async def require_read(request: Request) -> ApiKey:
    """Scope read or admin (read and live routes); never from `?key=` (URLs end up in logs)."""
    return await check_key(request, presented_key(request, allow_query=False), READ_SCOPES)


async def require_service_reader(request: Request) -> ApiKey | None:
    """`/metrics`, `/docs`, `/redoc`, `/openapi.json`: a read or admin key (a browser asks for
    it through the Basic challenge: the key as password), unless the setting
    `MONITORING_OPEN_SERVICE_ROUTES` opens them to anyone who can reach the port."""
    if request.app.state.settings.open_service_routes:
        return None
    return await check_key(request, presented_key(request, allow_query=False), READ_SCOPES)


async def require_admin(request: Request) -> ApiKey:
    """Scope admin."""
    return await check_key(request, presented_key(request, allow_query=False), ADMIN_SCOPES)
