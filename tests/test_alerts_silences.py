"""Silences and maintenance windows, pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from monitoring_core.alerts.silences import alert_labels, is_silenced, matches, validate_silence

TZ = ZoneInfo("Europe/London")
LABELS = alert_labels(
    rule_id=7, alert_name="Checkout slow", severity="high", service="payments",
    dimensions={"endpoint": "/api/pay"},
)  # fmt: skip
ALWAYS = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


def silence(matchers: list[dict[str, Any]], recurrence: dict | None = None) -> dict[str, Any]:
    return {
        "matchers": matchers,
        "starts_at": ALWAYS[0],
        "ends_at": ALWAYS[1],
        "recurrence": recurrence,
    }


@pytest.mark.parametrize(
    ("matchers", "expected"),
    [
        ([{"name": "service", "value": "payments"}], True),
        ([{"name": "service", "value": "photos"}], False),
        ([{"name": "alertname", "value": "Checkout.*", "is_regex": True}], True),
        ([{"name": "endpoint", "value": "/api/p", "is_regex": True}], False),  # full match only
        ([{"name": "severity", "value": "high"}, {"name": "rule_id", "value": "7"}], True),
        ([{"name": "severity", "value": "high"}, {"name": "rule_id", "value": "8"}], False),
        ([], True),
    ],
)
def test_it_matches_labels(matchers: list, expected: bool) -> None:
    assert matches(matchers, LABELS) is expected


TUESDAY_DEPLOY = {"weekday": 1, "start": "02:00", "end": "03:00"}


@pytest.mark.parametrize(
    ("now", "recurrence", "expected"),
    [
        (datetime(2026, 3, 10, 2, 30, tzinfo=UTC), TUESDAY_DEPLOY, True),  # Tue 02:30 London=UTC
        (datetime(2026, 3, 10, 3, 0, tzinfo=UTC), TUESDAY_DEPLOY, False),  # end is exclusive
        (datetime(2026, 3, 11, 2, 30, tzinfo=UTC), TUESDAY_DEPLOY, False),  # Wednesday
        # summer time: 02:30 London is 01:30 UTC
        (datetime(2026, 7, 14, 1, 30, tzinfo=UTC), TUESDAY_DEPLOY, True),
        (datetime(2026, 7, 14, 2, 30, tzinfo=UTC), TUESDAY_DEPLOY, False),
        # a window across midnight belongs to the named day and runs into the next
        (
            datetime(2026, 3, 14, 23, 30, tzinfo=UTC),
            {"weekday": 5, "start": "23:00", "end": "01:00"},
            True,
        ),
        (
            datetime(2026, 3, 15, 0, 30, tzinfo=UTC),
            {"weekday": 5, "start": "23:00", "end": "01:00"},
            True,
        ),
        (
            datetime(2026, 3, 15, 23, 30, tzinfo=UTC),
            {"weekday": 5, "start": "23:00", "end": "01:00"},
            False,
        ),
        (
            datetime(2026, 3, 11, 2, 30, tzinfo=UTC),
            {"weekdays": [1, 2], "start": "02:00", "end": "03:00"},
            True,
        ),
    ],
)
def test_it_applies_recurring_maintenance_windows(
    now: datetime, recurrence: dict, expected: bool
) -> None:
    s = silence([{"name": "service", "value": "payments"}], recurrence)
    assert is_silenced([s], LABELS, now, TZ) is expected


def test_it_only_silences_between_start_and_end() -> None:
    start = datetime(2026, 3, 10, 12, tzinfo=UTC)
    s = {
        "matchers": [],
        "starts_at": start,
        "ends_at": start + timedelta(hours=1),
        "recurrence": None,
    }
    assert [is_silenced([s], LABELS, start + timedelta(minutes=m), TZ) for m in (-1, 0, 59, 60)] == [
        False, True, True, False,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("matchers", "end_offset", "recurrence", "field"),
    [
        ("x", 1, None, "matchers"),
        ([{"name": "a"}], 1, None, "matchers"),
        ([{"name": "a", "value": "(", "is_regex": True}], 1, None, "matchers"),
        ([], -1, None, "ends_at"),
        ([], 1, {"weekday": 9, "start": "02:00", "end": "03:00"}, "recurrence"),
        ([], 1, {"weekday": 1, "start": "2am", "end": "03:00"}, "recurrence"),
    ],
)
def test_it_validates_silences(matchers: Any, end_offset: int, recurrence: Any, field: str) -> None:
    start = datetime(2026, 3, 10, tzinfo=UTC)
    problems = validate_silence(matchers, start, start + timedelta(hours=end_offset), recurrence)
    assert field in [p["field"] for p in problems]
