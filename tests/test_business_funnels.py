"""Funnels in SQL against hand-built users: order, windows, strictness, breakdowns, medians."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from monitoring_core.business.funnels import FunnelMode, build_steps, funnel, validate_funnel
from tests.business_support import ev, store

T0 = datetime(2026, 6, 1, 9, tzinfo=UTC)
STEPS = ["signup", "form_created", "form_completed", "subscription_paid"]
WEEK = timedelta(days=7)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def _run(engine: Engine, **kwargs):
    args = {"steps": STEPS, "start": T0, "end": T0 + timedelta(days=30), "window": WEEK}
    with engine.connect() as conn:
        return funnel(conn, **(args | kwargs))


def test_it_builds_conversion_and_drop_off_per_step():
    steps = build_steps(["a", "b", "c"], [10, 4, 1], [None, 60.0, 30.0])
    assert [s.users for s in steps] == [10, 4, 1]
    assert [s.conversion_rate for s in steps] == [1.0, 0.4, 0.1]
    assert [s.step_conversion_rate for s in steps] == [1.0, 0.4, 0.25]
    assert [s.drop_off for s in steps] == [0, 6, 3]
    assert steps[2].drop_off_rate == 0.75
    assert steps[1].median_seconds_from_previous == 60.0
    assert build_steps(["a", "b"], [0, 0], [None, None])[1].conversion_rate == 0.0


def test_it_counts_users_by_the_furthest_step_in_order_within_the_window(engine: Engine):
    store(
        engine,
        [
            # u1 converts fully: 1 h, 2 h and 3 h between steps.
            ev(at(0), "signup", "u1"),
            ev(at(1), "form_created", "u1"),
            ev(at(3), "form_completed", "u1"),
            ev(at(6), "subscription_paid", "u1"),
            # u2 completes the form 8 days later: outside the window.
            ev(at(0), "signup", "u2"),
            ev(at(2), "form_created", "u2"),
            ev(at(24 * 8), "form_completed", "u2"),
            # u3 does steps 2 and 3 out of order: only 1 -> 2 counts.
            ev(at(0), "signup", "u3"),
            ev(at(1), "form_completed", "u3"),
            ev(at(2), "form_created", "u3"),
            # u4 created a form before signing up: step 2 must follow step 1.
            ev(at(-1), "form_created", "u4"),
            ev(at(0), "signup", "u4"),
            # u5 reaches step 3 exactly at the window's edge (inclusive).
            ev(at(0), "signup", "u5"),
            ev(at(1), "form_created", "u5"),
            ev(at(24 * 7), "form_completed", "u5"),
            ev(at(24 * 7 + 0.01), "subscription_paid", "u5"),
        ],
    )
    result = _run(engine)
    assert [s.users for s in result.steps] == [5, 4, 2, 1]
    assert [s.drop_off for s in result.steps] == [0, 1, 2, 1]
    assert result.steps[3].median_seconds_from_previous == 3 * 3600
    assert result.median_seconds_to_convert == 6 * 3600
    # step 2 -> 3 for u1 (2 h) and u5 (167 h): the median of two is their mean
    assert result.steps[2].median_seconds_from_previous == (2 + 167) / 2 * 3600


def test_it_requires_the_next_funnel_event_in_strict_mode(engine: Engine):
    store(
        engine,
        [
            ev(at(0), "signup", "u1"),
            ev(at(0.5), "page_view", "u1"),  # not a funnel event: allowed even when strict
            ev(at(1), "form_created", "u1"),
            ev(at(2), "signup", "u1"),  # another step's event in between
            ev(at(3), "form_completed", "u1"),
        ],
    )
    ordered = _run(engine, mode=FunnelMode.ORDERED)
    strict = _run(engine, mode=FunnelMode.STRICT)
    assert [s.users for s in ordered.steps] == [1, 1, 1, 0]
    assert [s.users for s in strict.steps] == [1, 1, 0, 0]


def test_it_takes_the_start_that_gets_furthest_and_only_starts_in_the_range(engine: Engine):
    store(
        engine,
        [
            ev(at(0), "signup", "u1"),  # a start that goes nowhere
            ev(at(24 * 20), "signup", "u1"),  # a later start that converts two steps
            ev(at(24 * 20 + 1), "form_created", "u1"),
            ev(at(-5), "signup", "u2"),  # started before the range
            ev(at(-4), "form_created", "u2"),
            ev(at(24 * 31), "signup", "u3"),  # starts after the range
        ],
    )
    result = _run(engine)
    assert [s.users for s in result.steps] == [1, 1, 0, 0]
    assert result.steps[1].median_seconds_from_previous == 3600


def test_it_breaks_down_by_a_property_of_the_first_step_with_the_rest_as_other(engine: Engine):
    devices = {"u1": "mobile", "u2": "mobile", "u3": "mobile", "u4": "desktop", "u5": "tablet"}
    events = [ev(at(0), "signup", u, device=d) for u, d in devices.items()]
    events += [ev(at(1), "signup", u) for u in ("u6", "u7")]  # no device
    events += [ev(at(2), "form_created", u) for u in ("u1", "u4", "u6")]
    store(engine, events)
    result = _run(engine, steps=STEPS[:2], breakdown="device", top=2)
    users = {label: [s.users for s in steps] for label, steps in result.breakdown.items()}
    assert users == {"mobile": [3, 1], "(none)": [2, 1], "Other": [2, 1]}
    assert list(result.breakdown)[-1] == "Other"
    assert [s.users for s in result.steps] == [7, 3]
    rows = result.rows()
    assert rows[0]["breakdown"] == "(all)" and len(rows) == 8


def test_it_returns_zero_counts_for_no_events(engine: Engine):
    result = _run(engine)
    assert [s.users for s in result.steps] == [0, 0, 0, 0]
    assert result.median_seconds_to_convert is None


@pytest.mark.parametrize(
    ("steps", "window", "message"),
    [
        (["signup"], WEEK, "2 to 8 steps"),
        (["signup", "signup"], WEEK, "different event type"),
        (STEPS, timedelta(0), "positive"),
    ],
)
def test_it_refuses_bad_funnel_definitions(steps, window, message):
    with pytest.raises(ValueError, match=message):
        validate_funnel(steps, window)
