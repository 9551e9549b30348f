"""Per-key request and point rates (issue 13 item 8): on by default, set per key from the CLI,
the admin API and Settings, counted in points (items) on every ingest route, 429 with
Retry-After naming what was exceeded."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select, update
from streamlit.testing.v1 import AppTest

from monitoring_core.accounts import create_api_key, lookup_api_key
from monitoring_core.api.app import create_app
from monitoring_core.api.ratelimit import RateLimiter, TokenBucket, effective_limit
from monitoring_core.config import load_settings
from monitoring_core.enums import ApiScope, Role
from monitoring_core.schema import api_keys, business_events, error_events, metric_points
from tests.serving import running_server
from tests.test_cli import cli

AppFactory = Callable[[Role | None], AppTest]


@pytest.fixture
def limited_server(engine: Engine, database_url: str) -> Iterator[str]:
    """An API whose defaults are small: 5 requests and 100 points per key and minute."""
    settings = dataclasses.replace(
        load_settings({}),
        database_url=database_url,
        key_requests_per_minute=5,
        key_points_per_minute=100,
    )
    with running_server(create_app(settings, engine)) as url:
        yield url


def _key(engine: Engine, scope: ApiScope = ApiScope.INGEST, **limits: Any) -> str:
    with engine.begin() as conn:
        return create_api_key(conn, name="rated", scope=scope, **limits)


def _points(n: int, name: str = "rated_metric") -> list[dict[str, Any]]:
    return [{"metric_name": name, "metric_value": i, "dimensions": {"i": str(i)}} for i in range(n)]


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


# ---------------------------------------------------------------- the decision, pure
@pytest.mark.parametrize(
    ("own", "default", "expected"),
    [(None, 600, 600), (50, 600, 50), (0, 600, None), (None, 0, None), (7, 0, 7)],
)
def test_a_keys_own_limit_wins_none_takes_the_default_and_zero_is_unlimited(
    own: int | None, default: int, expected: int | None
) -> None:
    assert effective_limit(own, default) == expected


def test_points_drain_the_bucket_by_their_number_and_an_oversized_request_runs_into_debt() -> None:
    bucket = TokenBucket(per_minute=60, tokens=60.0, updated=0.0)
    assert bucket.take(0.0, 50) is None
    assert bucket.take(0.0, 20) == pytest.approx(10.0)  # 10 left, 20 needed: 10 s at 1/s
    assert bucket.take(10.0, 20) is None
    # More than a minute's worth: admitted only on a full bucket, then owed.
    assert bucket.take(10.0, 500) == pytest.approx(60.0)
    assert bucket.take(70.0, 500) is None
    assert bucket.tokens == pytest.approx(-440.0)
    assert bucket.take(70.0, 1) == pytest.approx(441.0)


def test_requests_and_points_are_separate_buckets_per_key() -> None:
    limiter = RateLimiter()
    assert limiter.check(1, 10, 0.0, kind="points", amount=10) is None
    assert limiter.check(1, 10, 0.0, kind="points", amount=1) == 6  # 1 point at 10/min
    assert limiter.check(1, 10, 0.0) is None  # requests: untouched
    assert limiter.check(2, 10, 0.0, kind="points", amount=10) is None  # another key
    assert limiter.check(1, None, 0.0, kind="points", amount=10**9) is None  # unlimited


# ---------------------------------------------------------------- on by default
def test_a_key_without_its_own_limits_gets_the_default_request_rate(
    limited_server: str, engine: Engine
) -> None:
    headers = {"X-API-Key": _key(engine)}
    url = f"{limited_server}/api/monitoring/metrics"
    codes = [httpx.post(url, json=_points(1), headers=headers).status_code for _ in range(5)]
    assert codes == [202] * 5
    refused = httpx.post(url, json=_points(1), headers=headers)
    assert refused.status_code == 429
    assert "request rate" in refused.json()["detail"] and "5 requests" in refused.json()["detail"]
    assert 1 <= int(refused.headers["retry-after"]) <= 12
    assert _count(engine, metric_points) == 5


def test_the_shipped_defaults_limit_keys() -> None:
    settings = load_settings({})
    assert settings.key_requests_per_minute > 0 and settings.key_points_per_minute > 0
    env = {"MONITORING_KEY_POINTS_PER_MINUTE": "0", "MONITORING_KEY_REQUESTS_PER_MINUTE": "7"}
    assert load_settings(env).key_points_per_minute == 0
    assert load_settings(env).key_requests_per_minute == 7


def test_points_are_counted_not_only_requests(limited_server: str, engine: Engine) -> None:
    headers = {"X-API-Key": _key(engine)}
    url = f"{limited_server}/api/monitoring/metrics"
    assert httpx.post(url, json=_points(60), headers=headers).status_code == 202
    refused = httpx.post(url, json=_points(60, "second"), headers=headers)
    assert refused.status_code == 429, refused.text
    detail = refused.json()["detail"]
    assert "point rate" in detail and "100 points per minute" in detail and "carries 60" in detail
    assert int(refused.headers["retry-after"]) >= 1
    assert _count(engine, metric_points) == 60  # the refused request stored nothing
    # A smaller request still fits in what is left.
    assert httpx.post(url, json=_points(30, "third"), headers=headers).status_code == 202


@pytest.mark.parametrize(
    ("path", "body", "content_type", "table"),
    [
        (
            "/api/monitoring/performance",
            [
                {"method": "GET", "endpoint": "/x", "status_code": 200, "response_time_ms": 5}
                for _ in range(60)
            ],
            "application/json",
            None,
        ),
        (
            "/api/monitoring/business-events",
            [{"event_type": "search", "user_id": f"u{i}"} for i in range(60)],
            "application/json",
            business_events,
        ),
        (
            "/api/monitoring/errors",
            [
                {"error_type": "E", "message": f"m{i}", "service_name": "s", "level": "api"}
                for i in range(60)
            ],
            "application/json",
            error_events,
        ),
        (
            "/metrics/job/rated",
            "".join(f'rated_total{{i="{i}"}} {i}\n' for i in range(60)),
            "text/plain",
            None,
        ),
    ],
    ids=["performance", "business-events", "errors", "pushgateway"],
)
def test_every_ingest_route_counts_its_items(
    limited_server: str,
    engine: Engine,
    path: str,
    body: Any,
    content_type: str,
    table: Any,
) -> None:
    headers = {"X-API-Key": _key(engine), "Content-Type": content_type}
    method = "PUT" if path.startswith("/metrics/") else "POST"
    content = body if isinstance(body, str) else httpx.Request("POST", "/", json=body).content
    first = httpx.request(method, limited_server + path, content=content, headers=headers)
    assert first.status_code in (200, 202), first.text
    stored = _count(engine, table) if table is not None else None
    second = httpx.request(method, limited_server + path, content=content, headers=headers)
    assert second.status_code == 429, second.text
    assert "point rate" in second.json()["detail"] and "retry-after" in second.headers
    if table is not None:
        assert _count(engine, table) == stored  # nothing of the refused request


def test_sentry_envelopes_spend_the_keys_point_rate(limited_server: str, engine: Engine) -> None:
    """Each error event (and transaction or log item) of an envelope is a point: past the key's
    point rate the SDK gets 429 with the header it obeys, and nothing of that envelope is kept."""
    key = _key(engine, rate_limit_per_minute=0, points_per_minute=3)
    url = f"{limited_server}/api/1/envelope/"
    headers = {"X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7"}

    def envelope(i: int) -> bytes:
        event = {"event_id": f"{i:032x}", "message": f"rated {i}", "level": "error"}
        item = httpx.Request("POST", "/", json=event).content
        header = b'{"type":"event","length":%d}' % len(item)
        return b'{"event_id":"%032x"}\n' % i + header + b"\n" + item + b"\n"

    for i in range(3):
        assert httpx.post(url, content=envelope(i), headers=headers).status_code == 200
    refused = httpx.post(url, content=envelope(3), headers=headers)
    assert refused.status_code == 429, refused.text
    assert "3 points per minute" in refused.json()["detail"]
    assert refused.headers["x-sentry-rate-limits"].endswith("::key")
    assert _count(engine, error_events) == 3


# ---------------------------------------------------------------- set per key
def test_a_keys_own_rates_win_over_the_defaults(limited_server: str, engine: Engine) -> None:
    unlimited = {"X-API-Key": _key(engine, rate_limit_per_minute=0, points_per_minute=0)}
    url = f"{limited_server}/api/monitoring/metrics"
    for _ in range(8):  # past both defaults (5 requests, 100 points)
        assert httpx.post(url, json=_points(50), headers=unlimited).status_code == 202
    tight = {"X-API-Key": _key(engine, points_per_minute=10)}
    assert httpx.post(url, json=_points(6), headers=tight).status_code == 202
    refused = httpx.post(url, json=_points(6), headers=tight)
    assert refused.status_code == 429 and "10 points per minute" in refused.json()["detail"]


def test_an_admin_sets_a_keys_point_rate_through_the_api(
    limited_server: str, engine: Engine
) -> None:
    admin = {"X-API-Key": _key(engine, ApiScope.ADMIN)}
    key = _key(engine)
    with engine.connect() as conn:
        record = lookup_api_key(conn, key)
    assert record is not None
    changed = httpx.patch(
        f"{limited_server}/api/admin/keys/{record.id}",
        json={"points_per_minute": 3, "rate_limit_per_minute": 0},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["points_per_minute"] == 3
    url = f"{limited_server}/api/monitoring/metrics"
    assert httpx.post(url, json=_points(3), headers={"X-API-Key": key}).status_code == 202
    assert httpx.post(url, json=_points(1), headers={"X-API-Key": key}).status_code == 429
    bad = httpx.patch(
        f"{limited_server}/api/admin/keys/{record.id}",
        json={"points_per_minute": -5},
        headers=admin,
    )
    assert bad.status_code == 422 and "points_per_minute" in bad.text
    listed = httpx.get(f"{limited_server}/api/admin/keys", headers=admin).json()["keys"]
    assert {k["id"]: k["points_per_minute"] for k in listed}[record.id] == 3


def test_the_cli_sets_and_resets_a_keys_rates(engine: Engine, database_url: str) -> None:
    made = cli(
        "apikey", "add", "shop", "--scope", "ingest", "--point-limit", "5000", url=database_url
    )
    assert made.returncode == 0, made.stderr
    with engine.connect() as conn:
        key_id, points, requests = conn.execute(
            select(api_keys.c.id, api_keys.c.points_per_minute, api_keys.c.rate_limit_per_minute)
        ).one()
    assert (points, requests) == (5000, None)
    changed = cli(
        "apikey",
        "set",
        str(key_id),
        "--point-limit",
        "unlimited",
        "--rate-limit",
        "90",
        url=database_url,
    )
    assert changed.returncode == 0, changed.stderr
    assert "90 requests and unlimited points per minute" in changed.stdout
    back = cli("apikey", "set", str(key_id), "--point-limit", "default", url=database_url)
    assert back.returncode == 0, back.stderr
    with engine.connect() as conn:
        row = conn.execute(
            select(api_keys.c.points_per_minute, api_keys.c.rate_limit_per_minute)
        ).one()
    assert tuple(row) == (None, 90)
    listed = cli("apikey", "list", url=database_url)
    assert "points_per_minute" in listed.stdout


def test_settings_sets_a_keys_point_rate(engine: Engine, logged_in_app: AppFactory) -> None:
    with engine.begin() as conn:
        create_api_key(conn, name="shop", scope=ApiScope.INGEST)
        key_id = conn.execute(select(api_keys.c.id)).scalar_one()
    at = logged_in_app(Role.ADMIN)
    at.run()
    at.switch_page("pages/settings.py")
    at.query_params["tab"] = "API keys and users"
    at.run()
    assert any("0 means unlimited" in c.value for c in at.caption)
    at.selectbox(key="apikey_pick").select(key_id)
    at.number_input(key="apikey_new_points").set_value(250)
    next(b for b in at.button if b.label == "Save limit and expiry").click().run()
    assert not at.exception
    with engine.connect() as conn:
        row = conn.execute(
            select(api_keys.c.points_per_minute, api_keys.c.rate_limit_per_minute)
        ).one()
    assert tuple(row) == (250, None)  # requests left empty: the default


def test_an_existing_key_without_limits_is_limited_by_default(
    limited_server: str, engine: Engine
) -> None:
    key = _key(engine)
    with engine.begin() as conn:  # as every key made before the defaults existed
        conn.execute(update(api_keys).values(rate_limit_per_minute=None, points_per_minute=None))
    url = f"{limited_server}/api/monitoring/metrics"
    assert httpx.post(url, json=_points(100), headers={"X-API-Key": key}).status_code == 202
    assert httpx.post(url, json=_points(1), headers={"X-API-Key": key}).status_code == 429
