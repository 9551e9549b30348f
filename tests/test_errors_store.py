"""Error storage on a real Postgres: grouping, exact counts under concurrency, dedup, regressions,
scrubbing at rest and wedding-day incidents."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select, text

from monitoring_core.errors.model import ErrorInput
from monitoring_core.errors.service import change_group_status
from monitoring_core.flows.error_ingest import IngestResult, ingest_errors
from monitoring_core.schema import (
    error_events,
    error_group_changes,
    error_groups,
    incident_timeline,
    incidents,
)

pytestmark = pytest.mark.clock  # runs at every instant of tests/clock_proof.py

LONDON = ZoneInfo("Europe/London")


def _event(at: datetime, **extra: object) -> ErrorInput:
    fields: dict = {
        "error_type": "KeyError",
        "message": "guest 17 not found",
        "service_name": "guests",
        "level": "api",
        "time": at,
    }
    fields.update(extra)
    return ErrorInput(**fields)


def _ingest(engine: Engine, events: list[ErrorInput], now: datetime) -> IngestResult:
    with engine.begin() as conn:
        return ingest_errors(conn, events, now=now, tz=LONDON)


def _groups(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(error_groups).order_by("id"))]


def _weekday(now: datetime) -> datetime:
    """A moment within the last days that is not a Saturday in London."""
    moment = now - timedelta(minutes=5)
    while moment.astimezone(LONDON).weekday() == 5:
        moment -= timedelta(days=1)
    return moment


def test_it_groups_the_same_bug_and_counts_distinct_users_and_orgs(
    engine: Engine, now: datetime
) -> None:
    at = _weekday(now)
    first = _ingest(
        engine,
        [
            _event(at, message="guest 17 not found", user_id="u1", organization_id="o1"),
            _event(at, message="guest 99 not found", user_id="u2", organization_id="o1"),
            _event(at, message="guest 5 not found", user_id="u1"),
            _event(at, error_type="TypeError", message="guest 5 not found", user_id="u1"),
        ],
        now,
    )
    ids = {item["group_id"] for item in first.items}
    assert len(ids) == 2 and first.stored == 4
    _ingest(engine, [_event(at + timedelta(seconds=1), user_id="u2", service_name="rsvp")], now)
    key_error = next(g for g in _groups(engine) if g["error_type"] == "KeyError")
    assert key_error["event_count"] == 4
    assert (key_error["user_count"], key_error["organization_count"]) == (2, 1)
    assert key_error["services"] == ["guests", "rsvp"]
    assert key_error["message_template"] == "guest <num> not found"
    assert key_error["last_seen"] == at + timedelta(seconds=1)
    with engine.connect() as conn:
        kinds = conn.execute(select(error_group_changes.c.kind)).scalars().all()
    assert sorted(kinds) == ["new", "new"]


def test_it_keeps_group_counts_exact_under_concurrent_ingest(engine: Engine, now: datetime) -> None:
    at = _weekday(now)

    def worker(n: int) -> None:
        for batch in range(5):
            events = [
                _event(at, user_id=f"u{(n + batch + i) % 13}", organization_id=f"o{i % 3}")
                for i in range(20)
            ]
            events.append(_event(at, error_type=f"Err{batch}", user_id="shared"))
            _ingest(engine, events, now)

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(worker, n) for n in range(4)]:
            future.result()  # re-raises a worker's exception here
    groups = {g["error_type"]: g for g in _groups(engine)}
    assert groups["KeyError"]["event_count"] == 4 * 5 * 20
    assert groups["KeyError"]["user_count"] == 13
    assert groups["KeyError"]["organization_count"] == 3
    assert all(groups[f"Err{b}"]["user_count"] == 1 for b in range(5))
    assert all(groups[f"Err{b}"]["event_count"] == 4 for b in range(5))


def test_it_stores_a_client_event_id_once(engine: Engine, now: datetime) -> None:
    at = _weekday(now)
    event_id = uuid.uuid4()
    first = _ingest(engine, [_event(at, event_id=event_id, dedup=True, user_id="u1")], now)
    again = _ingest(
        engine,
        [
            _event(at, event_id=event_id, dedup=True, user_id="u1"),
            _event(at, event_id=uuid.UUID(int=5), dedup=True),
            _event(at, event_id=uuid.UUID(int=5), dedup=True),
        ],
        now,
    )
    assert first.stored == 1 and again.stored == 1
    assert again.items[0]["duplicate"] is True and "duplicate" not in again.items[2]
    [group] = _groups(engine)
    assert group["event_count"] == 2
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM error_events")).scalar() == 2


def test_it_stores_nothing_secret(engine: Engine, now: datetime) -> None:
    secrets = ["hunter2", "4242 4242 4242 4242", "anna@example.com", "sk_live_abcdefgh12345678"]
    _ingest(
        engine,
        [
            _event(
                _weekday(now),
                message="charge for anna@example.com with card 4242 4242 4242 4242 failed",
                stack_trace='File "app.py", line 3, in pay\n    key = "sk_live_abcdefgh12345678"',
                context={"form": {"password": "hunter2", "note": "ok"}},
                tags={"api_key": "sk_live_abcdefgh12345678"},
            )
        ],
        now,
    )
    with engine.connect() as conn:
        row = conn.execute(select(error_events)).one()
        group = conn.execute(select(error_groups)).one()
    dump = repr(dict(row._mapping)) + repr(dict(group._mapping))
    assert not [s for s in secrets if s in dump]
    assert row.context == {"form": {"password": "[REDACTED]", "note": "ok"}}
    assert row.message == "charge for [REDACTED] with card [REDACTED] failed"


def test_it_flags_a_regression_only_for_a_new_enough_release(engine: Engine, now: datetime) -> None:
    """The wiring of rules.is_regression (its table is in test_errors_pure)."""
    at = _weekday(now) - timedelta(hours=1)
    [item] = _ingest(engine, [_event(at)], now).items
    resolved_at = at + timedelta(minutes=10)
    with engine.begin() as conn:
        change_group_status(
            conn,
            group_id=item["group_id"],
            action="resolve",
            actor="ann",
            now=resolved_at,
            release="payments@1.4.0",
        )
    late = _event(resolved_at - timedelta(minutes=1), release="payments@1.4.0")
    old_client = _event(resolved_at + timedelta(minutes=5), release="payments@1.3.9")
    _ingest(engine, [late, old_client], now)
    assert _groups(engine)[0]["status"] == "resolved"
    _ingest(engine, [_event(resolved_at + timedelta(minutes=6), release="payments@1.10.0")], now)
    [group] = _groups(engine)
    assert (group["status"], group["regressed_at"]) == ("regressed", now)
    with engine.connect() as conn:
        kinds = conn.execute(
            select(error_group_changes.c.kind).order_by(error_group_changes.c.id)
        ).scalars()
        assert list(kinds) == ["new", "resolve", "regressed"]


def test_it_keeps_ignored_groups_quiet(engine: Engine, now: datetime) -> None:
    at = _weekday(now)
    [item] = _ingest(engine, [_event(at)], now).items
    with engine.begin() as conn:
        change_group_status(conn, group_id=item["group_id"], action="ignore", actor="ann", now=now)
        with pytest.raises(ValueError):
            change_group_status(
                conn, group_id=item["group_id"], action="ignore", actor="ann", now=now
            )
        with pytest.raises(LookupError):
            change_group_status(conn, group_id=999, action="resolve", actor="ann", now=now)
    _ingest(engine, [_event(at + timedelta(seconds=1))], now)
    assert _groups(engine)[0]["status"] == "ignored"


def _saturday_now() -> datetime:
    """A Saturday noon in London within the partitions' range (the last 7 days)."""
    day = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    while day.astimezone(LONDON).weekday() != 5:
        day -= timedelta(days=1)
    return day


