"""Issue 12 item 10 on the Read API: `/api/monitoring/business/metrics` gives the same account as
the Business page — exactly N days, deltas of complete periods, today apart and marked
partial. The API answers on the real clock, so the data is laid out around `real_now`."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine, insert

from monitoring_core.business.definitions import local_day
from monitoring_core.config import load_settings
from monitoring_core.schema import business_metrics_daily

PATH = "/api/monitoring/business/metrics"


def _seed(engine: Engine, today: date) -> None:
    """Ten steady weeks (DAU 100, 10 signups a day) and a partial today (DAU 5, 1 signup)."""
    rows = [
        {"day": today - timedelta(days=n), "metric_name": name, "value": value}
        for n in range(1, 70)
        for name, value in (("dau", 100.0), ("signups", 10.0))
    ]
    rows += [
        {"day": today, "metric_name": "dau", "value": 5.0},
        {"day": today, "metric_name": "signups", "value": 1.0},
    ]
    with engine.begin() as conn:
        conn.execute(insert(business_metrics_daily), rows)


def _get(api_server: str, key: str, **params: str) -> httpx.Response:
    return httpx.get(api_server + PATH, params=params, headers={"X-API-Key": key}, timeout=30)


def test_deltas_compare_complete_periods_and_today_is_apart(
    api_server: str, admin_key: str, engine: Engine, real_now: datetime
) -> None:
    today = local_day(real_now, load_settings({}).tz)
    _seed(engine, today)
    reply = _get(api_server, admin_key, timeRange="7d", metrics="dau,signups")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    if body["partial_day"] != today.isoformat():
        pytest.skip("the business day changed during the test; run it again")
    cards = {c["name"]: c for c in body["kpis"]}
    # Seven complete days against the seven before: steady, no cliff from today's few hours.
    assert cards["signups"]["value"] == 70 and cards["signups"]["previous"] == 70
    assert cards["signups"]["delta"] == 0
    assert cards["dau"]["value"] == 100 and cards["dau"]["delta"] == 0
    assert cards["signups"]["today"] == 1 and cards["dau"]["today"] == 5
    assert cards["dau"]["sparkline"] == [100.0] * 7  # today is not in the sparkline
    assert body["complete_period"] == {
        "first": (today - timedelta(days=7)).isoformat(),
        "last": (today - timedelta(days=1)).isoformat(),
    }
    # The range is exactly 7 days, today included and marked partial.
    dau = [r for r in body["series"] if r["metric"] == "dau"]
    assert [r["day"] for r in dau] == [
        (today - timedelta(days=6 - n)).isoformat() for n in range(7)
    ]
    assert [r["partial"] for r in dau] == [False] * 6 + [True]
    assert dau[-1]["value"] == 5


def test_thirty_days_are_thirty_days_in_json_and_csv(
    api_server: str, admin_key: str, engine: Engine, real_now: datetime
) -> None:
    today = local_day(real_now, load_settings({}).tz)
    _seed(engine, today)
    body = _get(api_server, admin_key, timeRange="30d", metrics="signups").json()
    assert body["period"]["first"] == (today - timedelta(days=29)).isoformat()
    assert len(body["series"]) == 30
    signups = {c["name"]: c for c in body["kpis"]}["signups"]
    assert signups["value"] == 300 and signups["delta"] == 0
    text = _get(api_server, admin_key, timeRange="30d", metrics="signups", format="csv").text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 30 and [r["partial"] for r in rows][-2:] in (
        ["False", "True"],
        ["false", "true"],
    )


def test_a_range_ending_before_today_has_no_partial_day(
    api_server: str, admin_key: str, engine: Engine, real_now: datetime
) -> None:
    today = local_day(real_now, load_settings({}).tz)
    _seed(engine, today)
    end = (real_now - timedelta(days=3)).isoformat()
    start = (real_now - timedelta(days=10)).isoformat()
    body = _get(api_server, admin_key, **{"from": start, "to": end, "metrics": "signups"}).json()
    assert body["partial_day"] is None
    assert body["complete_period"] == body["period"]
    assert not any(r["partial"] for r in body["series"])
    signups = {c["name"]: c for c in body["kpis"]}["signups"]
    assert signups["today"] is None and signups["delta"] == 0
