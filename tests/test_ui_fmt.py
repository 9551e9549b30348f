"""Numbers on the dashboard: the formatting helpers."""

from __future__ import annotations

import math

import pytest

from ui import fmt


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "—"),
        (math.nan, "—"),
        (math.inf, "∞"),
        (-math.inf, "−∞"),
        (0.25, "0.25"),
        (154.0, "154"),
        (3.14159, "3.142"),
        (12345.6, "12,346"),
    ],
)
def test_it_formats_a_measured_value(value: float | None, shown: str) -> None:
    assert fmt.number(value) == shown


@pytest.mark.parametrize(
    ("fn", "value", "shown"),
    [
        (fmt.milliseconds, 84.2, "84 ms"),
        (fmt.milliseconds, 1250, "1.25 s"),
        (fmt.percent, 0.0123, "1.23 %"),
        (fmt.count, 1234567, "1,234,567"),
        (fmt.count, None, "—"),
    ],
)
def test_it_formats_durations_shares_and_counts(fn, value, shown) -> None:  # type: ignore[no-untyped-def]
    assert fn(value) == shown


def test_it_says_a_moment_in_the_business_time_zone_in_words() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    london = ZoneInfo("Europe/London")
    now = datetime(2026, 6, 10, 13, 0, tzinfo=UTC)  # 14:00 in London
    assert fmt.when(datetime(2026, 6, 10, 12, 5, tzinfo=UTC), london, now) == "today 13:05"
    assert fmt.when(datetime(2026, 6, 9, 23, 30, tzinfo=UTC), london, now) == "today 00:30"
    assert fmt.when(datetime(2026, 6, 9, 8, 0, tzinfo=UTC), london, now) == "yesterday 09:00"
    assert fmt.when(datetime(2026, 6, 1, 8, 0, tzinfo=UTC), london, now) == "Mon 1 Jun 09:00"
    assert fmt.when(datetime(2025, 12, 1, 8, 0, tzinfo=UTC), london, now) == "1 Dec 2025 08:00"
    assert fmt.when(None, london, now) == "—"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "—"), (42.4, "42 s"), (600, "10 min"), (3900, "1 h 5 min"), (7200, "2 h"),
     (2 * 86400 + 4 * 3600 + 59, "2 d 4 h"), (-90, "−1 min")],
)  # fmt: skip
def test_it_says_a_duration_in_two_units(seconds: float | None, shown: str) -> None:
    assert fmt.duration(seconds) == shown


def test_it_turns_identifiers_into_labels() -> None:
    assert fmt.label("status_changed") == "Status changed"
    assert fmt.label("http_check") == "HTTP check"
    assert fmt.label("wedding_day_critical") == "Wedding day critical"
    assert fmt.label("Payments partner") == "Payments partner"  # a name stays as typed
    assert fmt.label(None) == "—"
