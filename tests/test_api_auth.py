"""Auth on a real server: every way to present a key, 401/403, revocation, rate limits."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import APIRouter, Depends
from sqlalchemy import Engine, func, select, update

from monitoring_core.api.app import create_app
from monitoring_core.api.deps import require_admin, require_read, sentry_key
from monitoring_core.api.keys import KeyCache
from monitoring_core.api.ratelimit import RateLimiter, TokenBucket
from monitoring_core.config import load_settings
from monitoring_core.schema import api_keys, metric_points
from tests.serving import running_server

POINT = {"metric_name": "auth_test", "metric_value": 1}


def _post(url: str, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{url}/api/monitoring/metrics", json=POINT, **kwargs)  # type: ignore[arg-type]


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "how",
    ["bearer", "x-api-key", "basic-password", "basic-user-only", "query"],
)
def test_it_accepts_the_key_every_documented_way(
    api_server: str, ingest_key: str, how: str
) -> None:
    headers, params = {}, {}
    if how == "bearer":
        headers["Authorization"] = f"Bearer {ingest_key}"
    elif how == "x-api-key":
        headers["X-API-Key"] = ingest_key
    elif how == "basic-password":
        headers["Authorization"] = _basic("anything", ingest_key)
    elif how == "basic-user-only":
        headers["Authorization"] = _basic(ingest_key, "")
    else:
        params["key"] = ingest_key
    assert _post(api_server, headers=headers, params=params).status_code == 202


def test_it_accepts_an_admin_key_on_ingest(api_server: str, admin_key: str) -> None:
    assert _post(api_server, headers={"X-API-Key": admin_key}).status_code == 202


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer mk_unknown"},
        {"X-API-Key": "nope"},
        {"Authorization": "Basic !!"},
    ],
)
def test_it_answers_401_for_missing_or_unknown_keys_and_stores_nothing(
    api_server: str, engine: Engine, headers: dict[str, str]
) -> None:
    reply = _post(api_server, headers=headers)
    assert reply.status_code == 401
    assert "WWW-Authenticate" in reply.headers
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(metric_points)).scalar() == 0


def test_it_answers_401_for_a_revoked_key(api_server: str, engine: Engine, ingest_key: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(api_keys).values(revoked_at=datetime.now(UTC)))
    assert _post(api_server, headers={"X-API-Key": ingest_key}).status_code == 401


def test_it_forgets_a_revoked_key_once_the_cache_entry_expires(
    engine: Engine, ingest_key: str
) -> None:
    clock = [1000.0]
    cache = KeyCache(engine, ttl=5.0, clock=lambda: clock[0])
    assert cache.lookup(ingest_key) is not None
    with engine.begin() as conn:
        conn.execute(update(api_keys).values(revoked_at=datetime.now(UTC)))
    clock[0] += 4.9
    assert cache.lookup(ingest_key) is not None  # still cached
    clock[0] += 0.2
    assert cache.lookup(ingest_key) is None


@pytest.fixture
def guarded_server(session_engine: Engine, engine: Engine, database_url: str) -> Iterator[str]:
    """The real app plus two routes guarded by require_admin and require_read."""
    app = create_app(dataclasses.replace(load_settings({}), database_url=database_url), engine)
    extra = APIRouter()

    @extra.get("/test/admin", dependencies=[Depends(require_admin)])
    async def admin_only() -> dict[str, bool]:
        return {"ok": True}

    @extra.get("/test/read", dependencies=[Depends(require_read)])
    async def read_only() -> dict[str, bool]:
        return {"ok": True}

    app.include_router(extra)
    with running_server(app) as url:
        yield url


def test_it_answers_403_for_an_ingest_key_on_an_admin_route(
    guarded_server: str, ingest_key: str, admin_key: str
) -> None:
    url = f"{guarded_server}/test/admin"
    assert httpx.get(url, headers={"X-API-Key": ingest_key}).status_code == 403
    assert httpx.get(url, headers={"X-API-Key": admin_key}).status_code == 200
    assert httpx.get(url).status_code == 401


def test_it_takes_query_keys_on_ingest_routes_only(guarded_server: str, admin_key: str) -> None:
    url = f"{guarded_server}/test/read"
    assert httpx.get(url, params={"key": admin_key}).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {admin_key}"}).status_code == 200


def test_it_answers_429_with_retry_after_past_the_keys_rate_limit(
    api_server: str, engine: Engine, ingest_key: str
) -> None:
    with engine.begin() as conn:
        conn.execute(update(api_keys).values(rate_limit_per_minute=2))
    headers = {"X-API-Key": ingest_key}
    assert [_post(api_server, headers=headers).status_code for _ in range(2)] == [202, 202]
    limited = _post(api_server, headers=headers)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 30
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(metric_points)).scalar() == 2


@pytest.mark.parametrize(
    ("per_minute", "elapsed", "expected_wait"),
    [
        (60, 0.0, 1.0),  # drained: one token a second
        (60, 1.0, None),  # one second refilled one token
        (1, 30.0, 30.0),  # half a token back after half a minute
        (1, 60.0, None),
        (120, 0.25, 0.25),
    ],
)
def test_it_refills_drained_token_buckets_continuously(
    per_minute: int, elapsed: float, expected_wait: float | None
) -> None:
    bucket = TokenBucket(per_minute, float(per_minute), 0.0)
    for _ in range(per_minute):
        assert bucket.take(0.0) is None
    wait = bucket.take(elapsed)
    assert wait == (None if expected_wait is None else pytest.approx(expected_wait))


def test_it_never_limits_keys_without_a_limit() -> None:
    limiter = RateLimiter()
    assert all(limiter.check(1, None, 0.0) is None for _ in range(10_000))
    assert limiter.check(2, 1, 0.0) is None
    assert limiter.check(2, 1, 0.5) == 60


@pytest.mark.parametrize(
    ("header", "query", "expected"),
    [
        ("Sentry sentry_key=abc, sentry_version=7, sentry_client=sentry.python/2.75", "", "abc"),
        ("Sentry sentry_version=7,sentry_key=def", "", "def"),
        ("", "sentry_key=ghi&sentry_version=7", "ghi"),
        ("Sentry sentry_version=7", "", None),
    ],
)
def test_it_reads_sentry_keys(header: str, query: str, expected: str | None) -> None:
    from starlette.requests import Request

    headers = [(b"x-sentry-auth", header.encode())] if header else []
    scope = {"type": "http", "headers": headers, "query_string": query.encode()}
    assert sentry_key(Request(scope)) == expected


def test_it_records_when_a_key_was_last_used(
    api_server: str, engine: Engine, ingest_key: str
) -> None:
    assert _post(api_server, headers={"X-API-Key": ingest_key}).status_code == 202
    with engine.connect() as conn:
        assert conn.execute(select(api_keys.c.last_used_at)).scalar_one() is not None
