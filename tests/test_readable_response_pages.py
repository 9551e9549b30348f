"""Readable everywhere (#18 item 7) on Overview, Performance, Resources and the Alert page:
headers in words, milliseconds with thousands separators, a ratio as a percentage, Web Vitals
ratings and devices in words, Plotly's days as `27 Nov`, and who acted without `user:`
(the alert page's helpers are tests/test_alert_page.py's)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import Engine, text
from streamlit.testing.v1 import AppTest

from monitoring_core.demo import business as business_demo
from monitoring_core.demo import loader_rng
from monitoring_core.enums import Role
from monitoring_core.schema import metadata
from tests.alerting_support import Receiver, webhook_receiver
from tests.test_alert_page import _firing_alert, _open
from tests.ui_harness import DEMO_NOW, USER_KEY, table_with
from ui import charts
from ui.resource_charts import DATABASE, latest_text, long_frame

AppFactory = Callable[[Role | None], AppTest]
LONDON = ZoneInfo("Europe/London")


def _labels(at: AppTest, column: str) -> dict[str, dict[str, Any]]:
    """The column settings (label, number format) of the one table holding `column`."""
    (table,) = [t for t in at.dataframe if column in t.value.columns]
    return dict(json.loads(table.proto.columns))


def test_the_overview_names_its_columns_and_separates_thousands(
    demo_engine: Engine, logged_in_app: AppFactory
) -> None:
    at = logged_in_app(Role.VIEWER).run()
    assert not at.exception, at.exception
    config = _labels(at, "p95")
    assert [config[c]["label"] for c in ("method", "endpoint", "requests")] == [
        "Method", "Endpoint", "Requests"
    ]  # fmt: skip
    for column in ("p50", "p95", "p99"):  # `7,117`, not `7117`
        assert config[column]["label"] == f"{column} (ms)"
        assert config[column]["type_config"]["format"] == "localized"
        assert config[column]["type_config"]["step"] == 1
    (reasons,) = at.text
    assert reasons.value[:1].isupper()  # `Degraded: …` or `None`, never `degraded: …`
    line = next(m.value for m in at.markdown if m.value.startswith("Overall health"))
    assert "+00:00" not in line and "today 14:00" in line  # the demo's now, in words


def test_performance_milliseconds_have_thousands_separators(
    demo_engine: Engine, logged_in_app: AppFactory
) -> None:
    at = logged_in_app(Role.VIEWER).run()
    at.switch_page("pages/performance.py").run()
    assert not at.exception, at.exception
    endpoints = _labels(at, "rpm")
    for column in ("p50", "p95", "p99"):
        assert endpoints[column]["type_config"]["format"] == "localized"
        assert endpoints[column]["type_config"]["step"] == 1
    regressions = _labels(at, "baseline_p95")
    assert regressions["baseline_p95"]["label"] == "Usual p95 (ms)"
    assert regressions["baseline_p95"]["type_config"]["format"] == "localized"
    at.segmented_control(key="perf_section").set_value("Web Vitals").run()
    assert not at.exception, at.exception
    vitals = _labels(at, "mobile")
    assert vitals["mobile"]["label"] == "Mobile p75 (ms)"
    assert vitals["mobile"]["type_config"]["format"] == "localized"
    assert any("good ≤ 2,500 ms, poor > 4,000 ms" in c.value for c in at.caption)


def test_web_vitals_ratings_and_devices_read_as_words() -> None:
    shares = pd.DataFrame(
        {"name": ["LCP", "LCP"], "device_type": ["mobile", "desktop"],
         "good_share": [0.5, 0.8], "needs_improvement_share": [0.3, 0.15],
         "poor_share": [0.2, 0.05]}
    )  # fmt: skip
    fig = charts.vitals_shares_figure(shares, "LCP")
    assert [t.name for t in fig.data] == ["Good", "Needs improvement", "Poor"]
    assert list(fig.data[0].y) == ["Desktop", "Mobile"]
    assert fig.layout.legend.traceorder == "normal"  # listed as they stack, Good first
    vitals = shares.assign(page_route="/", p75=[3100.0, 2200.0])
    p75 = charts.vitals_p75_figure(vitals, "LCP", 2500, 4000)
    assert [t.name for t in p75.data] == ["Desktop", "Mobile"]
    assert "ms" in p75.data[0].hovertemplate and ",.0f" in p75.data[0].hovertemplate


def test_plotly_time_axes_say_days_the_british_way_and_hover_on_the_24_hour_clock() -> None:
    buckets = pd.date_range("2026-11-26", periods=4, freq="D", tz="UTC")
    trend = pd.DataFrame(
        {"bucket": buckets, "p50": [80.0] * 4, "p95": [700.0] * 4, "requests": [1000] * 4,
         "error_rate": [0.01] * 4}
    )  # fmt: skip
    for fig in (
        charts.latency_figure(trend, LONDON),
        charts.traffic_figure(trend, timedelta(days=1), LONDON),
    ):
        hours, days = fig.layout.xaxis.tickformatstops
        assert days.value == "%-d %b" and days.dtickrange[0] == 86_400_000  # `27 Nov`
        assert hours.value == "%H:%M<br>%-d %b" and hours.dtickrange[1] == 86_400_000
        assert fig.layout.xaxis.hoverformat == "%a %-d %b %H:%M"
    traffic = charts.traffic_figure(trend, timedelta(days=1), LONDON)
    assert [t.name for t in traffic.data] == ["Requests/min", "5xx error rate (%)"]


def test_the_cache_hit_ratio_is_a_percentage() -> None:
    chart = next(c for c in DATABASE if c.metric == "db_cache_hit_ratio")
    frame = pd.DataFrame(
        {"bucket": pd.to_datetime(["2026-06-10 12:00"], utc=True), "database": ["monitoring"],
         "value": [0.9534]}
    )  # fmt: skip
    points = long_frame(frame, chart, LONDON)
    assert chart.unit == "%" and points["value"].tolist() == pytest.approx([95.34])
    assert latest_text(points, chart.unit) == "monitoring: 95.34 %"


def test_a_point_without_its_dimension_is_named_as_its_chart() -> None:
    chart = next(c for c in DATABASE if c.metric == "db_connections")
    frame = pd.DataFrame(
        {"bucket": pd.to_datetime(["2026-06-10 12:00"], utc=True), "database": [""],
         "value": [34.0]}
    )  # fmt: skip
    assert long_frame(frame, chart, LONDON)["series"].tolist() == ["Connections"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as found:
        yield found


def test_the_alert_history_says_who_acted_without_the_stored_prefix(
    engine: Engine, logged_in_app: AppFactory, receiver: Receiver
) -> None:
    instance_id = _firing_alert(engine, receiver)
    at = _open(logged_in_app, Role.RESPONDER, str(instance_id))
    at.button(key="alert_ack").click().run()
    assert not at.exception, at.exception
    history = table_with(at, "When", "Change", "By")
    me = at.session_state[USER_KEY].username
    assert list(history["By"]) == [me, "—"]  # acknowledged by me; fired by nobody named
    assert not any(":" in who for who in history["By"])  # no `user:…`


@pytest.fixture(scope="module")
def business_engine(session_engine: Engine) -> Engine:
    """Only the business demo, as tests/test_business_pages.py loads it."""
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with session_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        business_demo.load(conn, days=8, now=DEMO_NOW - timedelta(seconds=5),
                           rng=loader_rng(business_demo))  # fmt: skip
    return session_engine


def test_funnels_and_business_tables_read_in_words(
    business_engine: Engine, logged_in_app: AppFactory
) -> None:
    at = logged_in_app(Role.VIEWER)
    at.session_state["time_range"] = "90d"
    at.run()
    at.switch_page("pages/funnels.py").run()
    assert not at.exception, at.exception
    steps = table_with(at, "Breakdown", "Step", "Event")
    assert set(steps["Breakdown"]) == {"All"}  # not the stored `(all)`
    trend = table_with(at, "Converted", "Complete")
    assert set(trend["Complete"]) <= {"Complete", "Still converting"} | {
        s for s in trend["Complete"] if s.startswith("Partial (")
    }
    assert at.selectbox(key="funnel_breakdown").format_func("user type") == "User type"
    at.switch_page("pages/business.py").run()
    assert not at.exception, at.exception
    anomalies = table_with(at, "KPI", "Direction")
    assert set(anomalies["Direction"]) <= {"Above usual", "Below usual"}
