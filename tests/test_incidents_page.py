"""The Incidents page through AppTest: viewers read, responders act (every action writes)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest

from monitoring_core import clock
from monitoring_core.enums import Role
from monitoring_core.incidents import runbooks, service
from monitoring_core.incidents.store import list_timeline
from monitoring_core.schema import incidents, runbook_executions
from tests.clock_support import off_wedding_day

pytestmark = pytest.mark.clock  # runs at every instant of tests/clock_proof.py

AppFactory = Callable[[Role | None], AppTest]


@pytest.fixture
def test_instant(test_instant: datetime) -> datetime:
    """Not a Saturday: these tests show the weekday SEV1 target and steps that run at once."""
    return off_wedding_day(test_instant)


def _incident(engine: Engine, **body: Any) -> int:
    """An open SEV1 from 10 minutes before the page's clock (logged_in_app sets it)."""
    fields = {"title": "Checkout failing", "severity": "SEV1", "affected_services": ["checkout"]}
    with engine.begin() as conn:
        inc = service.create_incident(
            conn, body={**fields, **body}, actor="alice", role="responder",
            now=clock.now() - timedelta(minutes=10),
        )  # fmt: skip
        runbooks.create_runbook(
            conn, body={"title": "Checkout", "service_name": "checkout",
                        "steps": [{"title": "Check the payment provider status page"}]},
            actor="admin", role="admin", now=clock.now(),
        )  # fmt: skip
    return int(inc["id"])


def _open(factory: AppFactory, role: Role, incident_id: int | None = None) -> AppTest:
    at = factory(role)
    at.run()
    at.switch_page("pages/incidents.py")
    if incident_id is not None:  # a link to the incident: its detail opens
        at.query_params["incident"] = str(incident_id)
    at.run()
    assert not at.exception, at.exception
    return at


def _section(at: AppTest, name: str) -> None:
    at.button_group(key="url_section").set_value(name).run()
    assert not at.exception, at.exception


def _labels(at: AppTest) -> list[str]:
    return [b.label for b in at.button]


def _timeline(engine: Engine, incident_id: int) -> list[tuple[str, str | None]]:
    with engine.connect() as conn:
        return [(e["kind"], e["actor"]) for e in list_timeline(conn, incident_id=incident_id)]


def test_it_shows_incidents_to_viewers_read_only(engine: Engine, logged_in_app: AppFactory) -> None:
    incident_id = _incident(engine)
    at = _open(logged_in_app, Role.VIEWER)
    text = " ".join(m.value for m in at.markdown)
    assert "INC-" in text and "Checkout failing" in text and "acknowledge target 5 min" in text
    assert "Declare" not in _labels(at)
    at = _open(logged_in_app, Role.VIEWER, incident_id)
    assert "Acknowledge" not in _labels(at)
    _section(at, "Runbooks")
    assert "Run" not in _labels(at)
    _section(at, "Post-incident report")
    assert "Draft from recorded facts" not in _labels(at)


def test_it_lets_a_responder_work_an_incident(engine: Engine, logged_in_app: AppFactory) -> None:
    incident_id = _incident(engine)
    at = _open(logged_in_app, Role.RESPONDER, incident_id)
    at.button(key="inc_ack").click().run()
    assert any("Acknowledge done" in s.value for s in at.success)
    at.selectbox(key="inc_to_open").select("investigating").run()
    at.button(key="inc_status").click().run()
    at.text_area(key="inc_note_text").input("Provider says degraded").run()
    at.button(key="inc_note").click().run()
    _section(at, "Runbooks")
    at.button(key="rb_run_1_0").click().run()  # the confirming button inside "Run"
    _section(at, "Timeline")
    at.text_input(key="inc_summary").input("Provider recovered").run()
    at.button(key="inc_resolve").click().run()
    _section(at, "Post-incident report")
    at.button(key="pm_draft").click().run()
    _section(at, "Timeline")
    at.selectbox(key="ed_impact").select("wedding_day_critical").run()
    at.text_input(key="ed_tags").input("payments, provider").run()
    at.button(key="ed_save").click().run()
    assert not at.exception, at.exception
    kinds = [k for k, _ in _timeline(engine, incident_id)]
    assert kinds[:5] == ["opened", "acknowledged", "status_changed", "note", "runbook_step"]
    assert kinds[-3:] == ["resolved", "postmortem", "updated"]
    assert all(
        actor.startswith("user:responder-")
        for k, actor in _timeline(engine, incident_id)[1:]
        if actor
    )
    with engine.connect() as conn:
        row = conn.execute(select(incidents)).one()._mapping
        ex = conn.execute(select(runbook_executions.c.status)).scalar_one()
    assert row["status"] == "resolved" and row["resolution_summary"] == "Provider recovered"
    assert row["wedding_impact"] == "wedding_day_critical" and list(row["tags"]) == [
        "payments",
        "provider",
    ]
    assert "Provider says degraded" in row["postmortem_markdown"] and ex == "succeeded"
    _section(at, "Post-incident report")
    assert any(getattr(b, "label", None) == "Download Markdown" for b in at.get("download_button"))


