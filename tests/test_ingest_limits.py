"""Issue 13 item 2: huge values are refused at ingest, and no stored row can wedge the rollups."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text
from streamlit.testing.v1 import AppTest

from monitoring_core.enums import Role
from monitoring_core.rollups import quarantined_ranges, run_rollups
from tests.rollup_fixtures import add_points, add_series, add_timings


def _post(base: str, key: str, route: str, body: Any) -> httpx.Response:
    return httpx.post(
        f"{base}/api/monitoring/{route}",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _stored(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608


def _watermarks(engine: Engine) -> dict[str, datetime]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT name, watermark FROM rollup_watermarks")).all()
    return {name: mark for name, mark in rows}


@pytest.mark.parametrize(
    ("route", "item", "field"),
    [
        ("metrics", {"metric_name": "m", "metric_value": 1e308}, "metric_value"),
        ("metrics", {"metric_name": "m", "metric_value": -1e308}, "metric_value"),
        ("metrics", {"metric_name": "m", "metric_value": 2**53 + 2}, "metric_value"),
        (
            "performance",
            {"method": "GET", "endpoint": "/a", "status_code": 200, "response_time_ms": 1e308},
            "response_time_ms",
        ),
        (
            "performance",
            {"method": "GET", "endpoint": "/a", "status_code": 200, "response_time_ms": 9e7},
            "response_time_ms",
        ),
        ("performance", {"name": "LCP", "value": 1e308, "page_route": "/"}, "value"),
        ("business-events", {"event_type": "booking_paid", "revenue": 1e26}, "revenue"),
    ],
)
def test_it_refuses_values_outside_the_documented_range(
    api_server: str, ingest_key: str, engine: Engine, route: str, item: dict, field: str
) -> None:
    good = dict(item)
    good[field] = 12.5
    response = _post(api_server, ingest_key, route, [good, item])
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["index"] == 1
    assert response.json()["detail"][0]["field"] == field
    assert "between" in response.json()["detail"][0]["message"]
    for table in ("metric_points", "api_timings", "web_vitals", "business_events"):
        assert _stored(engine, table) == 0  # a rejected batch stores nothing


def test_it_accepts_the_edges_of_the_range(api_server: str, ingest_key: str) -> None:
    metrics = [{"metric_name": "m", "metric_value": v} for v in (2**53, -(2**53), 0, 1e15)]
    assert _post(api_server, ingest_key, "metrics", metrics).status_code == 202
    timing = {"method": "GET", "endpoint": "/a", "status_code": 200, "response_time_ms": 8.64e7}
    assert _post(api_server, ingest_key, "performance", timing).status_code == 202


def test_it_never_lets_two_huge_points_wedge_the_rollups(
    api_server: str, ingest_key: str, engine: Engine, real_now: datetime
) -> None:
    minute = (real_now - timedelta(minutes=5)).replace(second=0)
    huge = [
        {"metric_name": "m", "metric_value": 1e308, "timestamp": (minute + timedelta(seconds=s))}
        for s in (1, 2)
    ]
    body = [dict(p, timestamp=p["timestamp"].isoformat()) for p in huge]
    assert _post(api_server, ingest_key, "metrics", body).status_code == 422
    # Rows stored before the bound existed (or by a writer that skipped it) must not wedge the
    # job either: two such points and a healthy series in other minutes.
    with engine.begin() as conn:
        bad, fine = add_series(conn, "m"), add_series(conn, "fine")
        add_points(conn, bad, [(minute + timedelta(seconds=1), 1e308)] * 2)
        add_points(conn, fine, [(minute - timedelta(minutes=30), 3.0)])
        add_points(conn, fine, [(minute + timedelta(minutes=2), 4.0)])
        t = minute + timedelta(seconds=3)
        add_timings(conn, [(t, "GET", "/a", 200, 1e308), (t, "GET", "/a", 200, 1e308)])
    before = datetime.now(real_now.tzinfo)

    report = run_rollups(engine, datetime.now(real_now.tzinfo), safety_lag=timedelta(0))

    marks = _watermarks(engine)
    assert marks["metric_points"] >= before and marks["api_timings"] >= before
    with engine.connect() as conn:
        minutes = conn.execute(
            text("SELECT bucket, sum FROM metric_rollup_1m WHERE series_id = :s ORDER BY 1"),
            {"s": fine},
        ).all()
        quarantined = quarantined_ranges(conn)
    # Only the poisoned minute is skipped: the healthy minutes around it are rolled up.
    assert [row.sum for row in minutes] == [3.0, 4.0]
    tables = {(q["target_table"], q["range_start"], q["range_end"]) for q in quarantined}
    assert ("metric_rollup_1m", minute, minute + timedelta(minutes=1)) in tables
    assert ("api_rollup_1m", minute, minute + timedelta(minutes=1)) in tables
    assert all("out of range" in q["error"] for q in quarantined)
    assert "QUARANTINED" in report.summary()

    # A second run with nothing new is quiet, and a rerun of the window quarantines again
    # without failing (attempts counted, not duplicate rows).
    again = run_rollups(engine, datetime.now(real_now.tzinfo), safety_lag=timedelta(0))
    assert again.quarantined == []


def test_it_reports_quarantined_ranges_as_a_metric_and_on_the_health_page(
    engine: Engine, real_now: datetime, logged_in_app: Callable[[Role | None], AppTest]
) -> None:
    from jobs.builtin import rollups

    minute = (real_now - timedelta(minutes=5)).replace(second=0)
    with engine.begin() as conn:
        series = add_series(conn, "m")
        ingested = real_now - timedelta(minutes=1)  # older than the job's safety lag
        add_points(conn, series, [(minute, 1e308), (minute, 1e308)], ingested_at=ingested)

    summary = rollups(engine, real_now)

    assert "1 QUARANTINED" in summary
    with engine.connect() as conn:
        gauge = conn.execute(
            text(
                "SELECT p.value FROM metric_points p JOIN metric_series s ON s.id = p.series_id "
                "WHERE s.name = 'rollup_quarantined_ranges'"
            )
        ).scalars()
        assert list(gauge) == [1.0]  # an alert rule can watch it
    at = logged_in_app(Role.VIEWER).run()
    at.switch_page("pages/health.py").run()
    assert not at.exception
    assert any("1 rollup range(s) could not be computed" in w.value for w in at.warning)
    quarantined = at.dataframe[0].value
    assert list(quarantined["Table"]) == ["metric_rollup_1m"]
    assert list(quarantined["Family"]) == ["Metric points"]
