"""On call with the database: escalation to whoever the schedule says through a real local
webhook, the default route for a rule without channels, people's contact methods, role checks
and the audit log, now/next."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine, insert, select

from jobs.supervisor import first_run_credentials
from monitoring_core.audit import user_actor
from monitoring_core.config import load_settings
from monitoring_core.flows.alert_cycle import run_evaluation
from monitoring_core.flows.alert_escalation import escalate_unacknowledged
from monitoring_core.flows.notification_delivery import deliver_due
from monitoring_core.incidents.escalation import escalate_incidents
from monitoring_core.incidents.store import open_incident
from monitoring_core.oncall import queries, service, store
from monitoring_core.oncall.routing import recipients, route_channels
from monitoring_core.oncall.validate import OncallInvalid
from monitoring_core.policies.store import PolicyInvalid, create_policy
from monitoring_core.roles import PermissionDenied
from monitoring_core.schema import audit_log, notification_outbox, users
from tests.alerting_support import partitions_around, point, threshold_rule, webhook_receiver

TZ = ZoneInfo("Europe/London")
TUESDAY = datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC)  # week of Monday 9 March: ben
ADMIN = user_actor("root")
URL = "http://ui.test"


def _user(conn: Connection, name: str, role: str = "responder") -> int:
    values = {"username": name, "password_hash": "x", "role": role}
    return int(conn.execute(insert(users).values(**values).returning(users.c.id)).scalar_one())


@pytest.fixture
def team(engine: Engine) -> dict[str, Any]:
    """ann and ben take weekly turns from Monday 2 March 09:00 on schedule "Primary"."""
    with engine.begin() as conn:
        ids = {name: _user(conn, name) for name in ("ann", "ben")}
        ids["root"] = _user(conn, "root", "admin")
        ids["viewer"] = _user(conn, "vic", "viewer")
        body = {"name": "Primary", "layers": [
            {"rotation": "weekly", "starts_on": "2026-03-02", "handoff_time": "09:00",
             "members": [ids["ann"], ids["ben"]]},
        ]}  # fmt: skip
        schedule = service.save_schedule(
            conn, schedule_id=None, body=body, actor=ADMIN, role="admin", now=TUESDAY
        )
    return {**ids, "schedule": schedule["id"]}


def _contacts(engine: Engine, team: dict[str, Any], hook_url: str) -> dict[str, int]:
    found = {}
    with engine.begin() as conn:
        for name in ("ann", "ben", "root"):
            saved = service.add_contact_method(
                conn,
                user_id=team[name],
                body={"label": "webhook", "url": f"{hook_url}/{name}"},
                actor=ADMIN,
                role="admin",
                now=TUESDAY,
            )
            found[name] = saved["id"]
    return found


def test_it_escalates_to_the_on_call_persons_webhook(engine: Engine, team: dict) -> None:
    partitions_around(engine, TUESDAY)
    with webhook_receiver() as hook:
        _contacts(engine, team, hook.json_url("people"))
        with engine.begin() as conn:
            create_policy(conn, {"name": "Default", "steps": [
                {"after_minutes": 0, "schedules": [team["schedule"]]},
            ]})  # fmt: skip
            threshold_rule(conn, TUESDAY, severity_level="high")
            service.save_route(conn, body={"min_severity": "info", "targets": {
                "users": [team["root"]]}}, actor=ADMIN, role="admin", now=TUESDAY)  # fmt: skip
        point(engine, TUESDAY - timedelta(seconds=5), 500)
        run_evaluation(engine, TUESDAY, tz=TZ, public_url=URL)  # firing: the default route
        with engine.begin() as conn:
            assert escalate_unacknowledged(conn, now=TUESDAY, tz=TZ, public_url=URL) == 1
        report = deliver_due(engine, TUESDAY, worker_id="t", public_url=URL)
    assert report.sent == 2
    paths = sorted(r["path"] for r in hook.received)
    assert paths == ["/people/ben", "/people/root"]  # ben's week; root by the default route
    escalation = next(r for r in hook.received if r["path"] == "/people/ben")
    assert "Checkout slow" in escalation["body"]["title"]


def test_it_follows_an_override_and_the_handoff(engine: Engine, team: dict) -> None:
    contacts = _contacts(engine, team, "json://127.0.0.1:9/x")
    targets = {"schedules": [team["schedule"]]}
    with engine.begin() as conn:
        assert recipients(conn, targets, now=TUESDAY, tz=TZ) == [contacts["ben"]]
        monday = datetime(2026, 3, 16, 9, 0, tzinfo=UTC)  # 09:00 GMT: ann's week begins
        assert recipients(conn, targets, now=monday - timedelta(seconds=1), tz=TZ) == [
            contacts["ben"]
        ]
        assert recipients(conn, targets, now=monday, tz=TZ) == [contacts["ann"]]
        service.add_override(
            conn,
            schedule_id=team["schedule"],
            body={"user_id": team["ann"], "starts_at": "2026-03-10T11:00:00+00:00",
                  "ends_at": "2026-03-10T15:00:00+00:00", "reason": "ben at the dentist"},
            actor=user_actor("ann"),
            role="responder",
            now=TUESDAY,
        )  # fmt: skip
        assert recipients(conn, targets, now=TUESDAY, tz=TZ) == [contacts["ann"]]
        (summary,) = queries.on_call_now_and_next(conn, now=TUESDAY, tz=TZ)
    assert summary["now"]["username"] == "ann" and summary["now"]["source"] == "override"
    assert summary["next"]["username"] == "ben"
    assert summary["next"]["starts_at"] == datetime(2026, 3, 10, 15, tzinfo=UTC)


def test_it_reaches_someone_for_a_rule_without_channels_or_policy(engine: Engine, team) -> None:
    contacts = _contacts(engine, team, "json://127.0.0.1:9/x")
    with engine.begin() as conn:
        assert route_channels(conn, "critical", now=TUESDAY, tz=TZ) == []
        service.save_route(conn, body={"min_severity": "info", "targets": {
            "users": [team["root"]]}}, actor=ADMIN, role="admin", now=TUESDAY)  # fmt: skip
        service.save_route(conn, body={"min_severity": "high", "targets": {
            "schedules": [team["schedule"]]}}, actor=ADMIN, role="admin", now=TUESDAY)  # fmt: skip
        assert route_channels(conn, "critical", now=TUESDAY, tz=TZ) == [contacts["ben"]]
        assert route_channels(conn, "high", now=TUESDAY, tz=TZ) == [contacts["ben"]]
        assert route_channels(conn, "medium", now=TUESDAY, tz=TZ) == [contacts["root"]]
    partitions_around(engine, TUESDAY)
    with engine.begin() as conn:
        threshold_rule(conn, TUESDAY, severity_level="critical")
    point(engine, TUESDAY - timedelta(seconds=5), 500)
    run_evaluation(engine, TUESDAY, tz=TZ, public_url=URL)
    with engine.connect() as conn:
        sent = conn.execute(select(notification_outbox.c.channel_id, notification_outbox.c.kind))
        assert sorted(sent) == [(contacts["ben"], "firing")]


def test_it_lets_a_responder_cover_only_for_themselves(engine: Engine, team: dict) -> None:
    body = {"user_id": team["ben"], "starts_at": "2026-03-11T00:00:00+00:00",
            "ends_at": "2026-03-12T00:00:00+00:00"}  # fmt: skip
    with engine.begin() as conn:
        with pytest.raises(PermissionDenied):
            service.add_override(conn, schedule_id=team["schedule"], body=body,
                                 actor=user_actor("ann"), role="responder", now=TUESDAY)  # fmt: skip
        with pytest.raises(PermissionDenied):
            service.add_override(conn, schedule_id=team["schedule"], body=body,
                                 actor=user_actor("vic"), role="viewer", now=TUESDAY)  # fmt: skip
        own = service.add_override(conn, schedule_id=team["schedule"], body=body,
                                   actor=user_actor("ben"), role="responder", now=TUESDAY)  # fmt: skip
        with pytest.raises(PermissionDenied):
            service.remove_override(conn, override_id=own["id"], actor=user_actor("ann"),
                                    role="responder", now=TUESDAY)  # fmt: skip
        service.remove_override(conn, override_id=own["id"], actor=user_actor("ben"),
                                role="responder", now=TUESDAY)  # fmt: skip
        with pytest.raises(PermissionDenied):
            service.save_schedule(conn, schedule_id=team["schedule"], body={}, actor="user:ann",
                                  role="responder", now=TUESDAY)  # fmt: skip
        actions = list(conn.execute(select(audit_log.c.action).order_by(audit_log.c.id)).scalars())
    assert actions == ["schedule.save", "schedule.override_add", "schedule.override_delete"]


def test_it_masks_contact_methods_and_refuses_metadata_addresses(engine: Engine, team) -> None:
    with engine.begin() as conn:
        service.add_contact_method(
            conn,
            user_id=team["ann"],
            body={"label": "phone hook", "url": "json://127.0.0.1:9/secret-token"},
            actor=user_actor("ann"),
            role="responder",
            now=TUESDAY,
        )
        with pytest.raises(PermissionDenied):  # someone else's contact methods
            service.add_contact_method(conn, user_id=team["ben"], body={"url": "json://x/y"},
                                       actor=user_actor("ann"), role="responder", now=TUESDAY)  # fmt: skip
        with pytest.raises(OncallInvalid, match="outbound"):
            service.add_contact_method(conn, user_id=team["ann"],
                                       body={"url": "json://169.254.169.254/latest"},
                                       actor=ADMIN, role="admin", now=TUESDAY)  # fmt: skip
        service.set_time_zone(conn, user_id=team["ann"], time_zone="America/New_York",
                              actor=user_actor("ann"), role="responder", now=TUESDAY)  # fmt: skip
        for bad in ("Mars/Olympus", "America", "../../etc/passwd", "Europe/London\x00"):
            with pytest.raises(OncallInvalid, match="time_zone"):
                service.set_time_zone(conn, user_id=team["ann"], time_zone=bad,
                                      actor=ADMIN, role="admin", now=TUESDAY)  # fmt: skip
        ann = next(p for p in store.list_people(conn) if p["username"] == "ann")
    assert ann["time_zone"] == "America/New_York"
    (contact,) = ann["contacts"]
    assert contact["name"] == "ann · phone hook" and "secret-token" not in contact["url"]


@pytest.mark.parametrize(
    ("layer", "field"),
    [
        ({"rotation": "hourly", "starts_on": "2026-03-02", "members": [1]}, "layers[0].rotation"),
        ({"starts_on": "2026-03-02", "members": []}, "layers[0].members"),
        ({"starts_on": "March", "members": [1]}, "layers[0].starts_on"),
        ({"starts_on": "2026-03-02", "members": [1], "handoff_time": "25:00"}, "handoff_time"),
        ({"starts_on": "2026-03-02", "members": [999]}, "layers.members"),
    ],
)
def test_it_names_the_bad_field_of_a_schedule(engine: Engine, team, layer, field) -> None:
    with engine.begin() as conn, pytest.raises(OncallInvalid) as caught:
        service.save_schedule(conn, schedule_id=None, body={"name": "X", "layers": [layer]},
                              actor=ADMIN, role="admin", now=TUESDAY)  # fmt: skip
    assert caught.value.field == field


def test_it_refuses_a_policy_step_naming_a_missing_schedule(engine: Engine, team) -> None:
    with engine.begin() as conn, pytest.raises(PolicyInvalid, match="schedule"):
        create_policy(conn, {"name": "P", "steps": [{"after_minutes": 0, "schedules": [999]}]})
    with engine.begin() as conn, pytest.raises(store.OncallInUse):
        create_policy(conn, {"name": "P", "steps": [
            {"after_minutes": 0, "schedules": [team["schedule"]]}]})  # fmt: skip
        store.delete_schedule(conn, schedule_id=team["schedule"])


def test_it_gives_a_fresh_install_one_route_to_the_first_admin(engine: Engine, tmp_path) -> None:
    settings = dataclasses.replace(load_settings(), data_dir=tmp_path)
    assert first_run_credentials(engine, settings) is not None
    assert first_run_credentials(engine, settings) is None  # once
    with engine.connect() as conn:
        (route,) = store.list_routes(conn)
        admin = conn.execute(select(users.c.id).where(users.c.username == "admin")).scalar_one()
    assert route["min_severity"] == "info" and route["targets"]["users"] == [admin]


def test_it_pages_the_on_call_person_for_an_incident(engine: Engine, team: dict) -> None:
    contacts = _contacts(engine, team, "json://127.0.0.1:9/x")
    with engine.begin() as conn:
        create_policy(conn, {"name": "Default", "steps": [
            {"after_minutes": 0, "schedules": [team["schedule"]]},
            {"after_minutes": 10, "users": [team["root"]]},
        ]})  # fmt: skip
        open_incident(conn, title="Checkout down", severity="SEV2", affected_services=[],
                      source="manual", created_by=ADMIN, now=TUESDAY, tz=TZ)  # fmt: skip
        assert escalate_incidents(conn, now=TUESDAY, tz=TZ, public_url=URL) == 1
        assert escalate_incidents(conn, now=TUESDAY + timedelta(minutes=10), tz=TZ,
                                  public_url=URL) == 1  # fmt: skip
        sent = list(conn.execute(select(notification_outbox.c.channel_id).order_by(
            notification_outbox.c.id)).scalars())  # fmt: skip
    assert sent == [contacts["ben"], contacts["root"]]