def test_it_lets_a_responder_escalate_now(engine: Engine, logged_in_app: AppFactory) -> None:
    from sqlalchemy import insert

    from monitoring_core.notify.channels import create_channel
    from monitoring_core.schema import escalation_policies, notification_outbox

    incident_id = _incident(engine)
    at = _open(logged_in_app, Role.RESPONDER, incident_id)
    at.button(key="inc_escalate").click().run()  # no policy yet: refused, clearly
    assert any("Escalate failed: no escalation policy" in e.value for e in at.error)
    with engine.begin() as conn:
        hook = create_channel(conn, body={"name": "lead", "url": "json://127.0.0.1:9/lead"})
        steps = [{"after_minutes": 0, "channels": [hook["id"]]}]
        conn.execute(insert(escalation_policies).values(name="Default", steps=steps))
    at.button(key="inc_escalate").click().run()
    assert not at.exception and any("Escalate done" in s.value for s in at.success)
    escalated = [(k, a) for k, a in _timeline(engine, incident_id) if k == "escalated"]
    assert len(escalated) == 1 and str(escalated[0][1]).startswith("user:responder-")
    with engine.connect() as conn:
        assert conn.execute(select(notification_outbox.c.channel_id)).scalars().all() == [
            hook["id"]
        ]


def test_it_lets_a_responder_declare_and_refuses_clearly(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    at = _open(logged_in_app, Role.RESPONDER)
    at.button(key="new_declare").click().run()  # no title
    shown = [e.value.replace("\\", "") for e in at.error]  # markdown escapes resolved
    assert any("Declare failed: title: is required" in text for text in shown)
    at.text_input(key="new_title").input("Gallery uploads stuck").run()
    at.text_input(key="new_services").input("gallery, uploads").run()
    at.button(key="new_declare").click().run()
    with engine.connect() as conn:
        row = conn.execute(select(incidents)).one()._mapping
    assert row["title"] == "Gallery uploads stuck" and list(row["affected_services"]) == [
        "gallery",
        "uploads",
    ]
    assert row["created_by"].startswith("user:responder-")


def test_it_shows_mtta_and_mttr(engine: Engine, logged_in_app: AppFactory) -> None:
    incident_id = _incident(engine)
    with engine.begin() as conn:
        start = clock.now() - timedelta(minutes=10)
        kw: dict[str, Any] = {"incident_id": incident_id, "actor": "bob", "role": "responder"}
        conn.execute(incidents.update().values(detected_at=start))
        service.acknowledge_incident(conn, now=start + timedelta(minutes=3), **kw)
        service.resolve_incident(
            conn, resolution_summary="ok", now=start + timedelta(minutes=9), **kw
        )
    at = _open(logged_in_app, Role.VIEWER)
    at.button_group(key="url_tab").set_value("MTTA / MTTR").run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["MTTA"] == "3 min" and metrics["MTTR"] == "9 min"


def test_it_puts_open_incidents_on_the_overview(engine: Engine, logged_in_app: AppFactory) -> None:
    _incident(engine)
    at = logged_in_app(Role.VIEWER).run()
    assert not at.exception, at.exception
    card = next(m for m in at.metric if m.label == "Open incidents")
    assert card.value == "1 open (1 SEV1)"
