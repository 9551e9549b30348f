"""The Health page through AppTest: grid, uptime, detail, and the admin form with run now."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest

from monitoring_core import clock
from monitoring_core.enums import Role
from monitoring_core.health.runner import receive_ping, run_due_checks
from monitoring_core.health.store import create_check
from monitoring_core.schema import health_checks, sql_collectors
from tests.ui_harness import table_with

pytestmark = pytest.mark.clock  # runs at every instant of tests/clock_proof.py

AppFactory = Callable[[Role | None], AppTest]
PAGE = "pages/health.py"


def _seed(engine: Engine) -> int:
    """Two checks, a heartbeat that went down and came back; the heartbeat's id."""
    now = clock.now()  # the page's clock (logged_in_app stands it at the test instant)
    with engine.begin() as conn:
        create_check(
            conn,
            {
                "check_name": "disk",
                "check_type": "custom",
                "check_config": {"callable": "disk_free", "min_free_percent": 0},
                "service_name": "host",
            },
        )
        beat = create_check(
            conn,
            {
                "check_name": "nightly backup",
                "check_type": "heartbeat",
                "check_config": {"period_seconds": 60, "grace_seconds": 0},
                "service_name": "backups",
            },
        )
        assert beat.ping_token
        receive_ping(conn, beat.ping_token, "success", now - timedelta(minutes=5))
    run_due_checks(engine, now)
    return beat.id


def _text(at: AppTest) -> str:
    """The page's text as shown: markdown escapes of user data resolved."""
    parts = [*at.markdown, *at.caption, *at.error, *at.warning, *at.info, *at.success]
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", " ".join(str(p.value) for p in parts))


def test_it_shows_status_uptime_and_history(engine: Engine, logged_in_app: AppFactory) -> None:
    beat_id = _seed(engine)
    at = logged_in_app(Role.VIEWER).run()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Health"]
    text = _text(at)
    assert "**backups**" in text and "Critical" in text and "Healthy" in text
    assert "No worker has reported yet" in text
    uptime = at.dataframe[0].value
    assert set(uptime["Check"]) == {"disk", "nightly backup"}
    assert uptime.set_index("Check").loc["disk", "Uptime 24 h"] == 1.0
    assert list(uptime.columns[:6]) == [
        "Check", "Service", "Type", "Status", "Schedule", "Last run or ping"
    ]  # fmt: skip
    assert set(uptime["Status"]) == {"Healthy", "Critical"}
    assert set(uptime["Type"]) == {"Custom", "Heartbeat"}
    at.selectbox(key="url_check").set_value(beat_id).run()
    assert not at.exception
    assert any("/api/monitoring/heartbeat/" in c.value for c in at.code)
    at.segmented_control(key="url_tab").set_value("Timeline").run()
    flips = table_with(at, "From", "To", "Why")
    assert list(flips["To"]) == ["Down", "Up"]
    assert [b.key for b in at.button] == ["logout"]  # viewers see no admin actions
    assert "Add or edit a check" not in [s.value for s in at.subheader]


def test_it_lets_an_admin_add_a_check_and_run_it(engine: Engine, logged_in_app: AppFactory) -> None:
    at = logged_in_app(Role.ADMIN).run()
    at.switch_page(PAGE).run()
    assert "No health checks yet" in _text(at)
    at.selectbox[1].select("custom").run()  # the settings' fields follow the type
    at.text_input[0].input("root disk")
    at.text_input[1].input("host")
    _field(at.selectbox, "Check").select("disk_free")
    _field(at.text_area, "Its settings (JSON, optional)").input('{"min_free_percent": 0}')
    at.button[0].click().run()  # the form's Save
    assert not at.exception
    assert "Saved 'root disk'" in _text(at)
    with engine.connect() as conn:
        row = conn.execute(select(health_checks.c.check_type, health_checks.c.service_name)).one()
    assert tuple(row) == ("custom", "host")
    at.run()
    at.button(key="health_run_now").click().run()
    assert not at.exception
    assert "free" in _text(at) and "→ Healthy" in _text(at)


