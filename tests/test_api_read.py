"""Read API on a real server over data ingested through the API and rolled up by the worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tests.rollup_fixtures import roll_up_now


def _ingest(url: str, key: str, route: str, items: list[dict[str, Any]]) -> None:
    reply = httpx.post(f"{url}{route}", json=items, headers={"X-API-Key": key})
    assert reply.status_code == 202, reply.text


@pytest.fixture
def rolled_up(api_server: str, ingest_key: str, engine: Engine) -> datetime:
    """Ten minutes of timings, vitals and metric points, rolled up; returns the data's end."""
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    timings, vitals, points = [], [], []
    for minute in range(10):
        at = (end - timedelta(minutes=10 - minute)).isoformat()
        for i in range(10):
            timings.append(
                {
                    "method": "GET",
                    "endpoint": "/api/vendors",
                    "status_code": 200,
                    "response_time_ms": 100 + i,
                    "timestamp": at,
                }  # fmt: skip
            )
        timings.append(
            {
                "method": "POST",
                "endpoint": "/api/bookings",
                "status_code": 500,
                "response_time_ms": 3000,
                "timestamp": at,
            }  # fmt: skip
        )
        vitals.append({"name": "LCP", "value": 1000 + minute * 400, "page_route": "/home",
                       "device_type": "mobile", "timestamp": at})  # fmt: skip
        points.append({"metric_name": "queue", "metric_value": minute,
                       "dimensions": {"q": "mail" if minute % 2 else "sms"}, "timestamp": at})  # fmt: skip
    _ingest(api_server, ingest_key, "/api/monitoring/performance", timings + vitals)
    _ingest(api_server, ingest_key, "/api/monitoring/metrics", points)
    roll_up_now(engine)
    return end


def _get(url: str, key: str, path: str, **params: str) -> httpx.Response:
    return httpx.get(f"{url}{path}", params=params, headers={"X-API-Key": key})


def test_it_serves_the_overview_and_performance_dashboards(
    api_server: str, admin_key: str, rolled_up: datetime
) -> None:
    reply = _get(api_server, admin_key, "/api/monitoring/dashboard/overview", timeRange="1h")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["summary"]["requests"] == 110
    assert body["top_slow_endpoints"][0]["endpoint"] == "/api/bookings"
    assert sum(row["requests"] for row in body["latency_trend"]) == 110

    body = _get(
        api_server, admin_key, "/api/monitoring/dashboard/performance", timeRange="1h"
    ).json()
    by_endpoint = {row["endpoint"]: row for row in body["endpoints"]}
    assert by_endpoint["/api/bookings"]["error_rate"] == 1.0
    assert by_endpoint["/api/vendors"]["requests"] == 100
    (vital,) = body["web_vitals"]
    assert (vital["name"], vital["page_route"], vital["device_type"]) == ("LCP", "/home", "mobile")
    assert isinstance(body["regressions"], list)


def test_it_queries_metrics_grouped_by_and_filtered_on_dimensions(
    api_server: str, admin_key: str, rolled_up: datetime
) -> None:
    query: dict[str, Any] = {"metric_name": "queue", "aggregation": "sum", "interval": "1h",
                             "timeRange": "24h", "group_by": ["q"]}  # fmt: skip
    reply = httpx.post(f"{api_server}/api/monitoring/query/metrics", json=query,
                       headers={"Authorization": f"Bearer {admin_key}"})  # fmt: skip
    assert reply.status_code == 200, reply.text
    totals = {s["group"]["q"]: sum(p[1] for p in s["points"]) for s in reply.json()["series"]}
    assert totals == {"mail": 1 + 3 + 5 + 7 + 9, "sms": 0 + 2 + 4 + 6 + 8}

    query = {"metric_name": "queue", "aggregation": "count", "interval": "1h",
             "timeRange": "24h", "filters": {"q": "mail"}}  # fmt: skip
    reply = httpx.post(f"{api_server}/api/monitoring/query/metrics", json=query,
                       headers={"X-API-Key": admin_key})  # fmt: skip
    (series,) = reply.json()["series"]
    assert sum(p[2] for p in series["points"]) == 5


def test_it_serves_performance_analytics_and_core_web_vitals(
    api_server: str, admin_key: str, rolled_up: datetime
) -> None:
    api = _get(api_server, admin_key, "/api/monitoring/performance/analytics", timeRange="1h")
    assert {row["endpoint"] for row in api.json()["rows"]} == {"/api/vendors", "/api/bookings"}
    lcp = _get(api_server, admin_key, "/api/monitoring/performance/analytics",
               metric="LCP", segment="device", timeRange="1h")  # fmt: skip
    assert [row["device_type"] for row in lcp.json()["rows"]] == ["mobile"]
    cwv = _get(api_server, admin_key, "/api/monitoring/performance/core-web-vitals").json()
    (metric,) = cwv["by_metric"]
    assert metric["name"] == "LCP" and metric["count"] == 10
    assert metric["good_share"] + metric["needs_improvement_share"] + metric[
        "poor_share"
    ] == pytest.approx(1)


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/monitoring/dashboard/overview", {"timeRange": "2y"}, "timeRange"),
        ("/api/monitoring/dashboard/overview", {"from": "2026-01-01T00:00:00Z"}, "timeRange"),
        ("/api/monitoring/performance/analytics", {"metric": "XYZ"}, "metric"),
        ("/api/monitoring/performance/analytics", {"metric": "LCP", "segment": "x"}, "segment"),
    ],
)
def test_it_answers_422_for_bad_read_parameters(
    api_server: str, admin_key: str, path: str, params: dict[str, str], field: str
) -> None:
    reply = _get(api_server, admin_key, path, **params)
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["field"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"aggregation": "avg"}, "metric_name"),
        ({"metric_name": "q", "aggregation": "median"}, "aggregation"),
        ({"metric_name": "q", "interval": "soon"}, "interval"),
        ({"metric_name": "q", "colour": "red"}, "colour"),
    ],
)
def test_it_answers_422_for_bad_metric_queries(
    api_server: str, admin_key: str, body: dict[str, Any], field: str
) -> None:
    reply = httpx.post(f"{api_server}/api/monitoring/query/metrics", json=body,
                       headers={"X-API-Key": admin_key})  # fmt: skip
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["field"] == field


def test_it_needs_a_key_for_reads(api_server: str) -> None:
    assert httpx.get(f"{api_server}/api/monitoring/dashboard/overview").status_code == 401


def test_it_answers_400_for_a_malformed_metric_query(api_server: str, admin_key: str) -> None:
    reply = httpx.post(
        f"{api_server}/api/monitoring/query/metrics",
        content=b'{"metric_name": "q",',
        headers={"X-API-Key": admin_key, "content-type": "application/json"},
    )
    assert reply.status_code == 400
    assert "malformed JSON" in reply.json()["detail"]
    assert "at char 20" in reply.json()["detail"]
