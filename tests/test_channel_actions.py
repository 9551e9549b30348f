"""Channel actions shared by the API and the Settings page: audit rows and recorded test sends."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest

from monitoring_core.audit import user_actor
from monitoring_core.enums import Role
from monitoring_core.notify.channels import ChannelNotFound
from monitoring_core.notify.service import remove_channel, save_channel, send_test_message
from monitoring_core.roles import PermissionDenied
from monitoring_core.schema import audit_log, notification_deliveries
from tests.alerting_support import channel, webhook_receiver

ANN = user_actor("ann")


def _audit(engine: Engine) -> list[tuple[str, str, str | None]]:
    with engine.connect() as conn:
        query = select(audit_log.c.actor, audit_log.c.action, audit_log.c.target)
        return [tuple(r) for r in conn.execute(query.order_by(audit_log.c.id))]


def _deliveries(engine: Engine) -> list[tuple[int, str]]:
    d = notification_deliveries
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(d.c.channel_id, d.c.status).order_by(d.c.id))]


@pytest.mark.parametrize(
    ("path", "ok", "status"), [("hook", True, "sent"), ("fail", False, "failed")]
)
def test_it_records_a_test_send_like_any_delivery(
    engine: Engine, now: datetime, path: str, ok: bool, status: str
) -> None:
    with webhook_receiver() as hook:
        with engine.begin() as conn:
            cid = channel(conn, hook.json_url(path), name="ops")
        result = send_test_message(
            engine, channel_id=cid, public_url="http://ui", actor=ANN, role="admin", now=now
        )
        assert result.ok is ok
        assert hook.titles() == (["Test notification for channel ops"] if ok else [])
    assert _deliveries(engine) == [(cid, status)]
    assert _audit(engine) == [(ANN, "channel.test", f"channel:{cid}")]


def test_it_audits_saving_and_removing_a_channel(engine: Engine, now: datetime) -> None:
    kw = {"actor": ANN, "role": "admin", "now": now}
    with engine.begin() as conn:
        saved = save_channel(conn, channel_id=None, body={"name": "ops", "url": "json://h/x"}, **kw)
        save_channel(conn, channel_id=saved["id"], body={"is_enabled": False}, **kw)
        remove_channel(conn, channel_id=saved["id"], **kw)
    target = f"channel:{saved['id']}"
    assert _audit(engine) == [
        (ANN, "channel.save", target),
        (ANN, "channel.save", target),
        (ANN, "channel.delete", target),
    ]


@pytest.mark.parametrize("action", ["save", "remove", "test"])
def test_it_leaves_channels_to_admins(engine: Engine, now: datetime, action: str) -> None:
    with engine.begin() as conn:
        cid = channel(conn, "json://127.0.0.1:9/x")
    kw = {"actor": ANN, "role": "responder", "now": now}
    with pytest.raises(PermissionDenied), engine.begin() as conn:
        if action == "save":
            save_channel(conn, channel_id=cid, body={"is_enabled": False}, **kw)
        elif action == "remove":
            remove_channel(conn, channel_id=cid, **kw)
        else:
            send_test_message(engine, channel_id=cid, public_url="http://ui", **kw)
    assert _audit(engine) == [] and _deliveries(engine) == []


def test_it_says_which_channel_is_missing(engine: Engine, now: datetime) -> None:
    with pytest.raises(ChannelNotFound):
        send_test_message(engine, channel_id=999, public_url="", actor=ANN, role="admin", now=now)


def test_it_records_the_settings_page_test_send_as_the_api_does(
    engine: Engine, logged_in_app: Callable[[Role | None], AppTest]
) -> None:
    with webhook_receiver() as hook:
        with engine.begin() as conn:
            cid = channel(conn, hook.json_url("hook"), name="ops")
        at = logged_in_app(Role.ADMIN)
        at.run()
        at.switch_page("pages/settings.py").run()
        at.button(key=f"test{cid}").click().run()
        assert not at.exception and any("ops: Test sent" in s.value for s in at.success)
        assert hook.titles() == ["Test notification for channel ops"]
    assert _deliveries(engine) == [(cid, "sent")]
    [(actor, action, target)] = _audit(engine)
    assert actor.startswith("user:admin-") and (action, target) == (
        "channel.test",
        f"channel:{cid}",
    )
