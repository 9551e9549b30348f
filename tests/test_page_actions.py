"""Actions keep you where you are (AppTest): after acting, the same item, tab and section stay
open, and the lists show the change at once (no 30 s cache, no status choice lagging a step)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from monitoring_core import clock
from monitoring_core.enums import Role
from monitoring_core.incidents import service
from tests.clock_support import off_wedding_day

pytestmark = pytest.mark.clock

AppFactory = Callable[[Role | None], AppTest]


@pytest.fixture
def test_instant(test_instant: datetime) -> datetime:
    return off_wedding_day(test_instant)


def _incidents(engine: Engine) -> list[int]:
    ids = []
    with engine.begin() as conn:
        for title, sev in (("Checkout failing", "SEV1"), ("Gallery slow", "SEV3")):
            inc = service.create_incident(
                conn, body={"title": title, "severity": sev, "affected_services": ["web"]},
                actor="alice", role="responder", now=clock.now() - timedelta(minutes=10),
            )  # fmt: skip
            ids.append(int(inc["id"]))
    return ids


def _param(at: AppTest, name: str) -> str | None:
    value = at.query_params.get(name)
    return value[0] if isinstance(value, list) else value


def _timeline(at: AppTest) -> list[str]:
    frame = next(df.value for df in at.dataframe if "What" in df.value.columns)
    return list(frame["What"])


def test_the_incident_stays_open_through_its_lifecycle(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    first, second = _incidents(engine)
    at = logged_in_app(Role.RESPONDER).run()
    at.switch_page("pages/incidents.py").run()
    at.button_group(key="url_tab").set_value("Detail").run()
    at.selectbox(key="url_incident").set_value(second).run()  # not the first in the list
    assert _param(at, "incident") == str(second)

    at.button(key="inc_ack").click().run()
    assert at.selectbox(key="url_incident").value == second
    assert at.button_group(key="url_tab").value == "Detail"
    assert _timeline(at)[0] == "Acknowledged"  # the history shows it at once, newest first

    at.selectbox(key="inc_to_open").select("investigating").run()
    at.button(key="inc_status").click().run()
    # The status choice follows the new status at once (it lagged a step).
    moves = at.selectbox(key="inc_to_investigating").options
    assert "Investigating" not in moves and "Mitigating" in moves
    assert _timeline(at)[0] == "Status changed"

    at.text_input(key="inc_summary").input("Cache warmed").run()
    at.button(key="inc_resolve").click().run()
    assert not at.exception, at.exception
    assert at.selectbox(key="url_incident").value == second  # resolved, still shown
    assert _param(at, "incident") == str(second)
    assert "Resolved" in " ".join(m.value for m in at.markdown)
    assert _timeline(at)[0] == "Resolved"
    assert first != second


def test_a_section_stays_open_after_its_action(engine: Engine, logged_in_app: AppFactory) -> None:
    _first, second = _incidents(engine)
    at = logged_in_app(Role.RESPONDER).run()
    at.switch_page("pages/incidents.py")
    at.query_params.update({"incident": str(second), "section": "Post-incident report"})
    at.run()
    assert at.button_group(key="url_tab").value == "Detail"  # a link to an incident opens it
    at.button(key="pm_draft").click().run()
    assert not at.exception, at.exception
    assert at.button_group(key="url_section").value == "Post-incident report"
    assert at.selectbox(key="url_incident").value == second
    assert any("Draft report done" in s.value for s in at.success)


def test_an_alert_action_is_in_the_history_at_once_and_the_rule_editor_keeps_its_rule(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    from monitoring_core.flows.alert_cycle import run_evaluation
    from tests.alerting_support import point, threshold_rule

    now = clock.now()
    with engine.begin() as conn:
        rule_id = threshold_rule(conn, now, alert_name="Checkout slow")
    point(engine, now - timedelta(seconds=2), 500)
    run_evaluation(engine, now)
    at = logged_in_app(Role.ADMIN).run()
    at.switch_page("pages/alerts.py").run()
    ack = next(b for b in at.button if b.label == "Acknowledge")
    ack.click().run()
    at.button_group(key="url_tab").set_value("History").run()
    assert _param(at, "tab") == "History"
    frame = next(df.value for df in at.dataframe if "Change" in df.value.columns)
    # Acted on a moment ago (after the page's 30 s clock step): listed now, not 30 s later.
    assert "Firing → Acknowledged" in list(frame["Change"])
    at.selectbox(key="url_status").set_value("acknowledged").run()
    assert _param(at, "status") == "acknowledged"

    at.button_group(key="url_tab").set_value("Rules").run()
    at.button(key=f"edit{rule_id}").click().run()
    assert _param(at, "rule") == str(rule_id)  # the editor's rule is in the URL
    assert any("Edit: Checkout slow" in h.value for h in at.subheader)
    at.button(key=f"tog{rule_id}").click().run()  # an action: tab and editor stay
    assert not at.exception, at.exception
    assert at.button_group(key="url_tab").value == "Rules"
    assert any("Edit: Checkout slow" in h.value for h in at.subheader)
    assert any("disabled" in m.value for m in at.markdown)
