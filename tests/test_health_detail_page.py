"""The Health page's check detail through AppTest: a link opens a check and tab, the ping log
(no bodies), the status timeline, pause/resume by role, and lists fresh after an action
(issue 18.1, 18.2, 18.5)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest

from monitoring_core import clock
from monitoring_core.enums import Role
from monitoring_core.health.runner import receive_ping, run_due_checks
from monitoring_core.health.store import PingMeta, create_check
from monitoring_core.schema import audit_log, health_checks
from tests.ui_harness import table_with
from ui.resource_charts import CLOCK_LABELS

pytestmark = pytest.mark.clock  # runs at every instant of tests/clock_proof.py

AppFactory = Callable[[Role | None], AppTest]
PAGE = "pages/health.py"
SECRET_OUTPUT = b"dumped 3 tables; PGPASSWORD=hunter2"


def _seed(engine: Engine) -> int:
    """A nightly job on a cron schedule that started, ran 4 minutes, and sent its output."""
    now = clock.now()
    with engine.begin() as conn:
        create_check(
            conn,
            {
                "check_name": "api up",
                "check_type": "custom",
                "check_config": {"callable": "disk_free", "min_free_percent": 0},
            },
        )
        beat = create_check(
            conn,
            {
                "check_name": "nightly dump",
                "check_type": "heartbeat",
                "check_config": {"schedule": "0 3 * * *", "tz": "Europe/London"},
                "service_name": "backups",
            },
        )
        assert beat.ping_token
        agent = PingMeta(source="10.0.0.7", method="POST", user_agent="curl/8.5")
        receive_ping(conn, beat.ping_token, "start", now - timedelta(minutes=9), agent)
        body = PingMeta(
            source="10.0.0.7",
            method="POST",
            user_agent="curl/8.5",
            body_bytes=len(SECRET_OUTPUT),
            body_sha256="ab" * 32,
        )
        receive_ping(conn, beat.ping_token, "success", now - timedelta(minutes=5), body)
    run_due_checks(engine, now)
    return beat.id


def _open(factory: AppFactory, role: Role, **params: str) -> AppTest:
    at = factory(role).run()
    at.switch_page(PAGE)
    at.query_params.clear()
    at.query_params.update(params)
    at.run()
    assert not at.exception, at.exception
    return at


def _text(at: AppTest) -> str:
    parts = [*at.markdown, *at.caption, *at.error, *at.warning, *at.info, *at.success]
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", " ".join(str(p.value) for p in parts))


def test_a_link_opens_the_checks_ping_log(engine: Engine, logged_in_app: AppFactory) -> None:
    beat = _seed(engine)
    at = _open(logged_in_app, Role.VIEWER, check=str(beat))
    assert at.selectbox(key="url_check").value == beat
    text = _text(at)
    assert "### nightly dump" in text
    assert "cron 0 3 * * * (Europe/London), 1 min grace" in text
    assert (
        "**Last ping:** 5 min ago (today " in text or "**Last ping:** 5 min ago (yesterday " in text
    )
    assert "**Next expected ping:**" in text
    log = table_with(at, "When", "Event", "Job ran", "From", "Body")
    assert list(log["Event"]) == ["Success", "Started"]  # newest first
    assert list(log["Job ran"]) == ["4 min", ""]
    assert log["From"].iloc[0] == "10.0.0.7 · POST · curl/8.5"
    assert log["Body"].iloc[0] == "35 bytes · SHA-256 abababababab…"
    assert "hunter2" not in log.to_string()
    assert "Responders and admins can pause this check." in text
    assert "health_pause" not in [b.key for b in at.button]  # viewers cannot pause
    at.segmented_control(key="url_tab").set_value("Timeline").run()
    assert at.query_params["tab"] == "Timeline"
    assert len(at.get("plotly_chart")) == 1 and "Over this range: " in _text(at)
    changes = table_with(at, "When", "From", "To", "Why")
    assert list(changes["To"]) == ["Up"] and list(changes["Why"]) == ["ping received"]
    at.segmented_control(key="url_tab").set_value("Log").run()
    assert "tab" not in at.query_params and at.query_params["check"] == str(beat)  # Log: default


def test_a_responder_pauses_and_resumes_and_stays_on_the_check(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    beat = _seed(engine)
    at = _open(logged_in_app, Role.RESPONDER, check=str(beat))
    at.button(key="health_pause").click().run()
    assert not at.exception
    assert "Paused 'nightly dump'" in _text(at)
    assert at.selectbox(key="url_check").value == beat  # the same check stays open
    assert at.query_params["check"] == str(beat)
    uptime = table_with(at, "Check", "Status", "Next ping")
    row = uptime.set_index("Check").loc["nightly dump"]
    assert (row["Status"], row["Next ping"]) == ("Paused", "paused")  # the list shows it at once
    assert "none while paused" in _text(at)
    assert at.button(key="health_pause").label == "Resume"
    at.button(key="health_pause").click().run()
    assert "Resumed 'nightly dump'" in _text(at)
    with engine.connect() as conn:
        actions = conn.execute(select(audit_log.c.action).order_by(audit_log.c.id)).scalars()
        assert list(actions) == ["health_check.pause", "health_check.resume"]
        status = conn.execute(select(health_checks.c.status).where(health_checks.c.id == beat))
        assert status.scalar_one() == "unknown"


def test_a_new_check_is_in_the_selector_at_once(engine: Engine, logged_in_app: AppFactory) -> None:
    _seed(engine)
    at = _open(logged_in_app, Role.ADMIN)
    at.selectbox(key="health_edit_pick").select("New check").run()
    at.selectbox[2].select("heartbeat").run()  # the type (after the detail and edit pickers)
    at.text_input[0].input("weekly report")
    next(t for t in at.text_input if t.label == "Or a cron schedule").input("0 9 * * 1")
    next(t for t in at.text_input if t.label == "Its time zone").input("Europe/London")
    next(n for n in at.number_input if n.label == "Grace (s)").set_value(600)
    next(b for b in at.button if b.label == "Save").click().run()
    assert not at.exception
    assert "Saved 'weekly report'" in _text(at)
    picker = at.selectbox(key="url_check")
    assert "weekly report" in picker.options  # shown as named, with no navigation needed
    assert "### weekly report" in _text(at)  # and its detail is open
    assert at.selectbox(key="health_edit_pick").value == "weekly report"
    assert "cron 0 9 * * 1 (Europe/London), 10 min grace" in _text(at)


def test_a_link_opens_a_probes_response_times(engine: Engine, logged_in_app: AppFactory) -> None:
    _seed(engine)
    at = _open(logged_in_app, Role.VIEWER, check="1", tab="Response times")  # "api up", a probe
    assert at.segmented_control(key="url_tab").value == "Response times"
    (chart,) = at.get("vega_lite_chart")
    spec = json.loads(chart.proto.spec)  # the 24-hour clock, as the other time charts
    assert spec["encoding"]["x"]["axis"]["labelExpr"] == CLOCK_LABELS
    at.segmented_control(key="url_tab").set_value("Log").run()
    assert not at.get("vega_lite_chart")  # read and drawn on its own tab only
    log = table_with(at, "When", "Result", "Status after", "Response time", "Message")
    assert list(log["Result"]) == ["OK"] and list(log["Status after"]) == ["Up"]
    assert "1 result in this range, newest first." in _text(at)
