"""Escalation timing (default and wedding-day pace), acknowledgement, suppression, roles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine, insert, select

from monitoring_core.alerts import service
from monitoring_core.alerts.store import list_alert_history
from monitoring_core.flows import alert_actions as actions
from monitoring_core.flows.alert_cycle import run_evaluation
from monitoring_core.flows.alert_escalation import escalate_unacknowledged
from monitoring_core.incidents.store import list_timeline
from monitoring_core.policies.steps import Step, due_steps, parse_steps, step_due_at
from monitoring_core.schema import audit_log, escalation_policies, incidents, notification_outbox
from tests.alerting_support import channel, partitions_around, point, threshold_rule

TZ = ZoneInfo("Europe/London")
TUESDAY = datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC)
SATURDAY = datetime(2026, 3, 14, 12, 0, 30, tzinfo=UTC)
MIN = timedelta(minutes=1)
URL = "http://ui.test"
START = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
STEPS = [Step(0, (1,)), Step(15, (2,)), Step(60, (3,))]


@pytest.mark.parametrize(
    ("done", "minutes", "repeat", "expected"),
    [
        (0, 0, False, [0]),
        (1, 14, False, []),
        (1, 15, False, [1]),
        (0, 60, False, [0, 1, 2]),  # a worker that was down catches up
        (3, 500, False, []),  # exhausted without repeat
        (3, 60, True, [3]),  # repeat: round two starts right after the last step's delay
        (3, 75, True, [3, 4]),
    ],
)
def test_it_finds_due_steps(done: int, minutes: int, repeat: bool, expected: list[int]) -> None:
    due = due_steps(STEPS, done=done, start=START, now=START + minutes * MIN, repeat=repeat)
    assert [index for index, _ in due] == expected


def test_it_cannot_repeat_a_policy_whose_last_step_is_immediate() -> None:
    assert step_due_at([Step(0, (1,))], 1, start=START, repeat=True) is None


@pytest.mark.parametrize(
    "raw",
    ["x", [{"after_minutes": -1, "channels": []}], [{"after_minutes": 1, "channels": ["a"]}], [3]],
)
def test_it_rejects_bad_steps(raw: Any) -> None:
    with pytest.raises(ValueError):
        parse_steps(raw)


# ---------------------------------------------------------------- with the database
def _policy(conn: Connection, name: str, steps: list[dict], wedding: bool = False) -> int:
    return int(
        conn.execute(
            insert(escalation_policies)
            .values(name=name, steps=steps, is_wedding_day=wedding)
            .returning(escalation_policies.c.id)
        ).scalar_one()
    )


@pytest.fixture
def setup(engine: Engine) -> dict[str, Any]:
    """Channels oncall/lead/cto/everyone, the default and the wedding-day policies, a rule."""
    for moment in (TUESDAY, SATURDAY):
        partitions_around(engine, moment)
    with engine.begin() as conn:
        ids = {
            n: channel(conn, f"json://127.0.0.1:9/{n}", name=n)
            for n in ("oncall", "lead", "cto", "all")
        }
        default = _policy(conn, "Default", [
            {"after_minutes": 0, "channels": [ids["oncall"]]},
            {"after_minutes": 15, "channels": [ids["lead"]]},
        ])  # fmt: skip
        _policy(conn, "Wedding day", [
            {"after_minutes": 0, "channels": [ids["oncall"], ids["lead"]]},
            {"after_minutes": 5, "channels": [ids["cto"]]},
            {"after_minutes": 15, "channels": [ids["all"]]},
        ], wedding=True)  # fmt: skip
        threshold_rule(conn, TUESDAY, escalation_policy="Default", severity_level="critical",
                       service_name="payments", weekend_escalation=True)  # fmt: skip
    return {"channels": ids, "default": default}


def _fire(engine: Engine, at: datetime) -> int:
    point(engine, at - timedelta(seconds=5), 500)
    run_evaluation(engine, at, tz=TZ, public_url=URL)
    with engine.connect() as conn:
        return int(
            conn.execute(select(notification_outbox.c.alert_instance_id)).scalars().first() or 1
        )


def _climb(engine: Engine, at: datetime) -> int:
    with engine.begin() as conn:
        return escalate_unacknowledged(conn, now=at, tz=TZ, public_url=URL)


def _escalations(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(notification_outbox.c.channel_id)
                .where(notification_outbox.c.kind == "escalation")
                .order_by(notification_outbox.c.id)
            ).scalars()
        )


def test_it_climbs_the_default_policy_until_acknowledged(engine: Engine, setup: dict) -> None:
    ch = setup["channels"]
    _fire(engine, TUESDAY)
    assert _climb(engine, TUESDAY) == 1 and _escalations(engine) == [ch["oncall"]]
    assert _climb(engine, TUESDAY + 14 * MIN) == 0
    assert _climb(engine, TUESDAY + 15 * MIN) == 1
    assert _escalations(engine) == [ch["oncall"], ch["lead"]]
    assert _climb(engine, TUESDAY + 120 * MIN) == 0  # exhausted, no repeat


def test_it_climbs_at_wedding_day_pace_on_saturday(engine: Engine, setup: dict) -> None:
    ch = setup["channels"]
    _fire(engine, SATURDAY)
    for minutes, expected in ((0, 1), (4, 0), (5, 1), (14, 0), (15, 1)):
        assert _climb(engine, SATURDAY + minutes * MIN) == expected, minutes
    assert _escalations(engine) == [ch["oncall"], ch["lead"], ch["cto"], ch["all"]]


@pytest.mark.parametrize(
    ("severity", "weekend_escalation", "minimum", "wedding_pace"),
    [
        ("critical", True, None, True),
        ("high", True, None, True),  # the default minimum is high
        ("medium", True, None, True),  # marked rules fire one level higher on Saturdays
        ("low", True, None, False),
        ("info", True, None, False),
        ("critical", False, None, False),  # not marked: its own policy, even on Saturday
        ("low", True, "medium", True),  # the setting lowers the bar
    ],
)
def test_it_uses_the_wedding_day_policy_only_for_marked_rules_at_or_above_the_minimum(
    engine: Engine,
    setup: dict,
    severity: str,
    weekend_escalation: bool,
    minimum: str | None,
    wedding_pace: bool,
) -> None:
    from monitoring_core.schema import alert_rules, settings

    with engine.begin() as conn:
        conn.execute(
            alert_rules.update().values(
                severity_level=severity, weekend_escalation=weekend_escalation
            )
        )
        if minimum:
            conn.execute(insert(settings).values(key="wedding_day_min_severity", value=minimum))
    _fire(engine, SATURDAY)
    sent = sum(_climb(engine, SATURDAY + m * MIN) for m in (0, 5, 15))
    # wedding-day policy: steps at 0, 5 and 15 min; Default: steps at 0 and 15 min
    assert sent == (3 if wedding_pace else 2)


def test_it_stops_escalating_once_acknowledged(engine: Engine, setup: dict) -> None:
    instance_id = _fire(engine, TUESDAY)
    _climb(engine, TUESDAY)
    with engine.begin() as conn:
        acked = actions.acknowledge_alert(conn, instance_id=instance_id, actor="bob",
                                          role="responder", now=TUESDAY + MIN)  # fmt: skip
    assert acked["status"] == "acknowledged" and acked["acknowledged_by"] == "bob"
    assert _climb(engine, TUESDAY + 60 * MIN) == 0
    with engine.connect() as conn:
        incident = conn.execute(select(incidents)).one()
        kinds = [e["kind"] for e in list_timeline(conn, incident_id=incident.id)]
        audit = conn.execute(select(audit_log.c.actor, audit_log.c.action)).all()
        history = list_alert_history(conn, start=TUESDAY - MIN, end=TUESDAY + 2 * MIN)
    assert incident.acknowledged_at == TUESDAY + MIN
    assert kinds == ["opened", "escalated", "alert_acknowledged"]
    assert ("bob", "alert.acknowledge") in audit
    assert history[0]["to_status"] == "acknowledged" and history[0]["actor"] == "bob"


def test_it_escalates_on_demand_and_suppresses_for_a_while(engine: Engine, setup: dict) -> None:
    ch = setup["channels"]
    instance_id = _fire(engine, TUESDAY)
    with engine.begin() as conn:
        escalated = actions.escalate_alert(conn, instance_id=instance_id, actor="bob", role="responder",
                                           now=TUESDAY, tz=TZ, public_url=URL)  # fmt: skip
        suppressed = actions.suppress_alert(conn, instance_id=instance_id, actor="bob", role="responder",
                                            now=TUESDAY, minutes=30, reason="known issue")  # fmt: skip
    assert escalated["escalation_step"] == 1 and _escalations(engine) == [ch["oncall"]]
    assert suppressed["status"] == "suppressed"
    assert suppressed["suppressed_until"] == TUESDAY + 30 * MIN


@pytest.mark.parametrize(
    ("action", "role", "allowed"),
    [
        ("acknowledge", "viewer", False),
        ("acknowledge", "responder", True),
        ("suppress", "viewer", False),
        ("suppress", "admin", True),
        ("escalate", "viewer", False),
        ("escalate", "responder", True),
        ("create_rule", "responder", False),
        ("create_rule", "admin", True),
        ("acknowledge", "root", False),
    ],
)
def test_it_checks_roles_on_every_action(
    engine: Engine, setup: dict, action: str, role: str, allowed: bool
) -> None:
    instance_id = _fire(engine, TUESDAY)
    calls = {
        "acknowledge": lambda c: actions.acknowledge_alert(c, instance_id=instance_id, actor="u", role=role, now=TUESDAY),
        "suppress": lambda c: actions.suppress_alert(c, instance_id=instance_id, actor="u", role=role, now=TUESDAY, minutes=5, reason="r"),
        "escalate": lambda c: actions.escalate_alert(c, instance_id=instance_id, actor="u", role=role, now=TUESDAY, tz=TZ, public_url=URL),
        "create_rule": lambda c: service.rule_create(c, body={"alert_name": "x", "severity_level": "low", "condition_config": {"type": "absence", "metric": "api.requests"}}, actor="u", role=role, now=TUESDAY),
    }  # fmt: skip
    with engine.begin() as conn:
        if allowed:
            calls[action](conn)
        else:
            with pytest.raises(actions.PermissionDenied):
                calls[action](conn)
    with engine.connect() as conn:
        audited = conn.execute(select(audit_log.c.actor)).scalars().all()
    assert audited == (["u"] if allowed else [])  # every allowed action is audited, no other


def test_it_refuses_to_acknowledge_a_resolved_alert(engine: Engine, setup: dict) -> None:
    instance_id = _fire(engine, TUESDAY)
    point(engine, TUESDAY + MIN - timedelta(seconds=5), 1)
    run_evaluation(engine, TUESDAY + MIN, tz=TZ, public_url=URL)
    with engine.begin() as conn, pytest.raises(actions.ActionRefused):
        actions.acknowledge_alert(
            conn, instance_id=instance_id, actor="u", role="admin", now=TUESDAY
        )
