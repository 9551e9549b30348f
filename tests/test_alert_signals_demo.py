"""The templates fire on the demo data's known bad hours when tested against history.

The demo (`monitoring_core.demo`) lives through a payment provider outage on a Saturday
evening, an hour of slow database a few days ago, an hour of slow photo uploads last
Saturday afternoon, an hour of failing form submissions on a Friday evening, a search
regression still going on, and health check outages (the vendor search and payments partner
checks, one night's missing backup ping). Each template is backtested around its bad spell
and must fire inside it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import Engine, text

from monitoring_core.alerts.backtest import backtest
from monitoring_core.alerts.rules import TEMPLATES, rule_from_row
from monitoring_core.demo import load_demo_data
from monitoring_core.demo.traffic import bad_spells
from monitoring_core.schema import metadata
from tests.ui_harness import DEMO_NOW

TZ = ZoneInfo("Europe/London")
LOADED_AT = DEMO_NOW - timedelta(seconds=5)
SPELLS = bad_spells(LOADED_AT)
DAYS = 12  # back to the payment outage, the Saturday before last


def _when(spell: str) -> tuple[datetime, datetime]:
    found = SPELLS[spell]
    return _aware(found.start), _aware(found.end)


def _aware(moment: np.datetime64) -> datetime:
    return datetime.fromisoformat(str(moment.astype("datetime64[s]"))).replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def demo(session_engine: Engine) -> Engine:
    """The session database with DAYS of demo data (later demo modules load or restore theirs)."""
    with session_engine.begin() as conn:
        names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    load_demo_data(session_engine, days=DAYS, now=LOADED_AT, only_if_empty=False)
    return session_engine


def _fired(engine: Engine, name: str, start: datetime, end: datetime) -> list[dict]:
    rule = rule_from_row({"id": 0, **TEMPLATES[name]})
    with engine.connect() as conn:
        return backtest(conn, rule, start=start, end=end, tz=TZ)["fired"]


@pytest.mark.parametrize("name", ["high_error_rate", "payment_failures"])
def test_error_rate_templates_fire_in_the_payment_outage(demo: Engine, name: str) -> None:
    start, end = _when("payment_outage")
    fired = _fired(demo, name, start - timedelta(hours=2), end + timedelta(hours=2))
    payments = [f for f in fired if f["alert_key"] in ("service=payments", "")]
    assert payments, f"{name} did not fire in the payment outage"
    assert all(start <= f["time"] <= end + timedelta(minutes=15) for f in payments), fired


def test_slow_response_time_fires_in_the_slow_database_hour(demo: Engine) -> None:
    start, end = _when("slow_database")
    fired = _fired(demo, "slow_response_time", start - timedelta(hours=3), end + timedelta(hours=3))
    assert fired and all(start < f["time"] <= end for f in fired), fired


@pytest.mark.parametrize(
    ("name", "check", "hours_ago"),
    [
        ("service_unavailable", "Vendor search", 50),
        ("service_unavailable", "Payments partner", 20),
        ("heartbeat_missing", "Nightly backup", 30),
    ],
)
def test_check_templates_fire_in_the_check_outages(
    demo: Engine, name: str, check: str, hours_ago: int
) -> None:
    outage = DEMO_NOW - timedelta(hours=hours_ago)
    fired = _fired(demo, name, outage - timedelta(hours=1), outage + timedelta(hours=2))
    keys = {f["alert_key"] for f in fired if outage <= f["time"] <= outage + timedelta(hours=1)}
    assert f"check={check}" in keys


def test_performance_regression_fires_on_the_search_release(demo: Engine) -> None:
    start, _end = _when("search_regression")
    fired = _fired(demo, "performance_regression", start, LOADED_AT)
    # what the Performance page flags: the search release, and noisier quiet endpoints too
    assert "endpoint=/api/suppliers/search" in {f["alert_key"] for f in fired}


def _status_at(events: list[dict], moment: datetime) -> str | None:
    """The unkeyed alert's status at `moment` from the backtest's transitions."""
    before = [e for e in events if e["alert_key"] == "" and e["time"] <= moment]
    return before[-1]["to_status"] if before else None


def _events(engine: Engine, name: str, start: datetime, end: datetime) -> list[dict]:
    rule = rule_from_row({"id": 0, **TEMPLATES[name]})
    with engine.connect() as conn:
        return backtest(conn, rule, start=start, end=end, tz=TZ)["events"]


def test_photo_upload_latency_holds_through_the_photo_slowdown(demo: Engine) -> None:
    start, end = _when("photo_slowdown")
    events = _events(
        demo, "photo_upload_latency", start - timedelta(hours=1), end + timedelta(hours=1)
    )
    # window (10 min) + for (5 min) after the start, the alert is firing until the spell ends
    settled = start + timedelta(minutes=15)
    steps = [
        settled + timedelta(minutes=m) for m in range(int((end - settled).total_seconds() // 60))
    ]
    assert all(_status_at(events, at) == "firing" for at in steps), events
    # and clears once the slow uploads leave the 10-minute window
    cleared = [e for e in events if e["to_status"] == "resolved" and e["time"] > end]
    assert cleared and cleared[0]["time"] <= end + timedelta(minutes=15), events


def test_form_submission_success_fires_in_the_form_failures_only(demo: Engine) -> None:
    start, end = _when("form_failures")
    events = _events(
        demo, "form_submission_success", start - timedelta(hours=1), end + timedelta(hours=1)
    )
    fired = [e for e in events if e["notify"] == "firing"]
    # for 10 minutes after the first failures, then until the 15-minute window holds none
    assert fired and all(start < e["time"] <= end for e in fired), events
    settled = start + timedelta(minutes=15)
    steps = [
        settled + timedelta(minutes=m) for m in range(int((end - settled).total_seconds() // 60))
    ]
    assert all(_status_at(events, at) == "firing" for at in steps), events
    assert _status_at(events, end + timedelta(minutes=20)) == "resolved", events
