"""Silences added and removed the same way from the API and the Alerts page: role, audit row."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest

from monitoring_core.alerts import service
from monitoring_core.audit import user_actor
from monitoring_core.enums import Role
from monitoring_core.roles import PermissionDenied
from monitoring_core.schema import audit_log, silences

BOB = user_actor("bob")
MATCH = [{"name": "service", "value": "payments", "is_regex": False}]


def _audit(engine: Engine) -> list[tuple[str, str, str | None]]:
    with engine.connect() as conn:
        query = select(audit_log.c.actor, audit_log.c.action, audit_log.c.target)
        return [tuple(r) for r in conn.execute(query.order_by(audit_log.c.id))]


def test_it_audits_adding_and_removing_a_silence(engine: Engine, now: datetime) -> None:
    kw = {"actor": BOB, "role": "responder", "now": now}
    with engine.begin() as conn:
        sid = service.silence_create(
            conn,
            matchers=MATCH,
            starts_at=now,
            ends_at=now + timedelta(hours=1),
            reason="deploy",
            **kw,
        )
        assert service.silence_delete(conn, silence_id=sid, **kw)
        assert not service.silence_delete(conn, silence_id=sid, **kw)  # gone: nothing to audit
    assert _audit(engine) == [
        (BOB, "silence.create", f"silence:{sid}"),
        (BOB, "silence.delete", f"silence:{sid}"),
    ]


def test_it_leaves_silences_to_responders(engine: Engine, now: datetime) -> None:
    with pytest.raises(PermissionDenied), engine.begin() as conn:
        service.silence_create(conn, matchers=MATCH, starts_at=now, ends_at=now + timedelta(hours=1),
                               reason="x", actor=BOB, role="viewer", now=now)  # fmt: skip
    assert _audit(engine) == []


def test_it_audits_a_silence_added_on_the_alerts_page(
    engine: Engine, logged_in_app: Callable[[Role | None], AppTest]
) -> None:
    at = logged_in_app(Role.RESPONDER)
    at.run()
    at.switch_page("pages/alerts.py").run()
    at.button_group(key="url_tab").set_value("Silences").run()
    at.text_input(key="silence_value").input("payments")
    at.text_input(key="silence_reason").input("deploy")
    next(b for b in at.button if b.label == "Add silence").click().run()
    assert not at.exception and any("Add silence done" in s.value for s in at.success)
    with engine.connect() as conn:
        (sid, created_by) = conn.execute(select(silences.c.id, silences.c.created_by)).one()
    [(actor, action, target)] = _audit(engine)
    assert created_by == actor and actor.startswith("user:responder-")
    assert (action, target) == ("silence.create", f"silence:{sid}")
    # The Silences tab stays open and lists it at once; ending it removes it at once.
    assert at.button_group(key="url_tab").value == "Silences"
    assert any(f"#{sid}" in m.value for m in at.markdown)
    at.button(key=f"silence_end_{sid}").click().run()
    assert not at.exception and at.button_group(key="url_tab").value == "Silences"
    assert not any(f"#{sid}" in m.value for m in at.markdown)
