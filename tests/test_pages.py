"""The UI through streamlit.testing.v1.AppTest: sign-in, roles, and each page on demo data."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from monitoring_core.enums import Role
from tests.ui_harness import DEMO_NOW, PASSWORD, USER_KEY, make_user, table_with

AppFactory = Callable[[Role | None], AppTest]


def _sign_in(at: AppTest, username: str, password: str) -> AppTest:
    at.text_input(key="login_username").input(username)
    at.text_input(key="login_password").input(password)
    return at.button[0].click().run()


def _health_line(at: AppTest) -> str:
    """The overview's "Overall health: … requests in the range (…)" line."""
    return next(m.value for m in at.markdown if m.value.startswith("Overall health"))


def _messages(at: AppTest) -> str:
    return " ".join(str(e.value) for e in [*at.error, *at.warning, *at.info, *at.success])


def test_it_refuses_a_wrong_password(session_engine: Engine, logged_in_app: AppFactory) -> None:
    with session_engine.begin() as conn:
        user = make_user(conn, Role.ADMIN)
    at = logged_in_app(None).run()
    assert [t.value for t in at.title] == ["Wedding platform monitoring"]

    _sign_in(at, user.username, PASSWORD + "x")

    assert not at.exception
    assert "Wrong username or password" in _messages(at)
    assert USER_KEY not in at.session_state
    assert [t.value for t in at.title] == ["Wedding platform monitoring"]


def test_it_signs_in_with_the_right_password(
    session_engine: Engine, logged_in_app: AppFactory
) -> None:
    with session_engine.begin() as conn:
        user = make_user(conn, Role.RESPONDER)
    at = logged_in_app(None).run()

    _sign_in(at, user.username, PASSWORD)

    assert not at.exception
    assert at.session_state[USER_KEY].role == Role.RESPONDER
    assert [t.value for t in at.title] == ["Overview"]


def test_it_signs_out(logged_in_app: AppFactory) -> None:
    at = logged_in_app(Role.VIEWER).run()
    at.button(key="logout").click().run()
    assert USER_KEY not in at.session_state
    assert [t.value for t in at.title] == ["Wedding platform monitoring"]


def test_it_shows_the_overview_with_real_numbers(
    demo_engine: Engine, logged_in_app: AppFactory
) -> None:
    at = logged_in_app(Role.VIEWER).run()

    assert not at.exception
    assert not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Request rate"].endswith("/min") and metrics["Request rate"] != "—"
    assert metrics["Error rate (5xx)"].endswith("%")
    assert all(metrics[f"{p} latency"] != "—" for p in ("p50", "p95", "p99"))
    assert "Healthy" in _health_line(at) or "Degraded" in _health_line(at)
    slow = table_with(at, "p95", "error_rate")
    assert len(slow) == 10
    assert slow["p95"].is_monotonic_decreasing and slow["p95"].iloc[0] > 500


def test_it_shows_performance_tables_and_the_regression(
    demo_engine: Engine, logged_in_app: AppFactory
) -> None:
    at = logged_in_app(Role.VIEWER).run()
    at.switch_page("pages/performance.py").run()

    assert not at.exception
    assert not at.error, _messages(at)
    regressions = table_with(at, "p95_last_hour", "baseline_p95")
    endpoints = table_with(at, "rpm", "p50")
    # The demo's supplier-search release of 100 minutes ago is slower than the same hour
    # last week.
    assert "/api/suppliers/search" in set(regressions["endpoint"])
    assert len(endpoints) == 22
    assert (endpoints["p50"] <= endpoints["p95"]).all()
    assert (endpoints["p95"] <= endpoints["p99"]).all()
    at.segmented_control(key="perf_section").set_value("Web Vitals").run()  # ?section=vitals
    assert not at.exception and at.query_params["section"] == "vitals"
    vitals = table_with(at, "mobile", "desktop")
    assert {"mobile", "desktop", "tablet"} <= set(vitals.columns)
    assert (vitals["mobile"] > vitals["desktop"]).mean() > 0.8  # LCP p75 is worse on phones
    at.segmented_control(key="perf_section").set_value("Endpoints").run()

    # the endpoints charted are in the address (?ep=…&ep=…), and a link opens them
    other = sorted(set(endpoints["endpoint"]))[0]
    at.multiselect(key="perf_eps").set_value([other]).run()
    assert at.query_params["ep"] in (other, [other])
    link = logged_in_app(Role.VIEWER)
    link.query_params["ep"] = other
    link = link.run().switch_page("pages/performance.py").run()
    assert link.multiselect(key="perf_eps").value == [other]


def _requests_in_range(at: AppTest) -> int:
    line = _health_line(at)
    return int(line.split(" requests in the range")[0].split()[-1].replace(",", ""))


