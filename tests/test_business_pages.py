"""The Business and Funnels pages through AppTest on the business demo data; CSV export."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text
from streamlit.testing.v1 import AppTest

from monitoring_core.business.export import to_csv
from monitoring_core.demo import business as business_demo
from monitoring_core.demo import loader_rng
from monitoring_core.enums import Role
from monitoring_core.schema import metadata
from tests.ui_harness import DEMO_NOW, table_with

SECTIONS = ("kpis", "revenue", "features", "retention")  # pages/business.py, in order

AppFactory = Callable[[Role | None], AppTest]
LONDON = ZoneInfo("Europe/London")


@pytest.fixture(scope="module")
def business_engine(session_engine: Engine) -> Engine:
    """Only the business demo (10 weeks, the short form), loaded once for the module."""
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    now = DEMO_NOW - timedelta(seconds=5)  # the page's clock stands at DEMO_NOW
    with session_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        business_demo.load(conn, days=8, now=now, rng=loader_rng(business_demo))
    return session_engine


def test_it_writes_csv_with_a_header_and_defuses_formulas():
    rows = [{"day": date(2026, 6, 6), "name": "=HYPERLINK(1)", "tags": ["a", "b"], "n": 1.5}]
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert parsed == [{"day": "2026-06-06", "name": "'=HYPERLINK(1)", "tags": "a; b", "n": "1.5"}]
    assert to_csv([], ["a", "b"]) == "a,b\n"


def test_it_shows_the_business_page_to_a_viewer(
    business_engine: Engine, logged_in_app: AppFactory
) -> None:
    at = logged_in_app(Role.VIEWER).run()
    at.switch_page("pages/business.py")
    at.query_params["tables"] = "1"  # the tables under the charts too
    at.run()

    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value == "Business"
    cards = {m.label: m.value for m in at.metric}
    assert {"DAU (avg)", "WAU", "MAU", "MRR", "Customer churn rate", "Signups"} <= set(cards)
    assert cards["MRR"].startswith("£") and cards["DAU (avg)"] != "–"
    tables, downloads = [], 0
    for section in SECTIONS:  # one section drawn at a time, each named in the URL
        at.segmented_control(key="biz_section").set_value(section).run()
        assert not at.exception and at.query_params.get("section", "kpis") == section
        assert {m.label for m in at.metric} == set(cards)  # the cards stay on top
        tables += [df.value for df in at.dataframe]
        downloads += len(at.get("download_button"))
    assert len(tables) >= 8  # trends, MRR, adoption, ramp, segments, retention, risk, anomalies…
    risk = next(t for t in tables if "Reasons" in t.columns)
    assert len(risk) > 0 and risk["Score"].is_monotonic_decreasing
    assert downloads == len(tables)


def _figures(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _trace(figures: list[dict[str, Any]], name: str, title: str | None = None) -> dict[str, Any]:
    found = [
        trace
        for fig in figures
        if title is None or fig["layout"].get("title", {}).get("text") == title
        for trace in fig["data"]
        if trace.get("name") == name
    ]
    assert found, f"no trace {name!r}"
    return found[0]


@pytest.mark.parametrize("time_range", ["7d", "90d"])
def test_it_draws_complete_days_in_order_with_conventional_colours(
    business_engine: Engine, logged_in_app: AppFactory, time_range: str
) -> None:
    at = logged_in_app(Role.VIEWER)
    at.session_state["time_range"] = time_range
    at.run()
    at.switch_page("pages/business.py")
    at.query_params["tables"] = "1"
    at.run()

    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    days = int(time_range[:-1])
    today = DEMO_NOW.astimezone(LONDON).date()
    trends = table_with(at, "Day", "Daily active users")
    # "7d" is exactly the 7 complete days before today; today is not in it
    assert list(trends["Day"]) == [today - timedelta(days=d) for d in range(days, 0, -1)]
    at.query_params["section"] = "revenue"  # a link to the section opens it
    at.run()
    figures = _figures(at)
    # the forecast's actual line runs in date order, then the forecast and its band follow it
    for metric in ("Daily active users", "Revenue"):
        actual = _trace(figures, "Actual", metric)
        xs = [date.fromisoformat(x[:10]) for x in actual["x"]]
        assert xs == sorted(xs) and len(xs) == len(set(xs)) and xs[-1] == today - timedelta(days=1)
        forecast = _trace(figures, "Forecast", metric)
        assert date.fromisoformat(forecast["x"][1][:10]) == today
        band = _trace(figures, "95 % band", metric)
        assert band["fill"] == "tonexty" and len(band["x"]) == 14
    # MRR: churn red, new and reactivation green
    assert _trace(figures, "Churn")["marker"]["color"] == "#d62728"
    assert _trace(figures, "New")["marker"]["color"] == "#2ca02c"
    assert _trace(figures, "Reactivation")["marker"]["color"] == "#1a9850"
    assert all(v <= 0 for v in _trace(figures, "Churn")["y"])
    at.segmented_control(key="biz_section").set_value("retention").run()
    # the retention grid ends with the last complete week: no cell in the current week
    monday = today - timedelta(days=today.weekday())
    grid = table_with(at, "cohort", "week_0")
    for _, row in grid.iterrows():
        weeks = [c for c in grid.columns if c.startswith("week_") and row[c] == row[c]]
        last_week = row["cohort"] + timedelta(weeks=int(weeks[-1][5:]))
        assert last_week < monday
    assert max(grid["cohort"]) == monday - timedelta(weeks=1)


def test_it_adds_today_dashed_and_keeps_choices_in_the_url(
    business_engine: Engine, logged_in_app: AppFactory
) -> None:
    at = logged_in_app(Role.VIEWER)
    at.session_state["time_range"] = "7d"
    at.run()
    at.switch_page("pages/business.py")
    at.query_params.update(
        {"today": "1", "kpis": "signups,mau", "segment": "device", "tables": "1"}
    )
    at.run()

    assert not at.exception
    assert at.toggle(key="biz_today").value is True
    assert at.multiselect(key="biz_trend").value == ["signups", "mau"]
    at.segmented_control(key="biz_section").set_value("features").run()
    assert at.selectbox(key="biz_segment").value == "device"
    at.segmented_control(key="biz_section").set_value("kpis").run()
    assert "section" not in at.query_params  # the first section is the clean address
    today = DEMO_NOW.astimezone(LONDON).date()
    trends = table_with(at, "Day", "Signups")
    assert len(trends) == 8 and trends["Day"].iloc[-1] == today
    assert list(trends["Partial"]) == [""] * 7 + ["today so far"]
    dashed = _trace(_figures(at), "Signups (today so far)")
    assert dashed["line"]["dash"] == "dash"
    # the cards still compare complete days: today is only in their help text
    card = next(m for m in at.metric if m.label == "Signups")
    assert "vs prior 7 days" in str(card.proto.delta) and "Today so far" in card.help

    at.toggle(key="biz_today").set_value(False).run()
    assert len(table_with(at, "Day", "Signups")) == 7
    at.segmented_control(key="biz_section").set_value("retention").run()
    at.selectbox(key="biz_returning").select("form_completed").run()
    assert not at.exception
    assert "today" not in at.query_params
    assert at.query_params["returning"] == "form_completed"
    # without the tables, the charts' CSVs are still there
    at.toggle(key="biz_tables").set_value(False).run()
    keys = [b.proto.id for b in at.get("download_button")]
    for section in ("kpis", "revenue"):
        at.segmented_control(key="biz_section").set_value(section).run()
        assert not [df for df in at.dataframe if "Signups" in df.value.columns]
        keys += [b.proto.id for b in at.get("download_button")]
    for name in ("business_trends", "mrr_movements", "retention", "forecasts", "churn_risk"):
        assert any(f"csv_{name}" in k for k in keys), name


def test_it_shows_a_funnel_with_the_mobile_drop_off(
    business_engine: Engine, logged_in_app: AppFactory
) -> None:
    at = logged_in_app(Role.VIEWER)
    at.session_state["time_range"] = "90d"  # every signup of the 10 demo weeks
    at.run()
    at.switch_page("pages/funnels.py").run()

    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    assert int(at.metric[0].value.replace(",", "")) > 0
    at.selectbox(key="funnel_breakdown").select("device").run()
    assert not at.exception
    rows = at.dataframe[0].value
    completed = rows[rows["Event"] == "Form completed"].set_index("Breakdown")
    # Mobile owners abandon their first form far more often than desktop owners (the demo's
    # known drop-off).
    assert (
        completed.loc["Mobile", "From previous step"]
        < completed.loc["Desktop", "From previous step"]
    )
    assert at.query_params["breakdown"] == "device"


def test_it_opens_the_funnel_a_link_names_and_lists_who_dropped_off(
    business_engine: Engine, logged_in_app: AppFactory
) -> None:
    at = logged_in_app(Role.VIEWER)
    at.session_state["time_range"] = "90d"
    at.run()
    at.switch_page("pages/funnels.py")
    at.query_params.update(
        {"steps": "signup,form_created,form_completed", "mode": "any_order", "window": "7",
         "where": "user type", "is": "supplier", "drop": "3"}
    )  # fmt: skip
    at.run()

    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.multiselect(key="funnel_steps").value == ["signup", "form_created", "form_completed"]
    assert at.segmented_control(key="funnel_mode").value == "any_order"
    assert at.selectbox(key="funnel_window").value == 7
    assert at.multiselect(key="funnel_where_values").value == ["supplier"]
    steps = at.dataframe[0].value
    assert list(steps["Event"]) == ["Any 1 of 3", "Any 2 of 3", "Any 3 of 3"]
    # The people who did two of the three steps but not the third, with their ids and a CSV.
    people = next(df.value for df in at.dataframe if "User" in df.value.columns)
    dropped = int(steps.loc[steps["Step"] == 3, "Dropped off"].iloc[0])
    assert len(people) == min(dropped, 5000) > 0
    assert people["User"].str.startswith("user_").all()
    csv_keys = [b.proto.id for b in at.get("download_button")]
    assert any("funnel_dropped_before_step_3" in k for k in csv_keys)
    assert "Time to convert" in [t.label for t in at.tabs]

    # A different step and order go back into the URL.
    at.segmented_control(key="funnel_mode").set_value("strict").run()
    at.selectbox(key="funnel_drop").select(2).run()
    assert not at.exception
    assert (at.query_params["mode"], at.query_params["drop"]) == ("strict", "2")
    assert at.query_params["steps"] == "signup,form_created,form_completed"
