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


def test_it_says_a_moment_to_the_second_in_the_business_time_zone() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    london = ZoneInfo("Europe/London")
    now = datetime(2026, 6, 10, 13, 0, tzinfo=UTC)
    moment = datetime(2026, 6, 10, 12, 5, 9, 123456, tzinfo=UTC)
    assert fmt.when_exact(moment, london, now) == "today 13:05:09"
    assert fmt.when_exact(datetime(2026, 6, 1, 8, 0, 59, tzinfo=UTC), london, now) == (
        "Mon 1 Jun 09:00:59"
    )
    assert fmt.when_exact(None, london, now) == "—"


@pytest.mark.parametrize(
    ("ms", "shown"),
    [(None, "—"), (0.042, "0.042 ms"), (0.42, "0.42 ms"), (8.46, "8.5 ms"), (84.2, "84 ms"),
     (1250, "1.25 s"), (95_300, "1 min 35 s"), (120_000, "2 min"), (4_000_000, "1 h 6 min")],
)  # fmt: skip
def test_it_gives_a_span_duration_its_unit(ms: float | None, shown: str) -> None:
    assert fmt.precise_ms(ms) == shown


@pytest.mark.parametrize(
    ("size", "shown"),
    [(None, "—"), (812, "812 B"), (3_400_000, "3.4 MB"), (1_234_567_890, "1.2 GB"),
     (5.5e12, "5.5 TB")],
)  # fmt: skip
def test_it_says_a_size_in_bytes(size: float | None, shown: str) -> None:
    assert fmt.size(size) == shown


@pytest.mark.parametrize(
    ("stored", "shown"),
    [(None, "—"), (True, "true"), (502, "502"), (20260603123456, "20260603123456"),
     (0.1 + 0.2, "0.3"), (3.0, "3"), (1234567.891, "1234568"), ("GET", "GET"),
     (["a", "b"], "a, b"), ([], "—"), ({"attempt": 2, "tags": ["x", {"k": 1}]},
     "attempt: 2, tags: [x, {k: 1}]"), (b"\x01\xff", "01ff")],
)  # fmt: skip
def test_it_writes_a_stored_value_as_one_line_never_json(stored: object, shown: str) -> None:
    assert fmt.value(stored) == shown


def test_it_writes_a_small_dict_as_pairs() -> None:
    assert fmt.pairs({"to": "resolved", "from": "open"}) == "from: open, to: resolved"
    assert fmt.pairs({"old_status": "open"}, labels=True) == "Old status: open"
    assert fmt.pairs({}) == "" and fmt.pairs(None) == ""


@pytest.mark.parametrize(
    ("stored", "unit", "shown"),
    [(None, "%", "—"), (38.8049, "%", "38.8 %"), (892.6667, "users", "892.7 users"),
     (1_234_567, "bytes", "1.2 MB"), (12_345.6, "B/s", "12.3 KB/s"), (1250, "ms", "1.25 s"),
     (4.5, "seconds", "4.5 s"), (0.98765, "", "0.9877"), (0.5, "percent", "0.5 %")],
)  # fmt: skip
def test_it_gives_a_metric_value_its_unit(stored: float | None, unit: str, shown: str) -> None:
    assert fmt.measured(stored, unit) == shown


def test_it_names_aggregations_in_words() -> None:
    assert [fmt.aggregation(a) for a in ("avg", "max", "p95", "last")] == [
        "Average", "Maximum", "p95", "Last value"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("user:sam", "sam"),
        ("system:escalation", "escalation (system)"),
        ("apikey:ci deploy", "ci deploy (API key)"),
        ("link:Ops pager", "Ops pager (acknowledge link)"),
        ("rule:12", "12 (rule)"),
        ("alice", "alice"),  # written before the KIND:NAME format
        (None, "—"),
        ("", "—"),
        (math.nan, "—"),
    ],
)
def test_it_names_who_acted_without_the_stored_prefix(stored: object, shown: str) -> None:
    assert fmt.actor(stored) == shown  # type: ignore[arg-type]


def test_it_says_who_acted_when_nobody_is_named_as_asked() -> None:
    assert fmt.actor(None, missing="the system") == "the system"
