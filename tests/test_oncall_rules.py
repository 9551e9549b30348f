"""Who is on call: rotations across both daylight-saving changes, a Saturday handoff, layers,
overrides, and the spans a calendar draws. Pure, fixed instants, no database."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from monitoring_core.oncall.rules import (
    Layer,
    Override,
    layer_shift,
    next_on_call,
    on_call_at,
    shifts_between,
)

LONDON = ZoneInfo("Europe/London")
ANN, BEN, CAT, DAN = 1, 2, 3, 4


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=LONDON)


# 2026: clocks go forward Sunday 29 March 01:00 UTC, back Sunday 25 October 01:00 UTC.
DAILY = Layer(members=(ANN, BEN, CAT), rotation="daily", starts_on=date(2026, 3, 27))


@pytest.mark.parametrize(
    ("at", "who"),
    [
        (local(2026, 3, 27, 8, 59), None),  # before the first shift
        (local(2026, 3, 27, 9, 0), ANN),
        (local(2026, 3, 28, 9, 0), BEN),
        (utc(2026, 3, 29, 7, 59), BEN),  # 08:59 BST, the first morning of summer time
        (utc(2026, 3, 29, 8, 0), CAT),  # 09:00 BST: the handoff keeps the wall-clock time
        (local(2026, 3, 30, 9, 0), ANN),
    ],
)
def test_it_hands_off_daily_at_the_same_wall_clock_time_across_spring_forward(at, who):
    shift = layer_shift(DAILY, at, LONDON)
    assert (shift.user_id if shift else None) == who


def test_it_makes_the_spring_forward_shift_an_hour_shorter():
    shift = layer_shift(DAILY, local(2026, 3, 28, 23, 0), LONDON)
    assert shift is not None and shift.user_id == BEN
    assert shift.starts_at == utc(2026, 3, 28, 9, 0)  # 09:00 GMT
    assert shift.ends_at == utc(2026, 3, 29, 8, 0)  # 09:00 BST
    assert shift.ends_at - shift.starts_at == timedelta(hours=23)


WEEKLY_MONDAY = Layer(
    members=(ANN, BEN), rotation="weekly", handoff_weekday=0, starts_on=date(2026, 10, 5)
)


@pytest.mark.parametrize(
    ("at", "who"),
    [
        (local(2026, 10, 19, 8, 59), BEN),  # week of 12 Oct
        (local(2026, 10, 19, 9, 0), ANN),  # 08:00 UTC, summer time
        (utc(2026, 10, 25, 0, 30), ANN),  # 01:30 BST, the first of the two 01:30s
        (utc(2026, 10, 25, 1, 30), ANN),  # 01:30 GMT, the second
        (utc(2026, 10, 26, 8, 59), ANN),  # 08:59 GMT on the Monday after
        (utc(2026, 10, 26, 9, 0), BEN),  # 09:00 GMT: the same wall-clock handoff
    ],
)
def test_it_hands_off_weekly_at_the_same_wall_clock_time_across_fall_back(at, who):
    assert on_call_at([WEEKLY_MONDAY], [], at, LONDON) == (who, "level 1")


def test_it_makes_the_fall_back_week_an_hour_longer():
    shift = layer_shift(WEEKLY_MONDAY, utc(2026, 10, 25, 12), LONDON)
    assert shift is not None
    assert (shift.starts_at, shift.ends_at) == (utc(2026, 10, 19, 8), utc(2026, 10, 26, 9))
    assert shift.ends_at - shift.starts_at == timedelta(days=7, hours=1)


SATURDAY_HANDOFF = Layer(
    members=(ANN, BEN, CAT),
    rotation="weekly",
    handoff_weekday=5,
    handoff_time=time(10, 0),
    starts_on=date(2026, 6, 1),  # a Monday: the first handoff is Saturday 6 June
    name="Primary",
)


@pytest.mark.parametrize(
    ("at", "who"),
    [
        (local(2026, 6, 6, 9, 59), None),  # the rotation has not begun
        (local(2026, 6, 6, 10, 0), ANN),
        (local(2026, 6, 13, 9, 59), ANN),  # Saturday morning, before the handoff
        (local(2026, 6, 13, 10, 0), BEN),  # the wedding day's handoff
        (local(2026, 6, 13, 23, 0), BEN),
        (local(2026, 6, 20, 10, 0), CAT),
        (local(2026, 6, 27, 10, 0), ANN),  # round again
    ],
)
def test_it_hands_off_on_saturday_morning(at, who):
    expected = (who, "Primary") if who is not None else (None, "")
    assert on_call_at([SATURDAY_HANDOFF], [], at, LONDON) == expected


WEEKDAYS = Layer(members=(ANN, BEN), rotation="weekly", starts_on=date(2026, 6, 1), name="Week")
WEEKEND = Layer(
    members=(CAT, DAN),
    rotation="weekly",
    starts_on=date(2026, 6, 6),
    handoff_time=time(0, 0),
    level=2,
    active_days=frozenset({5, 6}),
    name="Wedding weekend",
)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (local(2026, 6, 12, 23, 59), (BEN, "Week")),  # Friday night, the second week
        (local(2026, 6, 13, 0, 0), (DAN, "Wedding weekend")),  # Saturday: the higher layer wins
        (local(2026, 6, 14, 18, 0), (DAN, "Wedding weekend")),
        (local(2026, 6, 15, 0, 0), (BEN, "Week")),  # Monday 00:00, before the 09:00 handoff
        (local(2026, 6, 15, 9, 0), (ANN, "Week")),
    ],
)
def test_it_lets_the_higher_layer_win_where_it_covers(at, expected):
    assert on_call_at([WEEKDAYS, WEEKEND], [], at, LONDON) == expected


def test_it_lets_an_override_win_and_the_newest_override_win_over_an_older_one():
    holiday = Override(CAT, local(2026, 6, 10, 9), local(2026, 6, 12, 9), id=1)
    swap = Override(DAN, local(2026, 6, 11, 12), local(2026, 6, 11, 18), id=2)
    layers, overrides = [WEEKDAYS, WEEKEND], [holiday, swap]
    assert on_call_at(layers, overrides, local(2026, 6, 10, 8, 59), LONDON) == (BEN, "Week")
    assert on_call_at(layers, overrides, local(2026, 6, 10, 9), LONDON) == (CAT, "override")
    assert on_call_at(layers, overrides, local(2026, 6, 11, 12), LONDON) == (DAN, "override")
    assert on_call_at(layers, overrides, local(2026, 6, 11, 18), LONDON) == (CAT, "override")
    assert on_call_at(layers, overrides, local(2026, 6, 12, 9), LONDON) == (BEN, "Week")


def test_it_lists_spans_with_one_entry_per_change_of_person():
    holiday = Override(CAT, local(2026, 6, 10, 9), local(2026, 6, 11, 9), id=1)
    spans = shifts_between(
        [WEEKDAYS, WEEKEND], [holiday], local(2026, 6, 8, 12), local(2026, 6, 16, 12), LONDON
    )
    assert [(s.user_id, s.starts_at, s.ends_at) for s in spans] == [
        (BEN, local(2026, 6, 8, 12), local(2026, 6, 10, 9)),
        (CAT, local(2026, 6, 10, 9), local(2026, 6, 11, 9)),
        (BEN, local(2026, 6, 11, 9), local(2026, 6, 13, 0)),
        (DAN, local(2026, 6, 13, 0), local(2026, 6, 15, 0)),
        (BEN, local(2026, 6, 15, 0), local(2026, 6, 15, 9)),
        (ANN, local(2026, 6, 15, 9), local(2026, 6, 16, 12)),
    ]
    assert all(a.ends_at == b.starts_at for a, b in zip(spans, spans[1:], strict=False))


def test_it_answers_now_and_next():
    current, following = next_on_call([SATURDAY_HANDOFF], [], local(2026, 6, 11, 15), LONDON)
    assert (current.user_id, current.ends_at) == (ANN, local(2026, 6, 13, 10))
    assert following is not None
    assert (following.user_id, following.starts_at) == (BEN, local(2026, 6, 13, 10))


def test_it_has_nobody_without_members_or_layers():
    assert on_call_at([Layer(members=())], [], utc(2026, 6, 1), LONDON) == (None, "")
    assert on_call_at([], [], utc(2026, 6, 1), LONDON) == (None, "")
    spans = shifts_between([], [], utc(2026, 6, 1), utc(2026, 6, 2), LONDON)
    assert [(s.user_id, s.starts_at, s.ends_at) for s in spans] == [
        (None, utc(2026, 6, 1), utc(2026, 6, 2))
    ]
