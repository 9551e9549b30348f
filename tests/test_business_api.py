"""Business ingest and Read API on a real server: 202/401/413/415/422, nothing stored on reject,
funnels, trends, anomalies, forecasts and CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine, func, select

from monitoring_core.business.daily import rollup_days
from monitoring_core.business.definitions import local_day
from monitoring_core.config import load_settings
from monitoring_core.schema import business_events

URL = "/api/monitoring/business-events"


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(business_events)).scalar_one()


def _post(api_server: str, key: str, body: object, **kwargs) -> httpx.Response:
    return httpx.post(f"{api_server}{URL}", json=body, headers={"X-API-Key": key}, **kwargs)


def test_it_accepts_and_stores_a_batch(api_server: str, ingest_key: str, engine: Engine):
    now = datetime.now(UTC).replace(microsecond=0)
    body = [
        {"event_type": "signup", "user_id": "u1", "properties": {"device": "mobile"}},
        {
            "event_type": "subscription_started",
            "organization_id": 42,
            "properties": {"mrr": 49},
            "revenue": 49.999,
            "currency": "GBP",
            "timestamp": (now - timedelta(days=400)).isoformat(),
        },
    ]
    reply = _post(api_server, ingest_key, body)
    assert reply.status_code == 202, reply.text
    assert reply.json() == {"accepted": 2}
    with engine.connect() as conn:
        rows = conn.execute(
            select(business_events.c.organization_id, business_events.c.revenue).order_by(
                business_events.c.time
            )
        ).all()
    assert [(r[0], r[1]) for r in rows] == [("42", pytest.approx(50.0)), (None, None)]


def test_it_takes_the_key_from_the_query_and_text_plain_for_beacons(
    api_server: str, ingest_key: str, engine: Engine
):
    reply = httpx.post(
        f"{api_server}{URL}?key={ingest_key}",
        content=b'{"event_type": "page_view", "user_id": "u1"}',
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert reply.status_code == 202
    assert _count(engine) == 1


BAD_ITEMS = [  # (item, the field its error must name)
    ({"event_type": "signup", "colour": "red"}, "colour"),
    ({"user_id": "u1"}, "event_type"),
    ({"event_type": 5}, "event_type"),
    ({"event_type": "signup", "user_id": ["u1"]}, "user_id"),
    ({"event_type": "signup", "properties": "x"}, "properties"),
    ({"event_type": "signup", "properties": {"x": "a\u0000b"}}, "properties"),
    ({"event_type": "signup", "revenue": "12"}, "revenue"),
    ({"event_type": "signup", "revenue": True}, "revenue"),
    ({"event_type": "signup", "currency": "pounds"}, "currency"),
    ({"event_type": "signup", "timestamp": "yesterday"}, "timestamp"),
    ({"event_type": "signup", "timestamp": "2001-01-01T00:00:00Z"}, "timestamp"),
    ({"event_type": "signup", "timestamp": "2999-01-01T00:00:00Z"}, "timestamp"),
    ({"event_type": "subscription_started", "properties": {}}, "properties.mrr"),
    ({"event_type": "subscription_changed", "properties": {"mrr": -1}}, "properties.mrr"),
    ({"event_type": "feature_used", "properties": {"feature": ""}}, "properties.feature"),
]


def test_it_rejects_bad_items_with_index_and_field_and_stores_nothing(
    api_server: str, ingest_key: str, engine: Engine
):
    # One server and one empty table for every case (a test per case would truncate 15 times).
    for item, field in BAD_ITEMS:
        reply = _post(api_server, ingest_key, [{"event_type": "page_view"}, item])
        assert reply.status_code == 422, item
        errors = [{"index": e["index"], "field": e["field"]} for e in reply.json()["detail"]]
        assert {"index": 1, "field": field} in errors, (item, errors)
    assert _count(engine) == 0


def test_it_answers_400_401_403_413_and_415(
    api_server: str, ingest_key: str, admin_key: str, engine: Engine
):
    assert httpx.post(f"{api_server}{URL}", json={"event_type": "x"}).status_code == 401
    bad = httpx.post(f"{api_server}{URL}", content=b"{nope", headers={"X-API-Key": ingest_key})
    assert bad.status_code == 400
    xml = httpx.post(
        f"{api_server}{URL}",
        content=b"<x/>",
        headers={"X-API-Key": ingest_key, "Content-Type": "application/xml"},
    )
    assert xml.status_code == 415
    limit = load_settings({}).max_body_bytes
    big = [{"event_type": "page_view", "properties": {"p": "x" * 10_000}}] * (limit // 10_000 + 1)
    assert _post(api_server, ingest_key, big).status_code == 413
    # admin keys ingest too
    assert _post(api_server, admin_key, {"event_type": "x"}).status_code == 202
    assert _count(engine) == 1


@pytest.fixture
def loaded(engine: Engine) -> datetime:
    """21 days of steady activity with a funnel, rolled up; returns now."""
    from tests.business_support import ev, store

    now = datetime.now(UTC).replace(microsecond=0)
    events = []
    for day in range(21):
        moment = now - timedelta(days=day, hours=1)
        for u in range(5 + day % 7):
            events.append(ev(moment, "page_view", f"u{u}", f"o{u % 3}"))
        events.append(ev(moment, "subscription_paid", "u0", "o0", revenue=10))
    start = now - timedelta(days=3)
    for u, reach in (("a", 3), ("b", 2), ("c", 1)):
        for i, step in enumerate(["signup", "form_created", "form_completed"][:reach]):
            events.append(
                ev(start + timedelta(hours=i), step, u, device="mobile" if u != "c" else "desktop")
            )
    store(engine, events)
    tz = load_settings({}).tz
    with engine.begin() as conn:
        rollup_days(
            conn, first=local_day(now, tz) - timedelta(days=70), last=local_day(now, tz), tz=tz
        )
    return now


def _get(api_server: str, key: str, path: str, **params) -> httpx.Response:
    return httpx.get(f"{api_server}{path}", params=params, headers={"X-API-Key": key}, timeout=30)


def test_it_serves_funnels_with_breakdown_and_csv(api_server: str, admin_key: str, loaded):
    path = "/api/monitoring/business/funnels"
    steps = "signup,form_created,form_completed"
    reply = _get(
        api_server, admin_key, path, steps=steps, window="1d", breakdown="device", timeRange="7d"
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert [s["users"] for s in body["steps"]] == [3, 2, 1]
    assert {b["value"]: b["steps"][0]["users"] for b in body["breakdown"]} == {
        "mobile": 2,
        "desktop": 1,
    }
    text = _get(api_server, admin_key, path, steps=steps, format="csv").text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["breakdown"] == "(all)" and rows[0]["users"] == "3"
    # the first-step filter, the modes, the trend and the time to convert (as on the page)
    mobile = _get(api_server, admin_key, path, steps=steps, window="1d", timeRange="7d",
                  where="device", where_value=["mobile", "tablet"], grain="week")  # fmt: skip
    assert mobile.status_code == 200, mobile.text
    body = mobile.json()
    assert [s["users"] for s in body["steps"]] == [2, 2, 1]
    assert body["where"] == {"property": "device", "values": ["mobile", "tablet"]}
    assert sum(t["entered"] for t in body["trend"]) == 2
    assert sum(t["converted"] for t in body["trend"]) == 1
    assert sum(b["users"] for b in body["time_to_convert"]) == 1
    any_order = _get(api_server, admin_key, path, steps="form_completed,signup", window="1d",
                     timeRange="7d", mode="any_order").json()  # fmt: skip
    assert [(s["event_type"], s["users"]) for s in any_order["steps"]] == [
        ("any 1 of 2", 3), ("any 2 of 2", 1)
    ]  # fmt: skip
    strict = _get(api_server, admin_key, path, steps="signup,form_completed", window="1d",
                  timeRange="7d", mode="strict").json()  # fmt: skip
    # form_created is no step of this funnel, so it does not break a's strict sequence
    assert strict["mode"] == "strict" and [s["users"] for s in strict["steps"]] == [3, 1]
    for params, field in (
        ({"steps": "signup"}, "steps"),
        ({"steps": steps, "window": "soon"}, "window"),
        ({"steps": steps, "mode": "random"}, "mode"),
        ({"steps": steps, "where": "device"}, "where_value"),
        ({"steps": steps, "where_value": "mobile"}, "where"),
        ({"steps": steps, "where": "dev\x00ice", "where_value": "x"}, "where"),
        ({"steps": steps, "grain": "hour"}, "grain"),
        ({"steps": steps, "timeRange": "3y"}, "timeRange"),
    ):
        bad = _get(api_server, admin_key, path, **params)
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == field


def test_it_serves_metrics_trends_anomalies_and_forecasts(api_server: str, admin_key: str, loaded):
    metrics = _get(
        api_server, admin_key, "/api/monitoring/business/metrics", timeRange="30d"
    ).json()
    cards = {c["name"]: c for c in metrics["kpis"]}
    # Revenue keeps its currency (a card per currency, as on the page): 10 a day for 21 days.
    (revenue,) = [card for name, card in cards.items() if name.startswith("revenue")]
    assert revenue["value"] == pytest.approx(210, abs=20)
    assert len(cards["dau"]["sparkline"]) >= 30
    trend = _get(
        api_server, admin_key, "/api/monitoring/analytics/trends", metrics="dau", timeRange="7d"
    )
    assert {r["metric"] for r in trend.json()["trends"]} == {"dau"}
    anomalies = _get(api_server, admin_key, "/api/monitoring/analytics/anomalies", timeRange="30d")
    assert anomalies.status_code == 200 and isinstance(anomalies.json()["anomalies"], list)
    forecast = _get(api_server, admin_key, "/api/monitoring/analytics/forecasts", format="csv")
    rows = list(csv.DictReader(io.StringIO(forecast.text)))
    assert len(rows) == 28 and {r["metric"] for r in rows} == {"dau", "revenue"}
    assert all(float(r["lower"]) <= float(r["forecast"]) <= float(r["upper"]) for r in rows)


def test_it_serves_the_whole_business_dashboard(api_server: str, admin_key: str, loaded):
    reply = _get(api_server, admin_key, "/api/monitoring/dashboard/business", timeRange="30d")
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) >= {"kpis", "trends", "mrr_movements", "retention", "churn_risk", "forecasts"}
    assert httpx.get(f"{api_server}/api/monitoring/dashboard/business").status_code == 401