def test_it_reads_the_time_range_from_the_sidebar(
    demo_engine: Engine, logged_in_app: AppFactory
) -> None:
    at = logged_in_app(Role.VIEWER).run()
    one_day = _requests_in_range(at)

    at.button_group(key="time_range").set_value("7d").run()

    assert not at.exception
    assert 5 * one_day < _requests_in_range(at) < 9 * one_day


def test_it_refreshes_the_page_only_when_asked(logged_in_app: AppFactory) -> None:
    at = logged_in_app(Role.VIEWER).run()
    assert not at.get("component_instance")  # the st_autorefresh timer

    at.toggle(key="auto_refresh").set_value(True).run()

    assert not at.exception
    assert len(at.get("component_instance")) == 1


def test_it_answers_with_a_message_when_the_database_is_down(
    logged_in_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = logged_in_app(Role.VIEWER)
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://nobody:x@127.0.0.1:9/none")
    at.run()

    assert not at.exception
    assert "not answering" in _messages(at)


def _guarded_action_page() -> None:
    import streamlit as st

    from monitoring_core.enums import Role
    from ui import auth

    if auth.has_role(Role.RESPONDER):
        st.button("Acknowledge")
    st.button("Refresh")
    auth.require_role(Role.ADMIN)
    st.button("Delete rule")


@pytest.mark.parametrize(
    ("role", "buttons", "locked"),
    [
        (Role.VIEWER, ["Refresh"], True),
        (Role.RESPONDER, ["Acknowledge", "Refresh"], True),
        (Role.ADMIN, ["Acknowledge", "Refresh", "Delete rule"], False),
    ],
)
def test_it_shows_actions_only_to_roles_allowed_to_take_them(
    session_engine: Engine, role: Role, buttons: list[str], locked: bool
) -> None:
    at = AppTest.from_function(_guarded_action_page, default_timeout=30)
    with session_engine.begin() as conn:
        at.session_state[USER_KEY] = make_user(conn, role)
    at.run()

    assert not at.exception
    assert [b.label for b in at.button] == buttons
    assert ("needs the **admin** role" in _messages(at)) is locked


def _banner_page() -> None:
    from datetime import datetime

    import streamlit as st

    from ui import widgets

    widgets.wedding_day_banner(datetime.fromisoformat(st.session_state["now"]))


@pytest.mark.parametrize(
    ("now", "shown"),
    [
        (datetime(2026, 6, 6, 12, 0, tzinfo=UTC), True),  # Saturday in London
        (datetime(2026, 6, 5, 22, 59, tzinfo=UTC), False),  # Friday 23:59 in London
        (datetime(2026, 6, 5, 23, 0, tzinfo=UTC), True),  # Saturday 00:00 in London
        (datetime(2026, 6, 7, 12, 0, tzinfo=UTC), False),  # Sunday
    ],
)
def test_it_shows_the_wedding_day_banner_on_saturdays(
    now: datetime, shown: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streamlit as st

    monkeypatch.setenv("MONITORING_TZ", "Europe/London")
    st.cache_resource.clear()  # the UI reads settings once per process
    at = AppTest.from_function(_banner_page, default_timeout=30)
    at.session_state["now"] = now.isoformat()
    at.run()

    assert not at.exception
    assert ("Wedding day" in _messages(at)) is shown


def test_it_shows_no_change_against_a_range_before_the_data_began(
    demo_engine: Engine, logged_in_app: AppFactory
) -> None:
    # The demo holds 8 days; one stray request 40 days ago makes the 30 days before a 30-day
    # range almost empty but not quite: "+300,000 %" would be noise, so no change is shown.
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import text

    from monitoring_core.partitions import ensure_partitions
    from monitoring_core.rollups import run_rollups
    from tests.rollup_fixtures import add_timings

    stray = DEMO_NOW - timedelta(days=40)
    with demo_engine.begin() as conn:
        ensure_partitions(conn, start=stray, end=stray, tables=("api_timings",))
        add_timings(conn, [(stray, "GET", "/api/stray", 200, 50.0)])
    run_rollups(demo_engine, datetime.now(UTC), safety_lag=timedelta(0))  # ingestion time
    try:
        at = logged_in_app(Role.VIEWER).run()
        assert next(m for m in at.metric if m.label == "Request rate").delta  # 24 h vs 24 h

        at.button_group(key="time_range").set_value("30d").run()

        assert not at.exception
        assert not next(m for m in at.metric if m.label == "Request rate").delta
    finally:
        with demo_engine.begin() as conn:
            for table in ("api_timings", "api_rollup_1m", "api_rollup_1h", "api_rollup_6h",
                          "api_rollup_1d", "api_total_1m", "api_total_1h", "api_total_6h",
                          "api_total_1d"):  # fmt: skip
                column = "time" if table == "api_timings" else "bucket"
                conn.execute(
                    text(f"DELETE FROM {table} WHERE {column} < :cut"),  # noqa: S608
                    {"cut": stray + timedelta(days=2)},
                )
