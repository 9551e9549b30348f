"""POST /api/monitoring/performance: API timings and Web Vitals (sendBeacon, CORS, ratings)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine, func, select

from monitoring_core.performance.vitals import rate_vital
from monitoring_core.schema import api_timings, web_vitals

ROUTE = "/api/monitoring/performance"
TIMING = {"method": "GET", "endpoint": "/api/vendors", "status_code": 200, "response_time_ms": 12.5}
VITAL = {"name": "LCP", "value": 1800, "page_route": "/vendors"}


def _post(url: str, key: str, body: Any, **headers: str) -> httpx.Response:
    return httpx.post(f"{url}{ROUTE}", json=body, headers={"X-API-Key": key, **headers})


def _rows(engine: Engine, table: Any) -> Sequence[Any]:
    with engine.connect() as conn:
        return conn.execute(select(table)).all()


def _counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        timings = conn.execute(select(func.count()).select_from(api_timings)).scalar_one()
        vitals = conn.execute(select(func.count()).select_from(web_vitals)).scalar_one()
    return timings, vitals


def test_it_round_trips_api_timings_and_vitals_in_one_batch(
    api_server: str, ingest_key: str, engine: Engine, now: datetime
) -> None:
    at = now - timedelta(minutes=1)
    timing = {
        "method": "post",
        "endpoint": "/api/bookings",
        "status_code": 503,
        "response_time_ms": 2048.25,
        "timestamp": at.isoformat(),
        "user_type": "couple",
        "database_query_time_ms": 300,
        "external_api_time_ms": 1500.5,
        "cache_hit": False,
        "request_id": "req-1",
    }
    vital = {
        "name": "CLS",
        "value": 0.12,
        "page_route": "/checkout",
        "device_type": "mobile",
        "connection_type": "4g",
        "browser": "Safari",
        "country_code": "GB",
        "session_id": "s-1",
        "id": "v4-123",
        "navigationType": "reload",
        "timestamp": at.isoformat(),
    }
    reply = _post(api_server, ingest_key, [timing, vital])
    assert reply.status_code == 202, reply.text
    assert reply.json() == {"accepted": 2, "api_timings": 1, "web_vitals": 1}
    (t,) = _rows(engine, api_timings)
    assert (t.time, t.method, t.endpoint, t.status_code, t.response_time_ms) == (
        at,
        "POST",
        "/api/bookings",
        503,
        2048.25,
    )
    assert (t.user_type, t.database_query_time_ms, t.external_api_time_ms) == (
        "couple",
        300,
        1500.5,
    )
    assert (t.cache_hit, t.request_id) == (False, "req-1")
    (v,) = _rows(engine, web_vitals)
    assert (v.time, v.name, v.value, v.rating, v.page_route) == (
        at,
        "CLS",
        0.12,
        "needs-improvement",
        "/checkout",
    )
    assert (v.device_type, v.connection_type, v.browser, v.country_code) == (
        "mobile",
        "4g",
        "Safari",
        "GB",
    )
    assert (v.session_id, v.metric_id, v.navigation_type) == ("s-1", "v4-123", "reload")


def test_it_takes_the_web_vitals_library_object_by_send_beacon(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    # What `navigator.sendBeacon(url + "?key=…", JSON.stringify(metric))` posts.
    metric = {
        "name": "INP",
        "value": 350,
        "rating": "good",  # a client's rating is recomputed, not trusted
        "delta": 350,
        "id": "v4-1700000000000-123",
        "navigationType": "navigate",
        "entries": [{"name": "pointerdown", "duration": 350}],
    }
    reply = httpx.post(
        f"{api_server}{ROUTE}",
        params={"key": ingest_key},
        content=orjson.dumps(metric),
        headers={
            "content-type": "text/plain;charset=UTF-8",
            "referer": "https://wedding.example/vendors/4411/reviews?page=2#top",
            "user-agent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile Safari/537.36",
            "origin": "https://wedding.example",
        },
    )
    assert reply.status_code == 202, reply.text
    assert reply.headers["access-control-allow-origin"] == "*"
    (v,) = _rows(engine, web_vitals)
    assert (v.name, v.value, v.rating) == ("INP", 350, "needs-improvement")
    assert (v.page_route, v.device_type) == ("/vendors/:id/reviews", "mobile")
    assert v.metric_id == "v4-1700000000000-123"


@pytest.mark.parametrize(
    ("fields", "route"),
    [
        ({"page_route": "/given/123"}, "/given/123"),  # an explicit route is kept as sent
        ({"url": "https://x.example/a/9f1c2d3e4b5a69788796a5b4c3d2e1f0/b?q=1"}, "/a/:id/b"),
        ({"page": "/p/550e8400-e29b-41d4-a716-446655440000"}, "/p/:id"),
    ],
)
def test_it_derives_page_routes(
    api_server: str, ingest_key: str, engine: Engine, fields: dict, route: str
) -> None:
    assert _post(api_server, ingest_key, {"name": "FCP", "value": 900, **fields}).status_code == 202
    assert _rows(engine, web_vitals)[0].page_route == route


def test_it_answers_cors_preflight_on_ingest_routes_only(api_server: str) -> None:
    preflight = {
        "origin": "https://wedding.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
    }
    reply = httpx.options(f"{api_server}{ROUTE}", headers=preflight)
    assert reply.status_code == 200
    assert reply.headers["access-control-allow-origin"] == "*"
    assert "POST" in reply.headers["access-control-allow-methods"]
    assert "authorization" in reply.headers["access-control-allow-headers"].lower()
    other = httpx.options(f"{api_server}/api/monitoring/live/metrics", headers=preflight)
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize(
    ("item", "field", "says"),
    [
        ({**TIMING, "status_code": 700}, "status_code", "between 100 and 599"),
        ({**TIMING, "status_code": "200"}, "status_code", "integer"),
        ({**TIMING, "method": "FETCH"}, "method", "one of"),
        ({**TIMING, "response_time_ms": -1}, "response_time_ms", ">= 0"),
        ({**TIMING, "cache_hit": "yes"}, "cache_hit", "true or false"),
        ({**TIMING, "endpoint": None}, "endpoint", "required"),
        ({**TIMING, "page_route": "/x"}, "page_route", "unknown field"),
        ({**VITAL, "name": "XYZ"}, "name", "one of"),
        ({**VITAL, "value": None}, "value", "required"),
        ({**VITAL, "device_type": "fridge"}, "device_type", "one of"),
        ({"name": "LCP", "value": 1}, "page_route", "Referer"),
        ({**VITAL, "endpoint_path": "/x"}, "endpoint_path", "unknown field"),
        ({"foo": 1}, "", "neither an API timing"),
    ],
)
def test_it_rejects_bad_performance_items_whole(
    api_server: str, ingest_key: str, engine: Engine, item: dict, field: str, says: str
) -> None:
    reply = _post(api_server, ingest_key, [TIMING, VITAL, item])
    assert reply.status_code == 422
    errors = reply.json()["detail"]
    assert any(e["index"] == 2 and e["field"] == field and says in e["message"] for e in errors), (
        errors
    )
    assert _counts(engine) == (0, 0)


@pytest.mark.parametrize(
    ("name", "value", "rating"),
    [
        ("LCP", 2500, "good"),
        ("LCP", 2500.1, "needs-improvement"),
        ("LCP", 4000, "needs-improvement"),
        ("LCP", 4000.1, "poor"),
        ("INP", 200, "good"),
        ("INP", 201, "needs-improvement"),
        ("INP", 501, "poor"),
        ("CLS", 0.1, "good"),
        ("CLS", 0.25, "needs-improvement"),
        ("CLS", 0.26, "poor"),
        ("FCP", 1800, "good"),
        ("FCP", 3000, "needs-improvement"),
        ("FCP", 3001, "poor"),
        ("TTFB", 800, "good"),
        ("TTFB", 1800, "needs-improvement"),
        ("TTFB", 1801, "poor"),
        ("FID", 100, "good"),
        ("FID", 300, "needs-improvement"),
        ("FID", 300.5, "poor"),
        ("LCP", 0, "good"),
    ],
)
def test_it_rates_web_vitals_with_the_web_dev_thresholds(
    name: str, value: float, rating: str
) -> None:
    assert rate_vital(name, value) == rating
