"""Funnels in any order, a filter on the first step, conversion over time, time to convert,
and the people who dropped off at a step (hand-built users, real Postgres, fixed instants)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from monitoring_core.business.funnels import (
    FunnelFilter,
    FunnelMode,
    funnel,
    funnel_people,
    property_values,
)
from tests.business_support import ev, store

T0 = datetime(2026, 6, 1, 9, tzinfo=UTC)  # a Monday, 10:00 in London
STEPS = ["signup", "form_created", "form_completed", "subscription_paid"]
WEEK = timedelta(days=7)
LONDON = ZoneInfo("Europe/London")


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def _args(**kwargs: object) -> dict[str, object]:
    return {"steps": STEPS, "start": T0, "end": T0 + timedelta(days=30), "window": WEEK} | kwargs


def _run(engine: Engine, **kwargs: object):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return funnel(conn, **_args(**kwargs))  # type: ignore[arg-type]


def _people(engine: Engine, **kwargs: object) -> tuple[int, list[dict[str, object]]]:
    with engine.connect() as conn:
        return funnel_people(conn, **_args(**kwargs))  # type: ignore[arg-type]


def test_it_counts_steps_done_in_any_order_within_the_window(engine: Engine) -> None:
    store(
        engine,
        [
            # u1 does all four backwards: no step after signup in order, four in any order.
            ev(at(0), "subscription_paid", "u1"),
            ev(at(1), "form_completed", "u1"),
            ev(at(2), "form_created", "u1"),
            ev(at(3), "signup", "u1"),
            # u2 does two of the four (no signup at all).
            ev(at(0), "form_created", "u2"),
            ev(at(5), "form_completed", "u2"),
            # u3 does three, but the third is 8 days after the first: two within the window,
            # counted from the second event (a later start that gets further).
            ev(at(0), "signup", "u3"),
            ev(at(24 * 4), "form_created", "u3"),
            ev(at(24 * 8), "form_completed", "u3"),
            # u4: the same step twice is still one step.
            ev(at(0), "signup", "u4"),
            ev(at(1), "signup", "u4"),
        ],
    )
    anyorder = _run(engine, mode=FunnelMode.ANY_ORDER)
    assert [s.users for s in anyorder.steps] == [4, 3, 1, 1]
    assert [s.event_type for s in anyorder.steps] == [
        "any 1 of 4",
        "any 2 of 4",
        "any 3 of 4",
        "any 4 of 4",
    ]
    assert anyorder.median_seconds_to_convert == 3 * 3600  # u1: first to fourth in 3 h
    ordered = _run(engine, mode=FunnelMode.ORDERED)
    assert [s.users for s in ordered.steps] == [3, 1, 0, 0]  # u2 never signed up
    strict = _run(engine, mode=FunnelMode.STRICT)
    assert [s.users for s in strict.steps] == [3, 1, 0, 0]


def test_it_filters_the_first_step_by_a_property(engine: Engine) -> None:
    store(
        engine,
        [
            ev(at(0), "signup", "s1", user_type="supplier"),
            ev(at(1), "form_created", "s1"),
            ev(at(0), "signup", "s2", user_type="supplier"),
            ev(at(0), "signup", "c1", user_type="couple"),
            ev(at(1), "form_created", "c1"),
            ev(at(2), "form_completed", "c1"),
            ev(at(0), "signup", "x1"),  # no user type
            ev(at(1), "form_created", "x1"),
        ],
    )
    suppliers = FunnelFilter("user_type", ("supplier",))
    result = _run(engine, where=suppliers)
    assert [s.users for s in result.steps] == [2, 1, 0, 0]
    everyone = _run(engine, where=FunnelFilter("user_type", ("supplier", "couple")))
    assert [s.users for s in everyone.steps] == [3, 2, 1, 0]
    # any order: only users with a supplier signup; couples' form events do not count
    anyorder = _run(engine, where=suppliers, mode=FunnelMode.ANY_ORDER)
    assert [s.users for s in anyorder.steps] == [2, 1, 0, 0]
    with engine.connect() as conn:
        values = property_values(
            conn, event_type="signup", prop="user_type", start=at(-1), end=at(24)
        )
    assert values == ["supplier", "couple"]
    with pytest.raises(ValueError, match="at least one value"):
        _run(engine, where=FunnelFilter("user_type", ()))


def test_it_trends_conversion_by_entry_day_and_bins_the_time_to_convert(engine: Engine) -> None:
    store(
        engine,
        [
            # Monday: two enter, one converts in 30 minutes.
            ev(at(0), "signup", "a"),
            ev(at(0.5), "form_created", "a"),
            ev(at(1), "signup", "b"),
            # Tuesday 00:30 in London is still Monday 23:30 UTC: counted on Tuesday in London.
            ev(datetime(2026, 6, 1, 23, 30, tzinfo=UTC), "signup", "c"),
            ev(datetime(2026, 6, 3, 23, 30, tzinfo=UTC), "form_created", "c"),  # 2 days later
            ev(datetime(2026, 6, 1, 23, 40, tzinfo=UTC), "signup", "d"),
            ev(datetime(2026, 6, 1, 23, 41, tzinfo=UTC), "form_created", "d"),  # a minute
        ],
    )
    result = _run(engine, steps=STEPS[:2], tz=LONDON)
    trend = [(p.period, p.entered, p.converted) for p in result.trend]
    assert trend == [(date(2026, 6, 1), 2, 1), (date(2026, 6, 2), 2, 2)]
    assert result.trend[0].conversion_rate == 0.5
    assert result.time_to_convert == [
        (60.0, 300.0, 1),  # d: 1 minute
        (1800.0, 3600.0, 1),  # a: 30 minutes
        (2 * 86400.0, 3 * 86400.0, 1),  # c: 2 days
    ]
    weekly = _run(engine, steps=STEPS[:2], tz=LONDON, grain="week")
    assert [(p.period, p.entered, p.converted) for p in weekly.trend] == [(date(2026, 6, 1), 4, 3)]
    with pytest.raises(ValueError, match="grain"):
        _run(engine, grain="hour")


def test_it_lists_the_people_who_dropped_off_at_a_step(engine: Engine) -> None:
    store(
        engine,
        [
            ev(at(0), "signup", "full", "org_1"),
            ev(at(1), "form_created", "full", "org_1"),
            ev(at(2), "form_completed", "full", "org_1"),
            ev(at(3), "subscription_paid", "full", "org_1"),
            ev(at(0), "signup", "stuck_1", "org_2"),  # never creates a form
            ev(at(5), "signup", "stuck_2"),
            ev(at(1), "signup", "half"),
            ev(at(2), "form_created", "half"),  # stops after step 2
            ev(at(0), "signup", "late"),
            ev(at(24 * 8), "form_created", "late"),  # outside the window: dropped at step 2
            # strict mode: a signup between form_created and form_completed breaks the chain
            ev(at(0), "signup", "noisy"),
            ev(at(1), "form_created", "noisy"),
            ev(at(1.5), "signup", "noisy"),
            ev(at(2), "form_completed", "noisy"),
        ],
    )
    result = _run(engine)
    assert [s.drop_off for s in result.steps] == [0, 3, 1, 1]
    total, people = _people(engine, dropped_at=2)
    assert total == 3
    assert [p["user_id"] for p in people] == ["late", "stuck_1", "stuck_2"]  # by entry time
    stuck = people[1]
    assert stuck["organization_id"] == "org_2"
    assert stuck["entered_at"] == at(0) and stuck["last_step_at"] == at(0)
    assert (stuck["last_step"], stuck["dropped_before"]) == ("signup", "form_created")
    total, people = _people(engine, dropped_at=3)
    assert (total, [p["user_id"] for p in people]) == (1, ["half"])
    assert people[0]["last_step_at"] == at(2)
    total, people = _people(engine, dropped_at=2, limit=1)
    assert total == 3 and [p["user_id"] for p in people] == ["late"]
    # ordered: noisy completes the form; strict: noisy drops before form_completed
    ordered_3 = {p["user_id"] for p in _people(engine, dropped_at=3)[1]}
    strict_3 = {p["user_id"] for p in _people(engine, dropped_at=3, mode=FunnelMode.STRICT)[1]}
    assert (ordered_3, strict_3) == ({"half"}, {"half", "noisy"})
    assert _people(engine, dropped_at=4) == (
        1,
        [p for p in _people(engine, dropped_at=4)[1] if p["user_id"] == "noisy"],
    )
    with pytest.raises(ValueError, match="dropped_at"):
        _people(engine, dropped_at=1)
