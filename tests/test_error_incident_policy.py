"""Which error events open an incident, on any day: the policy (pure, explicit `now`), its
settings row, and error ingest on a weekday against the real database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert, select

from monitoring_core.errors.model import ErrorInput
from monitoring_core.errors.severity import (
    IncidentPolicy,
    incident_for_error,
    parse_incident_policy,
)
from monitoring_core.flows.error_ingest import IngestResult, ingest_errors, load_incident_policy
from monitoring_core.partitions import ensure_partitions
from monitoring_core.schema import incidents
from monitoring_core.schema import settings as settings_table

LONDON = ZoneInfo("Europe/London")
WEDNESDAY = datetime(2026, 6, 10, 13, 0, tzinfo=UTC)  # 14:00 in London
SATURDAY = datetime(2026, 6, 13, 13, 0, tzinfo=UTC)
DEFAULT = IncidentPolicy()
MIN = timedelta(minutes=1)


def decide(
    policy: IncidentPolicy = DEFAULT,
    *,
    severity: str = "critical",
    service: str = "payments",
    new: bool = True,
    at: datetime = WEDNESDAY,
    now: datetime | None = None,
) -> str | None:
    return incident_for_error(
        policy,
        severity=severity,
        service_name=service,
        new_or_regressed=new,
        at=at,
        now=now or at + timedelta(seconds=5),
        tz=LONDON,
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # weekdays: a new or regressed critical group opens an incident
        ({}, "SEV2"),  # wedding-critical service
        ({"service": "newsletter"}, "SEV3"),  # any other service
        # Saturdays: one level higher
        ({"at": SATURDAY}, "SEV1"),
        ({"at": SATURDAY, "service": "newsletter"}, "SEV2"),
        # not serious enough, already known, or too old to page anyone
        ({"severity": "high"}, None),
        ({"severity": "high", "at": SATURDAY}, None),
        ({"new": False}, None),
        ({"now": WEDNESDAY + timedelta(minutes=59)}, "SEV2"),
        ({"now": WEDNESDAY + timedelta(minutes=61)}, None),
    ],
)
def test_it_opens_incidents_on_any_day_by_the_default_policy(
    kwargs: dict[str, Any], expected: str | None
) -> None:
    assert decide(**kwargs) == expected


@pytest.mark.parametrize(
    ("policy", "kwargs", "expected"),
    [
        (replace(DEFAULT, min_severity="high"), {"severity": "high"}, "SEV2"),
        (replace(DEFAULT, groups="any"), {"new": False}, "SEV2"),
        (replace(DEFAULT, other_incident=None), {"service": "newsletter"}, None),
        (replace(DEFAULT, saturday_raise=False), {"at": SATURDAY}, "SEV2"),
        (replace(DEFAULT, wedding_critical_incident="SEV1"), {"at": SATURDAY}, "SEV1"),
        (replace(DEFAULT, wedding_critical_services=frozenset({"venues"})), {}, "SEV3"),
    ],
)
def test_it_follows_a_configured_policy(
    policy: IncidentPolicy, kwargs: dict[str, Any], expected: str | None
) -> None:
    assert decide(policy, **kwargs) == expected


def test_it_reads_the_policy_from_its_settings_value() -> None:
    assert parse_incident_policy(None) == DEFAULT
    got = parse_incident_policy(
        {"wedding_critical_services": ["venues"], "other_incident": None, "max_age_minutes": 30}
    )
    assert got == replace(
        DEFAULT,
        wedding_critical_services=frozenset({"venues"}),
        other_incident=None,
        max_age_minutes=30,
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([], "must be a JSON object"),
        ({"min_severity": "fatal"}, "min_severity: must be one of"),
        ({"groups": "some"}, "groups: must be new_or_regressed or any"),
        ({"other_incident": "SEV9"}, "other_incident: must be SEV1..SEV4 or null"),
        ({"saturday_raise": "yes"}, "saturday_raise: must be true or false"),
        ({"max_age_minutes": 0}, "max_age_minutes: must be a positive number"),
        ({"wedding_critical_services": "payments"}, "must be a list of service names"),
        ({"page_everyone": True}, "page_everyone: unknown field"),
    ],
)
def test_it_refuses_a_broken_policy(value: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_incident_policy(value)


# ---------------------------------------------------------------- error ingest, real DB
@pytest.fixture
def db(engine: Engine) -> Engine:
    with engine.begin() as conn:
        ensure_partitions(conn, start=WEDNESDAY, end=WEDNESDAY, tables=("error_events",))
    return engine


def _event(**extra: Any) -> ErrorInput:
    fields: dict[str, Any] = {
        "error_type": "CardError",
        "message": "card declined for booking 17",
        "service_name": "payments",
        "level": "api",
        "severity": "critical",
        "time": WEDNESDAY,
    }
    return ErrorInput(**{**fields, **extra})


def _ingest(engine: Engine, events: list[ErrorInput], now: datetime) -> IngestResult:
    with engine.begin() as conn:
        return ingest_errors(conn, events, now=now, tz=LONDON)


def test_it_opens_an_incident_for_a_new_critical_group_on_a_weekday(db: Engine) -> None:
    first = _ingest(db, [_event()], WEDNESDAY + timedelta(seconds=5))
    again = _ingest(db, [_event(time=WEDNESDAY + timedelta(minutes=1))], WEDNESDAY + 2 * MIN)
    other = _ingest(db, [_event(service_name="newsletter", error_type="SMTPError")], WEDNESDAY)
    with db.connect() as conn:
        rows = conn.execute(select(incidents).order_by(incidents.c.id)).all()
    assert [(r.severity, r.is_saturday, r.title) for r in rows] == [
        ("SEV2", False, "Critical error: CardError in payments"),
        ("SEV3", False, "Critical error: SMTPError in newsletter"),
    ]
    assert first.items[0]["incident_id"] == again.items[0]["incident_id"] == rows[0].id
    assert other.items[0]["incident_id"] == rows[1].id


def test_it_opens_none_for_a_known_group_once_its_incident_is_closed(db: Engine) -> None:
    first = _ingest(db, [_event()], WEDNESDAY + timedelta(seconds=5))
    with db.begin() as conn:
        conn.execute(incidents.update().values(status="resolved"))
    later = _ingest(db, [_event(time=WEDNESDAY + 5 * MIN)], WEDNESDAY + 5 * MIN)
    assert "incident_id" in first.items[0] and "incident_id" not in later.items[0]


def test_it_uses_the_configured_policy_and_survives_a_broken_one(db: Engine) -> None:
    with db.begin() as conn:
        conn.execute(
            insert(settings_table).values(
                key="error_incident_policy", value={"other_incident": None}
            )
        )
    quiet = _ingest(db, [_event(service_name="newsletter")], WEDNESDAY)
    assert "incident_id" not in quiet.items[0]
    with db.begin() as conn:
        conn.execute(settings_table.update().values(value={"groups": "some"}))
        assert load_incident_policy(conn) == DEFAULT  # logged and ignored, ingest goes on
