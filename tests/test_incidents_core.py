"""Incident core: numbering (also under concurrency), Saturday flag, links, timeline."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine, insert, select, text

from monitoring_core.incidents import rules
from monitoring_core.incidents.store import (
    add_timeline_entry,
    get_incident,
    link_alert,
    list_timeline,
    open_incident,
)
from monitoring_core.schema import (
    alert_instances,
    alert_rules,
    error_groups,
    incident_alerts,
    incident_error_groups,
)

LONDON = ZoneInfo("Europe/London")
SATURDAY = datetime(2026, 6, 13, 14, 0, tzinfo=UTC)
TUESDAY = datetime(2026, 6, 16, 9, 30, tzinfo=UTC)


def _open(conn: Connection, now: datetime = TUESDAY, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(
        title="Payments failing",
        severity="SEV2",
        affected_services=["payments"],
        source="manual",
        created_by="alice",
        now=now,
        tz=LONDON,
    )
    args.update(kw)
    return open_incident(conn, **args)


@pytest.mark.parametrize(
    ("year", "seq", "expected"),
    [(2026, 1, "INC-2026-0001"), (2026, 42, "INC-2026-0042"), (2027, 12345, "INC-2027-12345")],
)
def test_it_formats_and_parses_numbers(year: int, seq: int, expected: str) -> None:
    assert rules.format_incident_number(year, seq) == expected
    assert rules.parse_incident_number(expected) == (year, seq)


@pytest.mark.parametrize("bad", ["INC-26-0001", "INC-2026-01", "inc-2026-0001", "X"])
def test_it_rejects_bad_numbers(bad: str) -> None:
    with pytest.raises(ValueError):
        rules.parse_incident_number(bad)


@pytest.mark.parametrize(
    ("now", "wedding_critical", "expected"),
    [
        (SATURDAY, False, "SEV1"),
        (TUESDAY, True, "SEV1"),
        (TUESDAY, False, "SEV2"),
        # 23:30 UTC Friday in winter is still Friday in London; in summer it is Saturday 00:30.
        (datetime(2026, 1, 9, 23, 30, tzinfo=UTC), False, "SEV2"),
        (datetime(2026, 6, 12, 23, 30, tzinfo=UTC), False, "SEV1"),
    ],
)
def test_it_picks_the_severity_of_an_alert_incident(
    now: datetime, wedding_critical: bool, expected: str
) -> None:
    assert (
        rules.severity_for_alert(now=now, tz=LONDON, wedding_critical=wedding_critical) == expected
    )


@pytest.mark.parametrize(
    ("severity", "saturday", "expected"),
    [("SEV1", True, "wedding_day_critical"), ("SEV3", True, "high"), ("SEV1", False, "none")],
)
def test_it_defaults_the_wedding_impact(severity: str, saturday: bool, expected: str) -> None:
    assert rules.default_wedding_impact(severity, is_saturday=saturday) == expected


def test_it_year_is_the_business_time_zone_year() -> None:
    new_year_tokyo = datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    assert rules.incident_year(new_year_tokyo, ZoneInfo("Asia/Tokyo")) == 2027
    assert rules.incident_year(new_year_tokyo, LONDON) == 2026


def test_it_opens_numbered_incidents_with_a_first_timeline_entry(engine: Engine) -> None:
    with engine.begin() as conn:
        first = _open(conn)
        second = _open(conn, title="Uploads slow", severity="SEV3")
        other_year = _open(conn, now=datetime(2027, 1, 2, 12, tzinfo=UTC))
        timeline = list_timeline(conn, incident_id=first["id"])
    assert (first["incident_number"], second["incident_number"]) == (
        "INC-2026-0001",
        "INC-2026-0002",
    )
    assert other_year["incident_number"] == "INC-2027-0001"
    assert first["status"] == "open" and first["detected_at"] == TUESDAY
    assert first["is_saturday"] is False and first["wedding_impact"] == "none"
    assert [(e["kind"], e["actor"]) for e in timeline] == [("opened", "alice")]
    assert timeline[0]["details"]["source"] == "manual"
    assert "INC-2026-0001" in timeline[0]["message"]


def test_it_flags_saturday_incidents(engine: Engine) -> None:
    with engine.begin() as conn:
        incident = _open(conn, now=SATURDAY, severity="SEV1")
        explicit = _open(conn, now=SATURDAY, wedding_impact="low")
    assert incident["is_saturday"] is True
    assert incident["wedding_impact"] == "wedding_day_critical"
    assert explicit["wedding_impact"] == "low"


@pytest.mark.parametrize(
    ("field", "value"),
    [("severity", "critical"), ("source", "pager"), ("title", "  "), ("wedding_impact", "huge")],
)
def test_it_rejects_invalid_incidents(engine: Engine, field: str, value: str) -> None:
    with engine.begin() as conn, pytest.raises(ValueError):
        overrides: dict[str, Any] = {field: value}
        _open(conn, **overrides)


def _alert_instance(conn: Connection) -> int:
    rule_id = conn.execute(
        insert(alert_rules)
        .values(alert_name="Payments", severity_level="critical", condition_config={})
        .returning(alert_rules.c.id)
    ).scalar_one()
    return conn.execute(
        insert(alert_instances)
        .values(alert_configuration_id=rule_id, alert_key="", status="firing", severity="critical")
        .returning(alert_instances.c.id)
    ).scalar_one()


def _error_group(conn: Connection) -> int:
    return conn.execute(
        insert(error_groups)
        .values(
            fingerprint="fp",
            error_type="ValueError",
            message_template="bad",
            level="api",
            severity="high",
            first_seen=TUESDAY,
            last_seen=TUESDAY,
        )
        .returning(error_groups.c.id)
    ).scalar_one()


def test_it_links_the_alert_and_error_group_it_was_opened_from(engine: Engine) -> None:
    with engine.begin() as conn:
        instance_id = _alert_instance(conn)
        group_id = _error_group(conn)
        incident = _open(
            conn, source="alert", alert_instance_id=instance_id, error_group_id=group_id
        )
        linked_alerts = conn.execute(select(incident_alerts.c.alert_instance_id)).scalars().all()
        linked_groups = conn.execute(select(incident_error_groups.c.error_group_id)).scalars().all()
        back = conn.execute(
            select(alert_instances.c.incident_id).where(alert_instances.c.id == instance_id)
        ).scalar()
        again = link_alert(
            conn, incident_id=incident["id"], alert_instance_id=instance_id, now=TUESDAY, actor="x"
        )
        kinds = [e["kind"] for e in list_timeline(conn, incident_id=incident["id"])]
    assert linked_alerts == [instance_id] and linked_groups == [group_id]
    assert back == incident["id"]
    assert again is False and kinds == ["opened"]


def test_it_appends_timeline_entries_in_order(engine: Engine) -> None:
    with engine.begin() as conn:
        incident = _open(conn)
        entry = add_timeline_entry(
            conn,
            incident_id=incident["id"],
            kind="note",
            message="Rolled back release 41",
            actor="bob",
            now=datetime(2026, 6, 16, 9, 45, tzinfo=UTC),
            details={"release": "41"},
            is_public=True,
        )
        timeline = list_timeline(conn, incident_id=incident["id"])
        assert get_incident(conn, incident_id=incident["id"])["title"] == "Payments failing"  # type: ignore[index]
        assert get_incident(conn, incident_id=-1) is None
    assert entry["is_public"] is True and entry["details"] == {"release": "41"}
    assert [e["kind"] for e in timeline] == ["opened", "note"]
    with engine.begin() as conn, pytest.raises(ValueError):
        add_timeline_entry(
            conn, incident_id=incident["id"], kind=" ", message="", actor=None, now=TUESDAY
        )


def _waiting_on_advisory_lock(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            ).scalar()
        )


def test_it_numbers_concurrent_openers_without_collision(engine: Engine) -> None:
    """A second opener waits for the first's commit instead of taking the same number."""
    results: list[str] = []
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with engine.begin() as conn:
                results.append(_open(conn, title="second")["incident_number"])
        except Exception as exc:  # noqa: BLE001 - the assertion below reports it
            errors.append(exc)

    with engine.begin() as conn:
        results.append(_open(conn, title="first")["incident_number"])
        worker = threading.Thread(target=second)
        worker.start()
        deadline = time.monotonic() + 10
        while not _waiting_on_advisory_lock(engine):  # poll until it blocks on our lock
            assert time.monotonic() < deadline, "second opener never waited"
            assert worker.is_alive(), errors
    worker.join(10)
    assert not errors
    assert results == ["INC-2026-0001", "INC-2026-0002"]


def test_it_numbers_many_parallel_openers_consecutively(engine: Engine) -> None:
    barrier = threading.Barrier(6)
    numbers: list[str] = []

    def opener() -> None:
        barrier.wait()
        with engine.begin() as conn:
            numbers.append(_open(conn)["incident_number"])

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(numbers) == [f"INC-2026-{i:04d}" for i in range(1, 7)]
