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