def test_it_explains_why_a_check_was_not_saved(engine: Engine, logged_in_app: AppFactory) -> None:
    at = logged_in_app(Role.ADMIN).run()
    at.switch_page(PAGE).run()
    at.selectbox[1].select("tcp").run()
    at.text_input[0].input("no host")
    _field(at.text_input, "Host").input("")
    at.button[0].click().run()
    assert "check_config.host: must be a host name or address" in _text(at)
    at.selectbox[1].select("http").run()
    at.text_input[0].input("bad header")
    _field(at.text_area, "Request headers (optional, one `Name: value` a line)").input("X-Token")
    at.button[0].click().run()
    assert "Not saved: request header line 1 is not `Name: value`" in _text(at)
    at.selectbox[1].select("custom").run()
    _field(at.text_area, "Its settings (JSON, optional)").input("{not json")
    at.button[0].click().run()
    assert "settings are not valid JSON" in _text(at)


def test_an_http_check_is_set_up_with_fields_not_json(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    at = logged_in_app(Role.ADMIN).run()
    at.switch_page(PAGE).run()
    at.text_input[0].input("vendor search")  # http is the first type
    _field(at.text_input, "URL").input("https://vendors.example.com/health")
    _field(at.number_input, "Expected status").set_value(204)
    _field(at.number_input, "Slow above (ms)").set_value(1500)
    _field(at.text_input, "Text the page must contain (optional)").input("ok")
    _field(at.text_area, "Request headers (optional, one `Name: value` a line)").input(
        "Accept: application/json\nX-Probe: monitoring"
    )
    at.button[0].click().run()
    assert not at.exception and "Saved 'vendor search'" in _text(at)
    assert not any("JSON" in str(t.label) for t in at.text_area)  # no JSON for an http check
    with engine.connect() as conn:
        config = conn.execute(select(health_checks.c.check_config)).scalar_one()
    assert config == {
        "url": "https://vendors.example.com/health", "method": "GET", "expected_status": 204,
        "follow_redirects": False, "keyword": "ok", "max_response_time_ms": 1500,
        "headers": {"Accept": "application/json", "X-Probe": "monitoring"},
    }  # fmt: skip


def test_editing_a_database_checks_query_keeps_its_hidden_password(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    """The form shows the URL with its password masked; saving it unchanged keeps the stored
    URL, and the query typed beside it is saved (it used to be dropped with the config)."""
    url = "postgresql+psycopg://reader:s3cret@db.internal/app"
    with engine.begin() as conn:
        create_check(conn, {"check_name": "app db", "check_type": "database",
                            "check_config": {"url": url, "query": "SELECT 1"}})  # fmt: skip
    at = logged_in_app(Role.ADMIN).run()
    at.switch_page(PAGE).run()
    at.selectbox(key="health_edit_pick").select("app db").run()
    shown = _field(at.text_input, "Database URL")
    assert "s3cret" not in shown.value and "reader" in shown.value
    _field(at.text_input, "Query").input("SELECT count(*) FROM bookings")
    next(b for b in at.button if b.label == "Save").click().run()
    assert not at.exception and "Saved 'app db'" in _text(at)
    with engine.connect() as conn:
        config = conn.execute(select(health_checks.c.check_config)).scalar_one()
    assert config == {"url": url, "query": "SELECT count(*) FROM bookings"}


def _field(widgets: Any, label: str) -> Any:
    """The widget of a list (at.text_input, at.selectbox, …) with this label."""
    return next(w for w in widgets if w.label == label)


def test_it_puts_a_health_card_on_the_overview(engine: Engine, logged_in_app: AppFactory) -> None:
    _seed(engine)
    at = logged_in_app(Role.VIEWER).run()
    assert not at.exception
    card = next(m for m in at.metric if m.label == "Health checks")
    assert card.value == "1 / 2 healthy" and card.delta == "1 down"
    assert card.proto.direction == card.proto.NONE  # a count, not a change: no arrow


def test_it_lets_an_admin_add_a_collector(engine: Engine, logged_in_app: AppFactory) -> None:
    at = logged_in_app(Role.ADMIN).run()
    at.switch_page(PAGE).run()
    assert "No SQL collectors or scrapes yet" not in _text(at)  # another section
    at.segmented_control(key="health_section").set_value("collectors").run()
    assert at.query_params["section"] == "collectors"
    assert "No SQL collectors or scrapes yet" in _text(at)
    at.text_input(key="collector_name").input("Users")
    next(b for b in at.button if b.label == "Add collector").click().run()
    assert not at.exception
    assert "Added 'Users'" in _text(at)
    at.run()
    assert list(at.dataframe[0].value["name"]) == ["Users"]
    with engine.connect() as conn:
        assert conn.execute(select(sql_collectors.c.query)).scalar_one().startswith("SELECT count")
