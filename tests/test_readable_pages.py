"""Readable everywhere (#18 item 7) on the Settings, Dashboards, Performance and Resources
pages: ids become names, identifiers words, raw timestamps and JSON text become times in words
and sentences, numbers get their unit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from monitoring_core import accounts, dashboards
from monitoring_core.enums import Role
from monitoring_core.ingest.points import MetricPoint, store_points
from monitoring_core.rollups import run_rollups
from tests.ui_harness import table_with
from ui import fmt
from ui.account_admin import key_rows, user_rows

pytestmark = pytest.mark.clock

AppFactory = Callable[[Role | None], AppTest]
LONDON = ZoneInfo("Europe/London")


def _settings(logged_in_app: AppFactory, tab: str) -> AppTest:
    at = logged_in_app(Role.ADMIN)
    at.run()
    at.switch_page("pages/settings.py")
    at.query_params["tab"] = tab
    return at.run()


def test_escalation_policies_read_as_steps_with_names(
    demo_engine: Engine, logged_in_app: AppFactory
) -> None:
    at = _settings(logged_in_app, "Escalation policies")
    assert not at.exception, at.exception
    policies = table_with(at, "Policy", "Steps")
    assert list(policies.columns) == ["Policy", "Steps", "Repeats", "On Saturdays"]
    by_name = policies.set_index("Policy")
    assert by_name.loc["Default", "Steps"] == (
        "at once: Local webhook, on call in Primary; after 15 min: Local webhook; "
        "after 1 h: Local webhook"
    )
    assert by_name.loc["Wedding day", "On Saturdays"] == "Yes"
    assert not any("{" in s or "after_minutes" in s for s in policies["Steps"])


def test_api_keys_and_users_read_in_words(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn:
        accounts.create_user(
            conn, username="jo", password="a long pass phrase", role=Role.RESPONDER
        )
        people = accounts.list_users(conn)
        row, _key = accounts.add_api_key(
            conn, name="browser", scope="browser", actor="t", now=now,
            allowed_origins=["https://shop.example"], rate_limit_per_minute=0,
            expires_at=now + timedelta(days=30),
        )  # fmt: skip
        accounts.revoke_api_key(conn, key_id=row["id"], actor="t", now=now - timedelta(hours=1))
        keys = accounts.list_api_keys(conn)
    (user,) = user_rows(people, LONDON, now)
    assert user == {"Id": user["Id"], "User": "jo", "Role": "Responder", "Active": "Yes",
                    "Last sign-in": "never"}  # fmt: skip
    (key,) = key_rows(keys, LONDON, now)
    assert {k: v for k, v in key.items() if k not in ("Id", "Prefix")} == {
        "Key": "browser",
        "Scope": "Browser",
        "Requests/min": "unlimited",
        "Points/min": "default",
        "Origins": "https://shop.example",
        "Expires": fmt.when(now + timedelta(days=30), LONDON, now),
        "Last used": "never",
        "Status": f"Revoked {fmt.when(now - timedelta(hours=1), LONDON, now)}",
    }


def test_the_keys_and_users_section_draws_those_rows(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    at = _settings(logged_in_app, "API keys and users")
    assert not at.exception, at.exception
    users = table_with(at, "User", "Last sign-in")
    assert not users.empty and set(users["Active"]) == {"Yes"}
    assert not any("+00:00" in str(v) for v in users["Last sign-in"])


def _push(engine: Engine, now: datetime) -> None:
    """An hour of queue depths, the newest ten minutes at the hour's maximum: the table's
    latest bucket holds 22.12 however the chart's buckets fall against `now` (a bucket of
    one minute, or of five starting at 01:00 with `now` at 01:01, holds only minute 1)."""
    points = [
        MetricPoint("queue_depth", (22.0 if minute < 10 else 20.0 + minute % 3) + 0.123456789,
                    now - timedelta(minutes=minute), {"job": "worker2"}, "prometheus")
        for minute in range(1, 60)
    ]  # fmt: skip
    with engine.begin() as conn:
        store_points(conn, points)
    run_rollups(engine, datetime.now(tz=LONDON), safety_lag=timedelta(0))


def test_a_dashboard_says_its_panels_times_and_aggregations_in_words(
    engine: Engine, logged_in_app: AppFactory, now: datetime
) -> None:
    _push(engine, now)
    panel = {"title": "Queue", "metric": "queue_depth", "aggregation": "max", "group_by": [],
             "filters": {}, "chart": "stat"}  # fmt: skip
    with engine.begin() as conn:
        board = dashboards.save_dashboard(
            conn, dashboard_id=None, name="Queues", team="", actor="r", role="responder",
            now=now - timedelta(minutes=5), panels=[panel, {**panel, "chart": "table"}],
        )  # fmt: skip
    at = logged_in_app(Role.VIEWER)
    at.query_params["dashboard"] = str(board)
    at = at.run().switch_page("pages/dashboards.py").run()
    assert not at.exception, at.exception
    changed = fmt.when(now - timedelta(minutes=5), LONDON, now)
    assert any(
        c.value.startswith(f"2 panels · changed {fmt.md_escape(changed)}") for c in at.caption
    )
    (stat,) = at.metric
    assert stat.label == "Maximum" and stat.value == "22.12"  # 4 significant digits
    latest = at.dataframe[0].value
    assert latest.index.name == "Series" and list(latest["Latest"]) == ["22.12"]


def test_web_vitals_name_their_page_column(demo_engine: Engine, logged_in_app: AppFactory) -> None:
    at = logged_in_app(Role.VIEWER).run()
    at.switch_page("pages/performance.py")
    at.query_params["section"] = "vitals"
    at.run()
    assert not at.exception, at.exception
    vitals = table_with(at, "mobile", "desktop")
    assert vitals.index.name == "Page"


def test_resource_charts_say_latest_values_with_units_and_clock_times() -> None:
    from ui.resource_charts import CLOCK_LABELS, latest_text, line_spec

    t = pd.to_datetime(["2026-06-06 10:00", "2026-06-06 10:01"])
    points = pd.DataFrame({"time": t, "series": ["eth0", "eth0"], "value": [1.0, 12_345.678]})
    assert latest_text(points, "B/s") == "eth0: 12.3 KB/s"
    assert latest_text(points.assign(value=[1.0, 38.8049]), "%") == "eth0: 38.8 %"
    assert line_spec("%")["encoding"]["x"]["axis"]["labelExpr"] == CLOCK_LABELS
    assert "%H:%M" in CLOCK_LABELS and "%-d %b" in CLOCK_LABELS  # 24-hour clock, days named
