"""Correlation, auto-recovery and the read functions (Errors page, Read API, pattern alerts)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select, text

from jobs.errors import error_recovery as recovery_job
from monitoring_core.errors.correlation import burst_starts, related_by_burst, related_groups
from monitoring_core.errors.model import ErrorInput
from monitoring_core.errors.queries import (
    error_count_series,
    group_change_series,
    group_detail,
    list_groups,
)
from monitoring_core.errors.recovery import prune_event_ids, recover_quiet_groups
from monitoring_core.errors.service import change_group_status
from monitoring_core.flows.error_ingest import ingest_errors
from monitoring_core.schema import error_group_changes, error_groups, settings

pytestmark = pytest.mark.clock  # runs at every instant of tests/clock_proof.py

LONDON = ZoneInfo("Europe/London")
T0 = datetime(2026, 6, 3, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)


# ---------------------------------------------------------------- pure
@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        ({}, []),
        ({T0: 3}, [T0]),
        ({T0: 2}, []),  # two errors are not a burst
        ({T0: 1, T0 + 2 * M: 1, T0 + 4 * M: 1}, [T0]),  # three within five minutes are
        ({T0: 1, T0 + 2 * M: 1, T0 + 5 * M: 1}, []),
        ({T0 + M: 3, T0 + 2 * M: 1, T0 + 3 * M: 9}, [T0 + M]),
        ({T0: 3, T0 + 29 * M: 3, T0 + 60 * M: 3}, [T0, T0 + 60 * M]),
        ({T0 + 31 * M: 5, T0: 5}, [T0, T0 + 31 * M]),
    ],
)
def test_it_finds_burst_starts(minutes: dict[datetime, int], expected: list[datetime]) -> None:
    assert burst_starts(minutes, since=T0 - 30 * M) == expected


def test_it_ignores_minutes_without_a_visible_quiet_period() -> None:
    assert burst_starts({T0 + 5 * M: 3, T0 + 50 * M: 3}, since=T0) == [T0 + 50 * M]


def test_it_relates_bursts_in_other_services_within_five_minutes() -> None:
    starts = {1: [T0], 2: [T0 + 4 * M], 3: [T0 + 6 * M], 4: [T0 + 2 * M], 5: [T0 - 5 * M]}
    services = {1: ["web"], 2: ["payments"], 3: ["payments"], 4: ["web"], 5: ["api"]}
    assert related_by_burst(1, starts, services) == {2: 4 * M, 5: 5 * M}
    assert related_by_burst(9, starts, services) == {}


# ---------------------------------------------------------------- database
def _ev(at: datetime, **extra: object) -> ErrorInput:
    fields: dict = {
        "error_type": "KeyError",
        "message": "x",
        "service_name": "web",
        "level": "api",
        "time": at,
    }
    fields.update(extra)
    return ErrorInput(**fields)


def _ingest(engine: Engine, events: list[ErrorInput], now: datetime) -> list[dict]:
    with engine.begin() as conn:
        return ingest_errors(conn, events, now=now, tz=LONDON).items


def _base(now: datetime) -> datetime:
    return now.replace(second=0) - timedelta(hours=3)


def test_it_relates_groups_by_shared_trace_and_by_bursts(engine: Engine, now: datetime) -> None:
    t = _base(now)
    items = _ingest(
        engine,
        [
            _ev(t, error_type="A", service_name="web", trace_id="tr-1"),
            *[_ev(t + M, error_type="A", service_name="web") for _ in range(2)],
            *[_ev(t + 3 * M, error_type="B", service_name="payments") for _ in range(3)],
            *[_ev(t + 40 * M, error_type="C", service_name="payments") for _ in range(3)],
            _ev(t + 90 * M, error_type="D", service_name="mail", trace_id="tr-1"),
            # The same service is not "related"; neither is a lone error in another one.
            *[_ev(t + 2 * M, error_type="E", service_name="web") for _ in range(3)],
            _ev(t + 2 * M, error_type="F", service_name="rsvp"),
        ],
        now,
    )
    a, b, d = (items[i]["group_id"] for i in (0, 3, 9))
    with engine.connect() as conn:
        related = related_groups(conn, group_id=a, start=t, end=now)
    assert [g["id"] for g in related] == [d, b]
    assert related[0]["reasons"] == ["1 shared trace/request ids"]
    assert related[1]["reasons"] == ["bursts began 3 min apart"]


def test_it_marks_quiet_groups_recovered_once(engine: Engine, now: datetime) -> None:
    t = _base(now)
    items = _ingest(
        engine,
        [
            _ev(t, error_type="Quiet"),
            _ev(now - 5 * M, error_type="Busy"),
            _ev(t, error_type="Resolved"),
        ],
        now,
    )
    quiet, _, resolved = (i["group_id"] for i in items)
    with engine.begin() as conn:
        change_group_status(conn, group_id=resolved, action="resolve", actor="ann", now=t + M)
        assert recover_quiet_groups(conn, now=now, quiet=timedelta(hours=1)) == [quiet]
        assert recover_quiet_groups(conn, now=now, quiet=timedelta(hours=1)) == []
    with engine.connect() as conn:
        group = conn.execute(select(error_groups).where(error_groups.c.id == quiet)).one()
        kinds = conn.execute(
            select(error_group_changes.c.kind, error_group_changes.c.actor).where(
                error_group_changes.c.group_id == quiet
            )
        ).all()
    assert (group.status, group.recovered_at) == ("unresolved", now)
    assert ("recovered", "system:auto-recovery") in kinds
    _ingest(engine, [_ev(now, error_type="Quiet")], now)
    with engine.connect() as conn:
        recovered_at = conn.execute(
            select(error_groups.c.recovered_at).where(error_groups.c.id == quiet)
        ).scalar_one()
    assert recovered_at is None


def test_it_reads_the_quiet_period_from_settings_in_the_job(engine: Engine, now: datetime) -> None:
    _ingest(engine, [_ev(now - 20 * M)], now)
    assert recovery_job(engine, now).startswith("0 groups recovered")
    with engine.begin() as conn:
        conn.execute(settings.insert().values(key="error_recovery_quiet_minutes", value=10))
    assert recovery_job(engine, now).startswith("1 groups recovered")


def test_it_prunes_old_event_ids(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO error_event_ids VALUES (:a, :old), (:b, :new)"),
            {"a": uuid.uuid4(), "b": uuid.uuid4(), "old": now - timedelta(days=8), "new": now},
        )
        assert prune_event_ids(conn, now=now) == 1


def test_it_serves_pattern_series_by_dimension(engine: Engine, now: datetime) -> None:
    t = _base(now)
    _ingest(
        engine,
        [
            _ev(t + timedelta(seconds=10), service_name="payments", level="api"),
            _ev(t + timedelta(seconds=50), service_name="payments", level="database"),
            _ev(t + M + timedelta(seconds=5), service_name="payments", level="api"),
            _ev(t, service_name="web"),
        ],
        now,
    )
    with engine.connect() as conn:
        series = error_count_series(
            conn, start=t, end=now, filters={"service": "payments"}, group_by=["level"]
        )
        total = error_count_series(conn, start=t, end=now)
        with pytest.raises(ValueError):
            error_count_series(conn, start=t, end=now, filters={"colour": "red"})
    assert series == {("api",): [(t + M, 1), (t + 2 * M, 1)], ("database",): [(t + M, 1)]}
    assert total == {(): [(t + M, 3), (t + 2 * M, 1)]}


def test_it_serves_new_group_and_regression_events(engine: Engine, now: datetime) -> None:
    t = _base(now)
    [item] = _ingest(engine, [_ev(t, service_name="payments")], t)
    with engine.begin() as conn:
        change_group_status(
            conn, group_id=item["group_id"], action="resolve", actor="ann", now=t + M
        )
    _ingest(engine, [_ev(t + 2 * M, service_name="payments")], t + 2 * M)
    with engine.connect() as conn:
        changes = group_change_series(conn, start=t, end=now, service="payments")
        other = group_change_series(conn, start=t, end=now, service="web")
    assert [(c["kind"], c["time"]) for c in changes] == [("new", t), ("regressed", t + 2 * M)]
    assert other == []


def test_it_lists_groups_filtered_and_sorted_with_detail(engine: Engine, now: datetime) -> None:
    t = _base(now)
    items = _ingest(
        engine,
        [_ev(t, error_type="A", user_id=f"u{i}") for i in range(3)]
        + [_ev(t + M, error_type="B", service_name="payments", tags={"region": "uk"})],
        now,
    )
    a, b = items[0]["group_id"], items[3]["group_id"]
    with engine.connect() as conn:
        by_users = list_groups(conn, start=t, end=now, sort="users")
        payments = list_groups(conn, start=t, end=now, service="payments")
        resolved = list_groups(conn, start=t, end=now, status="resolved")
        later = list_groups(conn, start=t + 2 * M, end=now)
        with pytest.raises(ValueError):
            list_groups(conn, start=t, end=now, sort="colour")
        detail = group_detail(conn, group_id=a, start=t, end=now)
        assert group_detail(conn, group_id=999, start=t, end=now) is None
    assert [g["id"] for g in by_users] == [a, b]
    assert [g["events"] for g in by_users] == [3, 1]
    assert [g["id"] for g in payments] == [b] and resolved == [] and later == []
    assert detail is not None
    assert len(detail["occurrences"]) == 3 and len(detail["users"]) == 3
    assert [h["kind"] for h in detail["history"]] == ["new"]
