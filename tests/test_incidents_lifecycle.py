"""Incident lifecycle: targets, the transition table, and the responder service's timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select

from monitoring_core.audit import key_actor, user_actor
from monitoring_core.incidents import lifecycle, service
from monitoring_core.incidents.lifecycle import TransitionRefused, check_transition
from monitoring_core.incidents.queries import incident_detail, list_incidents
from monitoring_core.incidents.store import list_timeline
from monitoring_core.schema import audit_log

LONDON = ZoneInfo("Europe/London")
TUESDAY = datetime(2026, 6, 16, 9, 30, tzinfo=UTC)
SATURDAY = datetime(2026, 6, 13, 14, 0, tzinfo=UTC)
ALL = ["open", "investigating", "mitigating", "resolved", "closed"]
ALLOWED = {
    ("open", "investigating"), ("open", "mitigating"), ("open", "resolved"),
    ("investigating", "mitigating"), ("investigating", "resolved"),
    ("mitigating", "investigating"), ("mitigating", "resolved"),
    ("resolved", "closed"), ("resolved", "investigating"),
}  # fmt: skip


@pytest.mark.parametrize(("src", "dst"), [(a, b) for a in ALL for b in ALL])
def test_it_allows_only_the_transitions_of_the_table(src: str, dst: str) -> None:
    if (src, dst) in ALLOWED:
        assert check_transition(src, dst) == dst
    else:
        with pytest.raises(TransitionRefused) as refused:
            check_transition(src, dst)
        assert src in str(refused.value) or "final" in str(refused.value)


@pytest.mark.parametrize(
    ("src", "dst", "message"),
    [
        ("closed", "investigating", "a closed incident is final"),
        ("open", "closed", "cannot move from open to closed; allowed: investigating, mitigating"),
        ("open", "open", "already open"),
        ("open", "done", "unknown status 'done'"),
    ],
)
def test_it_explains_a_refusal(src: str, dst: str, message: str) -> None:
    with pytest.raises(TransitionRefused, match=message):
        check_transition(src, dst)


@pytest.mark.parametrize(
    ("severity", "saturday", "ack", "resolve", "again"),
    [
        ("SEV1", False, 5, 60, 30),
        ("SEV1", True, 2, 30, 15),
        ("SEV2", False, 15, 240, 60),
        ("SEV2", True, 5, 120, 30),
        ("SEV3", False, 60, 1440, None),
        ("SEV4", True, 240, 4320, None),
    ],
)
def test_it_knows_the_response_targets(
    severity: str, saturday: bool, ack: float, resolve: float, again: float | None
) -> None:
    target = lifecycle.response_target(severity, is_saturday=saturday)
    assert (target.acknowledge_minutes, target.resolve_minutes) == (ack, resolve)
    assert target.reescalate_minutes == again


@pytest.mark.parametrize(
    ("acked_after", "now_after", "target", "left", "breached"),
    [
        (None, 1, "acknowledge", 1.0, False),  # Saturday SEV1: 2 minutes to acknowledge
        (None, 3, "acknowledge", -1.0, True),
        (1, 20, "resolve", 10.0, False),  # then 30 minutes to resolve
        (1, 45, "resolve", -15.0, True),
    ],
)
def test_it_measures_age_against_the_target(
    acked_after: int | None, now_after: int, target: str, left: float, breached: bool
) -> None:
    incident = {
        "severity": "SEV1", "is_saturday": True, "detected_at": SATURDAY, "resolved_at": None,
        "acknowledged_at": SATURDAY + timedelta(minutes=acked_after) if acked_after else None,
    }  # fmt: skip
    state = lifecycle.target_state(incident, SATURDAY + timedelta(minutes=now_after))
    assert (state["target"], state["minutes_left"], state["breached"]) == (target, left, breached)


def test_it_rejects_unknown_wedding_impact() -> None:
    assert lifecycle.validate_wedding_impact("high") == "high"
    with pytest.raises(ValueError, match="wedding_day_critical"):
        lifecycle.validate_wedding_impact("huge")


def _declare(engine: Engine, now: datetime = TUESDAY, **body: Any) -> dict[str, Any]:
    fields = {"title": "Payments failing", "severity": "SEV2", "affected_services": ["payments"]}
    with engine.begin() as conn:
        return service.create_incident(
            conn, body={**fields, **body}, actor="alice", role="responder", now=now, tz=LONDON
        )


def test_it_walks_an_incident_through_its_life_writing_the_timeline(engine: Engine) -> None:
    inc = _declare(engine, tags=["checkout"], affected_users_count=120)
    assert inc["tags"] == ["checkout"] and inc["affected_users_count"] == 120
    t = TUESDAY
    with engine.begin() as c:
        kw: dict[str, Any] = {"incident_id": inc["id"], "role": "responder"}
        service.acknowledge_incident(c, actor="bob", now=t + timedelta(minutes=3), **kw)
        service.assign_incident(
            c, assignee="carol", actor="bob", now=t + timedelta(minutes=4), **kw
        )
        service.change_status(
            c, status="investigating", actor="carol", now=t + timedelta(minutes=5), **kw
        )
        service.add_note(
            c, message="DB pool exhausted", actor="carol", now=t + timedelta(minutes=6), **kw
        )
        service.add_note(
            c,
            message="We are on it",
            actor="carol",
            now=t + timedelta(minutes=7),
            is_public=True,
            **kw,
        )
        service.change_status(
            c, status="mitigating", actor="carol", now=t + timedelta(minutes=20), **kw
        )
        service.resolve_incident(
            c,
            resolution_summary="Pool raised",
            root_cause="Pool too small",
            actor="carol",
            now=t + timedelta(minutes=40),
            **kw,
        )
        done = service.close_incident(c, actor="dave", now=t + timedelta(hours=2), **kw)
        timeline = list_timeline(c, incident_id=inc["id"])
        audits = c.execute(select(audit_log.c.action)).scalars().all()
    # fmt: skip
    assert done["status"] == "closed"
    assert done["acknowledged_at"] == t + timedelta(minutes=3)
    assert done["mitigated_at"] == t + timedelta(minutes=20)
    assert done["resolved_at"] == t + timedelta(minutes=40)
    assert done["closed_at"] == t + timedelta(hours=2)
    assert (done["assigned_to"], done["root_cause"]) == ("carol", "Pool too small")
    kinds = [(e["kind"], e["actor"], e["is_public"]) for e in timeline]
    assert kinds == [
        ("opened", "alice", False),
        ("acknowledged", "bob", True),
        ("assigned", "bob", False),
        ("status_changed", "carol", True),
        ("note", "carol", False),
        ("note", "carol", True),
        ("status_changed", "carol", True),
        ("resolved", "carol", True),
        ("closed", "dave", True),
    ]
    assert [e["time"] for e in timeline] == sorted(e["time"] for e in timeline)
    assert "incident.acknowledged" in audits and "incident.create" in audits


def test_timeline_messages_name_people_in_words(engine: Engine) -> None:
    """Messages are read on the incident page and the public status page: `user:bob` is
    "bob", an API key says so; the actor column keeps KIND:NAME."""
    inc = _declare(engine)
    kw: dict[str, Any] = {"incident_id": inc["id"], "role": "responder", "now": TUESDAY}
    with engine.begin() as c:
        service.acknowledge_incident(c, actor=user_actor("bob"), **kw)
        service.assign_incident(c, assignee="carol", actor=user_actor("bob"), **kw)
        service.change_status(c, status="investigating", actor=key_actor("ci"), **kw)
        timeline = list_timeline(c, incident_id=inc["id"])
    said = [(e["actor"], e["message"]) for e in timeline[1:]]
    assert said == [
        ("user:bob", "Acknowledged by bob"),
        ("user:bob", "Assigned to carol by bob"),
        ("apikey:ci", "Status open → investigating by ci (API key)"),
    ]


def test_it_refuses_moves_and_second_acknowledgements_clearly(engine: Engine) -> None:
    inc = _declare(engine)
    kw: dict[str, Any] = {"incident_id": inc["id"], "actor": "bob", "role": "responder"}
    with engine.begin() as c:
        service.acknowledge_incident(c, now=TUESDAY, **kw)
        with pytest.raises(TransitionRefused, match="already acknowledged"):
            service.acknowledge_incident(c, now=TUESDAY, **kw)
        with pytest.raises(TransitionRefused, match="cannot move from open to closed"):
            service.close_incident(c, now=TUESDAY, **kw)
        with pytest.raises(service.IncidentInvalid, match="resolution_summary"):
            service.resolve_incident(c, resolution_summary=" ", now=TUESDAY, **kw)
        assert len(list_timeline(c, incident_id=inc["id"])) == 2  # refusals write nothing


def test_it_reopens_a_resolved_incident(engine: Engine) -> None:
    inc = _declare(engine)
    kw: dict[str, Any] = {"incident_id": inc["id"], "actor": "bob", "role": "responder"}
    with engine.begin() as c:
        service.resolve_incident(c, resolution_summary="restarted", now=TUESDAY, **kw)
        again = service.change_status(c, status="investigating", now=TUESDAY, message="back", **kw)
    assert again["status"] == "investigating" and again["resolved_at"] is None


@pytest.mark.parametrize(
    ("action", "kwargs"),
    [
        (service.acknowledge_incident, {}),
        (service.assign_incident, {"assignee": "x"}),
        (service.change_status, {"status": "investigating"}),
        (service.add_note, {"message": "hi"}),
        (service.resolve_incident, {"resolution_summary": "done"}),
        (service.update_incident, {"body": {"severity": "SEV1"}}),
    ],
)
def test_it_lets_viewers_change_nothing(engine: Engine, action: Any, kwargs: dict) -> None:
    inc = _declare(engine)
    with engine.begin() as c, pytest.raises(service.PermissionDenied):
        action(c, incident_id=inc["id"], actor="v", role="viewer", now=TUESDAY, **kwargs)
    with engine.begin() as c, pytest.raises(service.PermissionDenied):
        service.create_incident(c, body={"title": "x", "severity": "SEV1"}, actor="v",
                                role="viewer", now=TUESDAY)  # fmt: skip


def test_it_validates_a_declared_incident(engine: Engine) -> None:
    with engine.begin() as c, pytest.raises(service.IncidentInvalid) as bad:
        service.create_incident(
            c, body={"severity": "SEV9", "tags": "x", "affected_users_count": -1,
                     "wedding_impact": "huge"}, actor="a", role="admin", now=TUESDAY,
        )  # fmt: skip
    fields = sorted(p["field"] for p in bad.value.problems)
    assert fields == ["affected_users_count", "severity", "tags", "title", "wedding_impact"]


def test_it_records_a_severity_change_and_lists_with_filters(engine: Engine) -> None:
    a = _declare(engine)
    b = _declare(
        engine, SATURDAY, title="Gallery down", severity="SEV3", affected_services=["gallery"]
    )
    with engine.begin() as c:
        service.update_incident(c, incident_id=a["id"], body={"severity": "SEV1"}, actor="bob",
                                role="responder", now=TUESDAY)  # fmt: skip
        detail = incident_detail(c, incident_id=a["id"], now=TUESDAY)
        by_service = list_incidents(c, service="gallery")
        active = list_incidents(c, active_only=True)
    assert detail is not None and detail["severity"] == "SEV1"
    assert detail["timeline"][-1]["kind"] == "severity_changed"
    assert "severity: SEV2 → SEV1" in detail["timeline"][-1]["message"]
    assert [i["id"] for i in by_service] == [b["id"]]
    assert b["is_saturday"] and b["wedding_impact"] == "high"
    assert [i["id"] for i in active] == [a["id"], b["id"]]  # SEV1 before SEV3
