"""Scopes on a real server: every route of the app, asked with every scope of key (issue 13.3).

The routes come from the app's own OpenAPI document, so a route added later is checked too: a
new route must be an ingest route (listed below), public (listed below), under /api/admin/, or
a read route, and is then held to that class's rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine

from monitoring_core.accounts import create_api_key
from monitoring_core.enums import ApiScope

# Operations that need no key (the heartbeat token and the signed acknowledge-link token are
# the secret).
PUBLIC = {("GET", "/healthz")}  # /metrics needs a read key (MONITORING_OPEN_SERVICE_ROUTES)
PUBLIC_PREFIX = ("/api/monitoring/heartbeat/", "/ack/")
# What an ingest key is for: writes only.
INGEST = {
    ("POST", "/api/monitoring/metrics"),
    ("POST", "/api/monitoring/performance"),
    ("POST", "/api/monitoring/errors"),
    ("POST", "/api/monitoring/business-events"),
    ("POST", "/api/{project_id}/envelope/"),
    ("POST", "/api/{project_id}/store/"),
    ("PUT", "/metrics/{first}/{rest}"),
    ("POST", "/metrics/{first}/{rest}"),
    ("DELETE", "/metrics/{first}/{rest}"),
    ("POST", "/v1/traces"),  # OTLP/HTTP
    ("POST", "/v1/metrics"),
    ("POST", "/v1/logs"),
    ("POST", "/api/monitoring/logs"),
    ("POST", "/api/v1/write"),  # Prometheus remote write
    ("POST", "/api/v2/alerts"),  # alerts sent by Prometheus/Grafana, as to an Alertmanager
}
# Reads that take a body, so they are POSTs.
READ_POSTS = {
    ("POST", "/api/monitoring/errors/correlate"),
    ("POST", "/api/monitoring/query/metrics"),
    ("POST", "/api/v1/query"),  # the Prometheus HTTP API takes form POSTs too
    ("POST", "/api/v1/query_range"),
    ("POST", "/api/v1/series"),
    ("POST", "/api/v1/labels"),
}
# Path parameters filled with values no row has: an admin reaching a handler gets a 404 or
# 422, and nothing is changed.
PATH_VALUES = {"action": "resolve", "rest": "instance/x", "first": "job", "project_id": "1"}
MISSING_ID = "987654321"


def _operations(app: FastAPI) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    ]


def _kind(method: str, path: str) -> str:
    if (method, path) in PUBLIC or path.startswith(PUBLIC_PREFIX):
        return "public"
    if (method, path) in INGEST:
        return "ingest"
    if path.startswith("/api/admin/"):
        return "admin"
    if method == "GET" or (method, path) in READ_POSTS:
        return "read"
    raise AssertionError(f"{method} {path}: classify this new route in tests/test_api_scopes.py")


# Which kinds of route each scope may use (the browser scope: one route, see below).
MAY_USE = {
    ApiScope.INGEST: {"ingest"},
    ApiScope.READ: {"read"},
    ApiScope.ADMIN: {"ingest", "read", "admin"},
    ApiScope.BROWSER: set(),
}
BROWSER_ROUTE = ("POST", "/api/monitoring/performance")


def _call(client: httpx.Client, method: str, path: str, key: str, **extra: Any) -> httpx.Response:
    url = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m[1], MISSING_ID), path)
    headers = {
        "X-API-Key": key,
        "X-Sentry-Auth": f"Sentry sentry_key={key}",  # how Sentry SDKs send it
        "content-type": "application/json",
        **extra.pop("headers", {}),
    }
    request = client.build_request(method, url, headers=headers, content=b"{}", **extra)
    response = client.send(request, stream=True)
    try:  # an event stream never ends: its status is all this test needs
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.read()
    finally:
        response.close()
    return response


@pytest.fixture
def client(api_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server, timeout=30) as client:
        yield client


@pytest.fixture
def keys(engine: Engine) -> dict[ApiScope, str]:
    with engine.begin() as conn:
        return {scope: create_api_key(conn, name=f"k-{scope}", scope=scope) for scope in ApiScope}


def test_it_classifies_every_route_of_the_app(api_app: FastAPI) -> None:
    kinds = {_kind(method, path) for method, path in _operations(api_app)}
    assert kinds == {"public", "ingest", "read", "admin"}


@pytest.mark.parametrize("scope", list(ApiScope))
def test_it_lets_each_scope_use_only_its_routes(
    api_app: FastAPI, client: httpx.Client, keys: dict[ApiScope, str], scope: ApiScope
) -> None:
    wrong, refused = [], []
    for method, path in _operations(api_app):
        kind = _kind(method, path)
        if kind == "public":
            continue
        allowed = kind in MAY_USE[scope] or (
            scope is ApiScope.BROWSER and (method, path) == BROWSER_ROUTE
        )
        status = _call(client, method, path, keys[scope]).status_code
        if not allowed and status != 403:
            wrong.append(f"{method} {path} answered {status}")
        if allowed and status in (401, 403):
            refused.append(f"{method} {path} answered {status}")
    assert wrong == [], f"{scope} key reached routes it must not use"
    assert refused == [], f"{scope} key was refused on its own routes"


def test_it_refuses_an_ingest_key_on_every_read_route(
    api_app: FastAPI, client: httpx.Client, ingest_key: str
) -> None:
    reads = [op for op in _operations(api_app) if _kind(*op) == "read"]
    assert len(reads) >= 15  # the read API is all there: revenue, MRR, errors, incidents …
    answers = {op: _call(client, *op, ingest_key).status_code for op in reads}
    assert set(answers.values()) == {403}, answers


def test_it_answers_a_read_key_with_data(
    api_server: str, keys: dict[ApiScope, str], ingest_key: str
) -> None:
    body = [{"metric_name": "orders", "metric_value": 3}]
    ingest = {"X-API-Key": ingest_key}
    accepted = httpx.post(f"{api_server}/api/monitoring/metrics", json=body, headers=ingest)
    assert accepted.status_code == 202
    read = {"X-API-Key": keys[ApiScope.READ]}
    live = httpx.get(f"{api_server}/api/monitoring/live/metrics?name=orders", headers=read)
    assert live.status_code == 200
    refused = httpx.post(f"{api_server}/api/monitoring/metrics", json=body, headers=read)
    assert refused.status_code == 403 and "read" in refused.json()["detail"]


BEACON = [{"name": "LCP", "value": 1800, "page_route": "/checkout"}]


@pytest.fixture
def browser_key(engine: Engine) -> str:
    with engine.begin() as conn:
        return create_api_key(
            conn,
            name="shop pages",
            scope=ApiScope.BROWSER,
            allowed_origins=["https://SHOP.example.com:443/"],  # kept as browsers send it
        )


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("https://shop.example.com", 202),
        ("https://SHOP.example.com/", 202),  # browsers send it lower-case; any case is the same
        ("https://evil.example.net", 403),
        ("http://shop.example.com", 403),  # another scheme is another origin
        (None, 403),  # a key limited to origins needs one
    ],
)
def test_it_takes_web_vitals_from_a_browser_key_only_from_its_origins(
    api_server: str, browser_key: str, origin: str | None, status: int
) -> None:
    headers = {"Origin": origin} if origin else {}
    reply = httpx.post(
        f"{api_server}/api/monitoring/performance",
        params={"key": browser_key},  # as navigator.sendBeacon sends it
        json=BEACON,
        headers=headers,
    )
    assert reply.status_code == status, reply.text


def test_it_refuses_a_browser_key_on_every_other_ingest_route(
    client: httpx.Client, browser_key: str
) -> None:
    headers = {"Origin": "https://shop.example.com"}
    for method, path in sorted(INGEST - {BROWSER_ROUTE}):
        reply = _call(client, method, path, browser_key, headers=headers)
        assert reply.status_code == 403, f"{method} {path}: {reply.status_code}"


def test_it_answers_401_for_an_expired_key(
    api_server: str, engine: Engine, real_now: datetime
) -> None:
    with engine.begin() as conn:
        old = create_api_key(
            conn, name="old", scope=ApiScope.READ, expires_at=real_now - timedelta(seconds=1)
        )
        fresh = create_api_key(
            conn, name="fresh", scope=ApiScope.READ, expires_at=real_now + timedelta(hours=1)
        )
    url = f"{api_server}/api/monitoring/live/alerts"
    expired = httpx.get(url, headers={"X-API-Key": old})
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    assert httpx.get(url, headers={"X-API-Key": fresh}).status_code == 200
