"""Acknowledge from the notification (signed, expiring, single-use links), and resolving an
alert / escalating an incident by hand: pure token checks, then the whole loop through a real
webhook receiver and the real API server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import Engine, insert, select

from monitoring_core import clock
from monitoring_core.flows.alert_cycle import run_evaluation
from monitoring_core.flows.notification_delivery import deliver_due
from monitoring_core.incidents.store import list_timeline
from monitoring_core.notify.acklinks import LinkRefused, mint, verify
from monitoring_core.schema import (
    alert_events,
    alert_instances,
    audit_log,
    escalation_policies,
    notification_outbox,
)
from tests.alerting_support import (
    channel,
    partitions_around,
    point,
    threshold_rule,
    webhook_receiver,
)

TZ = ZoneInfo("Europe/London")
TUESDAY = datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC)
SECRET = b"s" * 32
LINK = re.compile(r"Acknowledge: (http://\S+/ack/(\S+))")


# ---------------------------------------------------------------- the token, pure
def _token(**overrides: Any) -> str:
    args: dict[str, Any] = {"kind": "alert", "target_id": 7, "recipient": "on-call", "now": TUESDAY}
    return mint(SECRET, **(args | overrides))


def test_it_verifies_a_genuine_link() -> None:
    claim = verify(SECRET, _token(), TUESDAY + timedelta(hours=23))
    assert (claim.kind, claim.target_id, claim.recipient) == ("alert", 7, "on-call")
    assert claim.expires_at == TUESDAY.replace(microsecond=0) + timedelta(hours=24)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (_token()[:-2] + "AA", "forged"),  # signature changed
        (mint(b"x" * 32, kind="alert", target_id=7, recipient="r", now=TUESDAY), "forged"),
        ("abc", "malformed"),
        ("a.b.c", "malformed"),
        ("x" * 2000 + ".y", "malformed"),
    ],
)
def test_it_refuses_forged_and_mangled_links(token: str, reason: str) -> None:
    with pytest.raises(LinkRefused) as refused:
        verify(SECRET, token, TUESDAY)
    assert refused.value.reason == reason


def test_it_refuses_a_body_swapped_onto_another_signature() -> None:
    body = _token(target_id=8).split(".")[0]
    signature = _token().split(".")[1]
    with pytest.raises(LinkRefused, match="not issued"):
        verify(SECRET, f"{body}.{signature}", TUESDAY)


def test_it_refuses_an_expired_link() -> None:
    with pytest.raises(LinkRefused) as refused:
        verify(SECRET, _token(), TUESDAY + timedelta(hours=24, seconds=1))
    assert refused.value.reason == "expired"


# ---------------------------------------------------------------- the loop, for real
@pytest.fixture
def paged(engine: Engine) -> Iterator[dict[str, Any]]:
    """A firing critical alert whose page reached a real webhook; its link and ids."""
    partitions_around(engine, TUESDAY)
    with webhook_receiver() as receiver:
        with engine.begin() as conn:
            hook = channel(conn, receiver.json_url(), name="on-call phone")
            threshold_rule(conn, TUESDAY, notification_channels=[hook], severity_level="high")
        point(engine, TUESDAY - timedelta(seconds=5), 500)
        run_evaluation(engine, TUESDAY, tz=TZ, public_url="http://ui.test")
        deliver_due(
            engine, TUESDAY, public_url="http://ui.test", api_public_url="http://api.test:8000"
        )
        assert receiver.received, "the page did not reach the receiver"
        message = receiver.received[0]["body"]["message"]
        with engine.connect() as conn:
            instance_id = conn.execute(select(alert_instances.c.id)).scalar_one()
        yield {"message": message, "instance_id": instance_id, "channel": hook}


def _link(message: str, api_server: str) -> str:
    found = LINK.search(message)
    assert found, message
    assert found.group(1).startswith("http://api.test:8000/ack/")
    return f"{api_server}/ack/{found.group(2)}"


def test_it_acknowledges_once_from_the_link_in_the_page(
    paged: dict[str, Any], api_server: str, engine: Engine
) -> None:
    url = _link(paged["message"], api_server)
    with clock.frozen(TUESDAY + timedelta(minutes=3)):
        shown = httpx.get(url)
        assert shown.status_code == 200
        assert "Checkout slow" in shown.text and "on-call phone" in shown.text
        assert '<form method="post">' in shown.text
        with engine.connect() as conn:  # looking acknowledges nothing
            assert conn.execute(select(alert_instances.c.status)).scalar_one() == "firing"
        done = httpx.post(url, headers={"Accept": "application/json"})
        assert done.status_code == 200, done.text
        assert done.json()["acknowledged_by"] == "link:on-call phone"
        again = httpx.post(url)
        assert again.status_code == 410 and "already been used" in again.text
    with engine.connect() as conn:
        row = conn.execute(select(alert_instances)).one()
        assert (row.status, row.acknowledged_by) == ("acknowledged", "link:on-call phone")
        actors = conn.execute(select(audit_log.c.actor, audit_log.c.action)).all()
        assert ("link:on-call phone", "alert.acknowledge") in actors


def test_it_refuses_expired_and_forged_links_over_http(
    paged: dict[str, Any], api_server: str, engine: Engine
) -> None:
    url = _link(paged["message"], api_server)
    with clock.frozen(TUESDAY + timedelta(hours=25)):
        expired = httpx.post(url, headers={"Accept": "application/json"})
    assert expired.status_code == 410 and expired.json()["refused"] == "expired"
    with clock.frozen(TUESDAY + timedelta(minutes=1)):
        forged = httpx.post(url[:-3] + "AAA")
        garbage = httpx.get(f"{api_server}/ack/not-a-token")
        nul = httpx.get(f"{api_server}/ack/a%00b")
    assert forged.status_code == 403 and garbage.status_code == 403
    assert nul.status_code == 422  # NUL bytes are refused before any route
    with engine.connect() as conn:
        assert conn.execute(select(alert_instances.c.status)).scalar_one() == "firing"


def test_it_escapes_what_the_link_page_shows(api_server: str, engine: Engine) -> None:
    partitions_around(engine, TUESDAY)
    with engine.begin() as conn:
        threshold_rule(conn, TUESDAY, alert_name="<script>alert(1)</script>")
    point(engine, TUESDAY - timedelta(seconds=5), 500)
    run_evaluation(engine, TUESDAY, tz=TZ, public_url="http://ui.test")
    from monitoring_core.notify.acklinks import link_secret

    with engine.begin() as conn:
        instance_id = conn.execute(select(alert_instances.c.id)).scalar_one()
        token = mint(
            link_secret(conn),
            kind="alert",
            target_id=instance_id,
            recipient="<b>x</b>",
            now=TUESDAY,
        )
    with clock.frozen(TUESDAY):
        page = httpx.get(f"{api_server}/ack/{token}").text
    assert "<script>" not in page and "&lt;script&gt;" in page and "<b>x</b>" not in page


def test_it_resolves_an_alert_by_hand(
    paged: dict[str, Any], api_server: str, admin_key: str, engine: Engine
) -> None:
    headers = {"Authorization": f"Bearer {admin_key}"}
    url = f"{api_server}/api/admin/alerts/{paged['instance_id']}/resolve"
    with clock.frozen(TUESDAY + timedelta(minutes=2)):
        done = httpx.post(url, headers=headers, json={"reason": "deploy rolled back"})
        twice = httpx.post(url, headers=headers, json={})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "resolved" and twice.status_code == 409
    with engine.connect() as conn:
        event = conn.execute(
            select(alert_events.c.to_status, alert_events.c.message).order_by(
                alert_events.c.id.desc()
            )
        ).first()
        kinds = conn.execute(select(notification_outbox.c.kind)).scalars().all()
    assert event is not None and event.to_status == "resolved"
    assert "resolved by hand" in event.message and "deploy rolled back" in event.message
    assert "resolved" in kinds  # the channel hears it


def test_it_escalates_an_incident_by_hand_onto_its_timeline(
    api_server: str, admin_key: str, engine: Engine
) -> None:
    headers = {"Authorization": f"Bearer {admin_key}"}
    with engine.begin() as conn:
        first = channel(conn, "json://127.0.0.1:9/first", name="first")
        second = channel(conn, "json://127.0.0.1:9/second", name="second")
        conn.execute(
            insert(escalation_policies).values(
                name="Default",
                steps=[
                    {"after_minutes": 0, "channels": [first]},
                    {"after_minutes": 30, "channels": [second]},
                ],
            )
        )
    with clock.frozen(TUESDAY):
        created = httpx.post(
            f"{api_server}/api/admin/incidents",
            headers=headers,
            json={"title": "Payments failing", "severity": "SEV2"},
        )
        assert created.status_code == 201, created.text
        incident_id = created.json()["id"]
        url = f"{api_server}/api/admin/incidents/{incident_id}/escalate"
        one = httpx.post(url, headers=headers)
        two = httpx.post(url, headers=headers)
        three = httpx.post(url, headers=headers)  # exhausted: the last step again
    assert [r.json()["step"] for r in (one, two, three)] == [1, 2, 2]
    with engine.connect() as conn:
        channels = (
            conn.execute(
                select(notification_outbox.c.channel_id).order_by(notification_outbox.c.id)
            )
            .scalars()
            .all()
        )
        timeline = list_timeline(conn, incident_id=incident_id)
    assert channels == [first, second, second]
    escalated = [e for e in timeline if e["kind"] == "escalated"]
    assert len(escalated) == 3 and escalated[0]["actor"].startswith("apikey:")
    # the message names the key in words; the actor column keeps KIND:NAME
    assert "(API key))" in escalated[0]["message"] and "apikey:" not in escalated[0]["message"]
    missing = httpx.post(f"{api_server}/api/admin/incidents/987654/escalate", headers=headers)
    assert missing.status_code == 404