def test_it_opens_one_incident_for_wedding_day_critical_errors(engine: Engine) -> None:
    saturday = _saturday_now()
    payment = {"error_type": "CardError", "service_name": "payments", "message": "declined"}
    first = _ingest(engine, [_event(saturday, **payment), _event(saturday)], saturday)
    second = _ingest(engine, [_event(saturday + timedelta(minutes=1), **payment)], saturday)
    assert first.items[0]["severity"] == "critical"
    assert first.items[1]["severity"] == "high" and "incident_id" not in first.items[1]
    incident_id = first.items[0]["incident_id"]
    assert second.items[0]["incident_id"] == incident_id
    with engine.connect() as conn:
        incident = conn.execute(select(incidents)).one()
        entries = conn.execute(select(incident_timeline.c.kind)).scalars().all()
        links = conn.execute(text("SELECT error_group_id FROM incident_error_groups")).all()
    assert (incident.id, incident.severity, incident.is_saturday) == (incident_id, "SEV1", True)
    assert incident.affected_services == ["payments"]
    assert "opened" in entries
    assert [r[0] for r in links] == [first.items[0]["group_id"]]


def test_it_opens_no_incident_for_a_stale_critical(engine: Engine) -> None:
    # weekdays open incidents too now: tests/test_error_incident_policy.py
    saturday = _saturday_now()
    payment = {"error_type": "CardError", "service_name": "payments", "message": "declined"}
    stale = _ingest(engine, [_event(saturday, **payment)], saturday + timedelta(hours=3))
    assert stale.items[0]["severity"] == "critical"
    assert "incident_id" not in stale.items[0]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM incidents")).scalar() == 0
