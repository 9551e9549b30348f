"""The Alerts page through AppTest: what each role sees and the actions it may take."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest

from monitoring_core import clock
from monitoring_core.enums import Role
from monitoring_core.flows.alert_cycle import run_evaluation
from monitoring_core.schema import alert_instances, alert_rules, audit_log
from tests.alerting_support import point, threshold_rule

pytestmark = pytest.mark.clock  # runs at every instant of tests/clock_proof.py

AppFactory = Callable[[Role | None], AppTest]


def _firing_alert(engine: Engine) -> int:
    now = clock.now()  # the page's clock (set by logged_in_app)
    with engine.begin() as conn:
        threshold_rule(conn, now, alert_name="Checkout slow")
    point(engine, now - timedelta(seconds=2), 500)
    run_evaluation(engine, now)
    with engine.connect() as conn:
        return int(conn.execute(select(alert_instances.c.id)).scalar_one())


def _open(factory: AppFactory, role: Role) -> AppTest:
    at = factory(role)
    at.run()
    at.switch_page("pages/alerts.py").run()
    assert not at.exception, at.exception
    return at


def _labels(at: AppTest) -> list[str]:
    return [b.label for b in at.button]


def test_it_shows_active_alerts_to_viewers_without_actions(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    _firing_alert(engine)
    at = _open(logged_in_app, Role.VIEWER)
    assert any("Checkout slow" in m.value for m in at.markdown)
    assert "Acknowledge" not in _labels(at) and "Create" not in _labels(at)


def test_it_lets_a_responder_acknowledge(engine: Engine, logged_in_app: AppFactory) -> None:
    instance_id = _firing_alert(engine)
    at = _open(logged_in_app, Role.RESPONDER)
    at.button_group(key="url_tab").set_value("Rules").run()
    assert "Checkout slow" in " ".join(m.value for m in at.markdown)
    assert "Disable" not in _labels(at)  # rules are for admins
    at.button_group(key="url_tab").set_value("Active").run()
    at.button(key=f"ack{instance_id}").click().run()
    assert not at.exception
    with engine.connect() as conn:
        status = conn.execute(select(alert_instances.c.status)).scalar_one()
        audit = conn.execute(select(audit_log.c.action, audit_log.c.actor)).one()
    assert status == "acknowledged"
    assert audit.action == "alert.acknowledge" and audit.actor.startswith("user:responder-")
    assert any("Acknowledge done" in s.value for s in at.success)


def test_it_lets_a_responder_resolve_by_hand(engine: Engine, logged_in_app: AppFactory) -> None:
    instance_id = _firing_alert(engine)
    at = _open(logged_in_app, Role.RESPONDER)
    at.button(key=f"res{instance_id}").click().run()
    assert not at.exception
    with engine.connect() as conn:
        status = conn.execute(select(alert_instances.c.status)).scalar_one()
        audit = conn.execute(select(audit_log.c.action, audit_log.c.actor)).one()
    assert status == "resolved"
    assert audit.action == "alert.resolve" and audit.actor.startswith("user:responder-")
    assert any("Resolve done" in s.value for s in at.success)


def test_it_lets_an_admin_disable_a_rule_and_create_one(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    _firing_alert(engine)
    at = _open(logged_in_app, Role.ADMIN)
    at.button_group(key="url_tab").set_value("Rules").run()
    at.button(key="tog1").click().run()
    assert at.button_group(key="url_tab").value == "Rules"  # the action kept the tab
    at.selectbox(key="rule_template").select("payment_failures").run()
    assert at.text_input(key="new_payment_failures_name").value == "Payment Failures"
    at.text_input(key="new_payment_failures_name").input("Payments failing")  # inside the form
    next(b for b in at.button if b.label == "Create").click().run()
    assert not at.exception
    with engine.connect() as conn:
        rules = conn.execute(
            select(alert_rules.c.alert_name, alert_rules.c.is_enabled).order_by(alert_rules.c.id)
        ).all()
    assert [tuple(r) for r in rules] == [("Checkout slow", False), ("Payments failing", True)]


def test_it_keeps_settings_for_admins_and_adds_a_channel(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    at = logged_in_app(Role.RESPONDER)
    at.run()
    at.switch_page("pages/settings.py").run()
    assert any("needs the **admin** role" in e.value for e in at.error)
    at = logged_in_app(Role.ADMIN)
    at.run()
    at.switch_page("pages/settings.py").run()
    at.text_input(key="channel_name").input("ops")
    at.text_input(key="channel_url").input("json://user:pw-secret@127.0.0.1:9/hook")
    next(b for b in at.button if b.label == "Add channel").click().run()
    assert not at.exception
    assert any("Channel ops added" in s.value for s in at.success)
    assert any("ops" in m.value and "pw-secret" not in m.value for m in at.markdown)


def test_it_disables_and_deletes_channels_in_settings(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    from monitoring_core.notify.outbox import enqueue, outbox_rows
    from monitoring_core.notify.templates import Message
    from monitoring_core.schema import notification_channels
    from tests.alerting_support import channel

    with engine.begin() as conn:
        used = channel(conn, "json://127.0.0.1:9/used", name="used")
        channel(conn, "json://127.0.0.1:9/spare", name="spare")
        enqueue(conn, outbox_rows(channel_ids=[used], message=Message("t", "b", "info"),
                                  kind="firing", idempotency_key="k", now=clock.now()))  # fmt: skip
    at = logged_in_app(Role.ADMIN)
    at.run()
    at.switch_page("pages/settings.py").run()
    at.button(key=f"toggle{used}").click().run()
    assert not at.exception and any("used disabled" in s.value for s in at.success)
    at.button(key=f"delete{used}").click().run()
    assert any("1 notifications on record" in e.value for e in at.error)
    spare = next(
        b.key
        for b in at.button
        if b.key and b.key.startswith("delete") and b.key != f"delete{used}"
    )
    at.button(key=spare).click().run()
    assert any("spare deleted" in s.value for s in at.success)
    with engine.connect() as conn:
        left = conn.execute(
            select(notification_channels.c.name, notification_channels.c.is_enabled)
        ).all()
        actions = conn.execute(select(audit_log.c.action)).scalars().all()
    assert left == [("used", False)]
    assert sorted(actions) == ["channel.delete", "channel.save"]


def test_it_adds_an_escalation_policy_in_settings(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    from monitoring_core.schema import escalation_policies

    at = logged_in_app(Role.ADMIN)
    at.run()
    at.switch_page("pages/settings.py")
    at.query_params["tab"] = "Escalation policies"  # one section at a time, named in the URL
    at.run()
    at.text_input(key="policy_name").input("Night shift")
    at.text_area(key="policy_steps").input("not json")
    next(b for b in at.button if b.label == "Add policy").click().run()
    assert any(e.value.startswith("Policy not added: ") for e in at.error)
    at.text_area(key="policy_steps").input('[{"after_minutes": 0, "channels": []}]')
    next(b for b in at.button if b.label == "Add policy").click().run()
    assert not at.exception and any("Policy Night shift added" in s.value for s in at.success)
    assert at.button_group(key="url_tab").value == "Escalation policies"  # the action kept it
    assert not any(b.label == "Add channel" for b in at.button)  # only the open section drawn
    with engine.connect() as conn:
        assert conn.execute(select(escalation_policies.c.name)).scalars().all() == ["Night shift"]
        assert conn.execute(select(audit_log.c.action, audit_log.c.target)).all() == [
            ("policy.create", "Night shift")
        ]
