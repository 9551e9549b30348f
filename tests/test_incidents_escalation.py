"""Incident escalation with frozen time: default and wedding-day pace, acknowledgement, re-paging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine, insert, select

from monitoring_core.incidents import service
from monitoring_core.incidents.escalation import escalate_incidents, pages_due
from monitoring_core.incidents.store import list_timeline
from monitoring_core.policies.steps import Step
from monitoring_core.schema import escalation_policies, notification_outbox
from tests.alerting_support import channel

LONDON = ZoneInfo("Europe/London")
TUESDAY = datetime(2026, 6, 16, 9, 30, tzinfo=UTC)
SATURDAY = datetime(2026, 6, 13, 14, 0, tzinfo=UTC)
STEPS = [Step(0, (1,)), Step(15, (2,)), Step(60, (3,))]


def _inc(**kw: Any) -> dict[str, Any]:
    base = {"id": 1, "severity": "SEV1", "status": "open", "escalation_step": 0,
            "detected_at": TUESDAY, "acknowledged_at": None, "last_escalated_at": None}  # fmt: skip
    return {**base, **kw}


@pytest.mark.parametrize(
    ("incident", "minutes", "expected"),
    [
        (_inc(), 0, [(0, "unacknowledged")]),
        (_inc(escalation_step=1), 14, []),
        (_inc(escalation_step=1), 15, [(1, "unacknowledged")]),
        (_inc(), 61, [(0, "unacknowledged"), (1, "unacknowledged"), (2, "unacknowledged")]),
        (_inc(severity="SEV3"), 61, []),  # only SEV1/SEV2 page
        (_inc(status="resolved"), 61, []),
        # acknowledged: quiet until the re-page timeout (SEV1 weekday 30 min) ...
        (_inc(escalation_step=1, acknowledged_at=TUESDAY), 29, []),
        (_inc(escalation_step=1, acknowledged_at=TUESDAY), 30, [(1, "not_mitigated")]),
        # ... counted again from the last page, capped at the last step
        (_inc(escalation_step=3, acknowledged_at=TUESDAY,
              last_escalated_at=TUESDAY + timedelta(minutes=30)), 59, []),
        (_inc(escalation_step=3, acknowledged_at=TUESDAY,
              last_escalated_at=TUESDAY + timedelta(minutes=30)), 60, [(2, "not_mitigated")]),
        (_inc(status="mitigating", acknowledged_at=TUESDAY), 300, []),
        (_inc(severity="SEV2", acknowledged_at=TUESDAY, escalation_step=1), 59, []),
        (_inc(severity="SEV2", acknowledged_at=TUESDAY, escalation_step=1), 60, [(1, "not_mitigated")]),
    ],
)  # fmt: skip
def test_it_decides_the_pages_due(incident: dict, minutes: int, expected: list) -> None:
    now = TUESDAY + timedelta(minutes=minutes)
    pages = pages_due(incident, STEPS, now=now, repeat=False, is_saturday=False)
    assert [(p.index, p.reason) for p in pages] == expected


def test_it_waits_while_a_linked_alert_climbs_its_own_policy() -> None:
    now = TUESDAY + timedelta(minutes=20)
    assert (
        pages_due(_inc(), STEPS, now=now, repeat=False, is_saturday=False, alert_firing=True) == []
    )
    pages = pages_due(_inc(), STEPS, now=now, repeat=False, is_saturday=False, done=2)
    assert pages == []  # the alert already sent steps 1 and 2: step 3 is due at 60 min


def test_it_repages_faster_on_saturday() -> None:
    acked = _inc(acknowledged_at=TUESDAY, escalation_step=1)
    at = TUESDAY + timedelta(minutes=15)
    assert pages_due(acked, STEPS, now=at, repeat=False, is_saturday=False) == []
    assert len(pages_due(acked, STEPS, now=at, repeat=False, is_saturday=True)) == 1


def _policy(conn: Connection, name: str, steps: list[dict], wedding: bool = False) -> None:
    conn.execute(insert(escalation_policies).values(name=name, steps=steps, is_wedding_day=wedding))


@pytest.fixture
def policies(engine: Engine) -> dict[str, int]:
    with engine.begin() as conn:
        ids = {
            n: channel(conn, f"json://127.0.0.1:9/{n}", n) for n in ("oncall", "lead", "cto", "all")
        }
        _policy(
            conn,
            "Default",
            [
                {"after_minutes": 0, "channels": [ids["oncall"]]},
                {"after_minutes": 15, "channels": [ids["lead"]]},
                {"after_minutes": 60, "channels": [ids["cto"]]},
            ],
        )
        _policy(
            conn,
            "Wedding day",
            [
                {"after_minutes": 0, "channels": [ids["oncall"], ids["lead"]]},
                {"after_minutes": 5, "channels": [ids["cto"]]},
                {"after_minutes": 15, "channels": [ids["all"]]},
            ],
            wedding=True,
        )
    return ids  # fmt: skip


def _declare(engine: Engine, at: datetime, severity: str = "SEV1") -> int:
    with engine.begin() as conn:
        inc = service.create_incident(conn, body={"title": "Checkout down", "severity": severity},
                                      actor="alice", role="responder", now=at, tz=LONDON)  # fmt: skip
    return int(inc["id"])


def _run(engine: Engine, at: datetime) -> int:
    with engine.begin() as conn:
        return escalate_incidents(conn, now=at, tz=LONDON, public_url="http://ui")


def _paged(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(notification_outbox.c.channel_id).order_by(notification_outbox.c.id)
        )
        return [int(r) for r in rows.scalars()]


def test_it_climbs_the_default_policy_until_acknowledged(engine: Engine, policies: dict) -> None:
    incident_id = _declare(engine, TUESDAY)
    assert _run(engine, TUESDAY) == 1
    assert _run(engine, TUESDAY + timedelta(minutes=1)) == 0  # step 1 is sent once
    assert _run(engine, TUESDAY + timedelta(minutes=15)) == 1
    assert _paged(engine) == [policies["oncall"], policies["lead"]]
    with engine.begin() as conn:
        service.acknowledge_incident(conn, incident_id=incident_id, actor="bob", role="responder",
                                     now=TUESDAY + timedelta(minutes=16))  # fmt: skip
    assert _run(engine, TUESDAY + timedelta(minutes=45)) == 0  # acknowledged: the climb stops
    # still investigating 30 minutes after the acknowledgement: the next step is paged
    assert _run(engine, TUESDAY + timedelta(minutes=46)) == 1
    assert _paged(engine)[-1] == policies["cto"]
    with engine.begin() as conn:
        service.change_status(conn, incident_id=incident_id, status="mitigating", actor="bob",
                              role="responder", now=TUESDAY + timedelta(minutes=50))  # fmt: skip
    assert _run(engine, TUESDAY + timedelta(hours=5)) == 0
    with engine.connect() as conn:
        entries = [
            e for e in list_timeline(conn, incident_id=incident_id) if e["kind"] == "escalated"
        ]
        outbox = conn.execute(
            select(notification_outbox.c.incident_id, notification_outbox.c.title)
        ).all()
    assert [(e["details"]["step"], e["details"]["reason"], e["actor"]) for e in entries] == [
        (1, "unacknowledged", "system:escalation"),
        (2, "unacknowledged", "system:escalation"),
        (3, "not_mitigated", "system:escalation"),
    ]
    assert all(r.incident_id == incident_id and "INC-2026-0001" in r.title for r in outbox)  # fmt: skip


def test_it_climbs_at_wedding_day_pace_on_saturday(engine: Engine, policies: dict) -> None:
    _declare(engine, SATURDAY)
    assert _run(engine, SATURDAY) == 1
    assert _run(engine, SATURDAY + timedelta(minutes=4)) == 0
    assert _run(engine, SATURDAY + timedelta(minutes=5)) == 1
    assert _run(engine, SATURDAY + timedelta(minutes=15)) == 1
    p = policies
    assert _paged(engine) == [p["oncall"], p["lead"], p["cto"], p["all"]]


def test_it_leaves_sev3_and_resolved_incidents_alone(engine: Engine, policies: dict) -> None:
    _declare(engine, TUESDAY, severity="SEV3")
    resolved = _declare(engine, TUESDAY)
    with engine.begin() as conn:
        service.resolve_incident(conn, incident_id=resolved, resolution_summary="flap",
                                 actor="bob", role="responder", now=TUESDAY)  # fmt: skip
    assert _run(engine, TUESDAY + timedelta(hours=2)) == 0


def test_it_follows_an_alert_opened_incident_without_paging_twice(
    engine: Engine, policies: dict
) -> None:
    """Alert path: a critical alert opens the incident, its own climb pages; the incident's
    climb waits, and acknowledging the alert acknowledges the incident (timeline on both)."""
    from monitoring_core.flows.alert_actions import acknowledge_alert
    from monitoring_core.flows.alert_cycle import run_evaluation
    from monitoring_core.flows.alert_escalation import escalate_unacknowledged
    from monitoring_core.schema import alert_instances, incidents
    from tests.alerting_support import partitions_around, point, threshold_rule

    partitions_around(engine, TUESDAY)
    with engine.begin() as conn:
        threshold_rule(conn, TUESDAY, escalation_policy="Default", severity_level="critical",
                       service_name="payments")  # fmt: skip
    point(engine, TUESDAY - timedelta(seconds=5), 500)
    run_evaluation(engine, TUESDAY, tz=LONDON, public_url="http://ui")
    with engine.begin() as conn:
        alert_id = int(conn.execute(select(alert_instances.c.id)).scalar_one())
        incident_id = int(conn.execute(select(incidents.c.id)).scalar_one())
        escalate_unacknowledged(conn, now=TUESDAY, tz=LONDON, public_url="http://ui")
    assert _run(engine, TUESDAY + timedelta(minutes=1)) == 0  # the alert's climb pages instead
    with engine.begin() as conn:
        acknowledge_alert(conn, instance_id=alert_id, actor="bob", role="responder",
                          now=TUESDAY + timedelta(minutes=2))  # fmt: skip
        acked = conn.execute(select(incidents.c.acknowledged_at)).scalar_one()
        kinds = [(e["kind"], e["actor"]) for e in list_timeline(conn, incident_id=incident_id)]
    assert acked == TUESDAY + timedelta(minutes=2)
    assert kinds[0][0] == "opened" and ("alert_acknowledged", "bob") in kinds
    assert _run(engine, TUESDAY + timedelta(minutes=20)) == 0
    # acknowledged 30 minutes ago and still open: the incident re-pages on its own
    assert _run(engine, TUESDAY + timedelta(minutes=32)) == 1


def test_it_puts_delivered_pages_on_the_timeline(engine: Engine) -> None:
    from monitoring_core.flows.notification_delivery import deliver_due
    from monitoring_core.incidents.notifications import record_notifications
    from tests.alerting_support import webhook_receiver

    with webhook_receiver() as hook:
        with engine.begin() as conn:
            oncall = channel(conn, hook.json_url(), "oncall")
            _policy(conn, "Default", [{"after_minutes": 0, "channels": [oncall]}])
        incident_id = _declare(engine, TUESDAY)
        assert _run(engine, TUESDAY) == 1
        deliver_due(engine, TUESDAY, worker_id="test")
        assert hook.titles() == ["[ESCALATED] SEV1: INC-2026-0001 Checkout down"]
    with engine.begin() as conn:
        assert record_notifications(conn, now=TUESDAY) == 1
        assert record_notifications(conn, now=TUESDAY) == 0  # once per outbox row
        last = list_timeline(conn, incident_id=incident_id)[-1]
    assert (last["kind"], last["actor"]) == ("notification_sent", "system:notify")
    assert (
        last["message"]
        == "Notification sent to oncall: [ESCALATED] SEV1: INC-2026-0001 Checkout down"
    )


def test_it_skips_a_deleted_channel_instead_of_failing(engine: Engine, policies: dict) -> None:
    from monitoring_core.schema import notification_channels

    with engine.begin() as conn:
        conn.execute(
            notification_channels.delete().where(notification_channels.c.id == policies["oncall"])
        )
    _declare(engine, TUESDAY)
    assert _run(engine, TUESDAY) == 1  # the page is recorded, with nobody left to send it to
    assert _paged(engine) == []
    assert _run(engine, TUESDAY + timedelta(minutes=15)) == 1
    assert _paged(engine) == [policies["lead"]]
