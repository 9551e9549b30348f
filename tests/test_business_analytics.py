"""KPI cards, adoption, retention, churn risk, anomaly flags and forecasts."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from monitoring_core.business.adoption import adoption_shares, feature_ramp, features_by_segment
from monitoring_core.business.anomalies import robust_z, same_weekday_flags
from monitoring_core.business.daily import rollup_days
from monitoring_core.business.definitions import KPIS, Agg, KpiSpec
from monitoring_core.business.early_warning import (
    OrgActivity,
    churn_risk,
    load_activity,
    rank_churn_risk,
)
from monitoring_core.business.forecast import seasonal_forecast
from monitoring_core.business.kpis import Period, kpi_summary, mrr_movements, period_of, summarise
from monitoring_core.business.retention import grid_rows, retention_grid
from monitoring_core.timerange import TimeRange
from tests.business_support import ev, store

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 6, 30, 12, tzinfo=UTC)
D = date(2026, 6, 1)


def _d(n: int) -> date:
    return D + timedelta(days=n)


# ---------------------------------------------------------------- KPI cards (pure)
def test_it_summarises_kpis_against_the_previous_period():
    series = {
        "signups": {_d(i): float(i) for i in range(14)},  # 0..6 then 7..13
        "wau": {_d(6): 10.0, _d(13): 15.0},
        "form_completions": {_d(i): 1.0 for i in range(14)},
        "form_starts": {_d(i): 4.0 if i < 7 else 2.0 for i in range(14)},
        "churned_orgs": {_d(8): 1.0, _d(9): 1.0},
        "paying_orgs": {_d(6): 40.0},
    }
    week = Period(_d(7), _d(13))
    by_name = {spec.name: summarise(spec, series, week) for spec in KPIS}
    assert (by_name["signups"].value, by_name["signups"].previous) == (70, 21)
    assert by_name["signups"].delta == pytest.approx(49 / 21)
    assert by_name["signups"].today is None  # no partial day given: see test_business_periods
    assert by_name["signups"].sparkline == [7, 8, 9, 10, 11, 12, 13]
    assert (by_name["wau"].value, by_name["wau"].delta) == (15, 0.5)
    assert by_name["form_completion_rate"].value == 0.5
    assert by_name["form_completion_rate"].previous == 0.25
    assert by_name["churn_rate"].value == 2 / 40
    assert by_name["churn_rate"].previous is None  # no paying count before the first week
    assert by_name["mrr"].value is None


def test_it_maps_a_time_range_to_business_days():
    tr = TimeRange(datetime(2026, 6, 1, 23, 30, tzinfo=UTC), datetime(2026, 6, 8, 23, tzinfo=UTC))
    assert period_of(tr, LONDON) == Period(date(2026, 6, 2), date(2026, 6, 8))
    assert Period(_d(7), _d(13)).previous() == Period(_d(0), _d(6))


def test_it_reads_cards_and_mrr_movements_from_the_rollup(engine: Engine):
    store(
        engine,
        [
            ev(datetime(2026, 5, 20, 12, tzinfo=UTC), "subscription_started", org="A", mrr=100),
            ev(datetime(2026, 6, 3, 12, tzinfo=UTC), "subscription_started", org="B", mrr=50),
            ev(datetime(2026, 6, 4, 12, tzinfo=UTC), "subscription_cancelled", org="A"),
            ev(datetime(2026, 6, 5, 12, tzinfo=UTC), "signup", "u1"),
        ],
    )
    with engine.begin() as conn:
        rollup_days(conn, first=date(2026, 5, 1), last=date(2026, 6, 30), tz=LONDON)
        cards = {k.name: k for k in kpi_summary(conn, period=Period(_d(0), _d(29)))}
        months = mrr_movements(conn, period=Period(date(2026, 5, 1), date(2026, 6, 30)))
    assert cards["mrr"].value == 50 and cards["mrr"].previous == 100
    assert cards["churn_rate"].value == 1.0  # 1 of the 1 paying organization at the start
    assert cards["signups"].value == 1
    assert [m["mrr_new"] for m in months] == [100, 50]
    assert months[1]["mrr_churn"] == -100 and months[1]["net"] == -50 and months[1]["mrr"] == 50


# ---------------------------------------------------------------- adoption, retention
def test_it_computes_feature_adoption_shares_and_ramps(engine: Engine):
    events = [
        ev(datetime(2026, 6, d, 10, tzinfo=UTC), "page_view", f"u{i}")
        for d in (1, 8)
        for i in range(4)
    ]
    events += [
        ev(
            datetime(2026, 6, 1, 11, tzinfo=UTC),
            "feature_used",
            "u0",
            feature="timeline",
            user_type="supplier",
        ),
        ev(
            datetime(2026, 6, 8, 11, tzinfo=UTC),
            "feature_used",
            "u0",
            feature="timeline",
            user_type="supplier",
        ),
        ev(
            datetime(2026, 6, 8, 11, tzinfo=UTC),
            "feature_used",
            "u1",
            feature="timeline",
            user_type="couple",
        ),
        ev(
            datetime(2026, 6, 8, 12, tzinfo=UTC),
            "feature_used",
            "u1",
            feature="ai_writer",
            user_type="couple",
        ),
    ]
    store(engine, events)
    with engine.begin() as conn:
        rollup_days(conn, first=date(2026, 5, 1), last=date(2026, 6, 14), tz=LONDON)
        daily = adoption_shares(
            conn, period=Period(date(2026, 6, 8), date(2026, 6, 8)), grain="day"
        )
        weekly = adoption_shares(conn, period=Period(date(2026, 6, 1), date(2026, 6, 14)))
        ramp = feature_ramp(conn, today=date(2026, 6, 14))
        segments = features_by_segment(
            conn, start=datetime(2026, 6, 1, tzinfo=UTC), end=datetime(2026, 6, 15, tzinfo=UTC)
        )
    assert {(r["feature"], r["share"]) for r in daily} == {("ai_writer", 0.25), ("timeline", 0.5)}
    sunday_7 = [r for r in weekly if r["day"] == date(2026, 6, 7) and r["feature"] == "timeline"]
    assert sunday_7[0]["share"] == 0.25
    assert {(r["feature"], r["week"]) for r in ramp} == {
        ("timeline", 0),
        ("timeline", 1),
        ("ai_writer", 0),
    }
    couple = [(r["feature"], r["share"]) for r in segments if r["segment"] == "couple"]
    assert couple == [("ai_writer", 1.0), ("timeline", 1.0)]


def test_it_builds_the_weekly_retention_grid(engine: Engine):
    mon = datetime(2026, 6, 1, 10, tzinfo=UTC)  # a Monday
    events = [ev(mon, "signup", u) for u in ("a", "b", "c", "d")]
    events += [ev(mon + timedelta(days=7), "page_view", u) for u in ("a", "b")]
    events += [ev(mon + timedelta(days=14), "form_completed", "a")]
    events += [ev(mon + timedelta(days=8), "signup", "e")]
    events += [ev(mon - timedelta(days=1), "page_view", "a")]  # before signup: not a return
    store(engine, events)
    with engine.begin() as conn:  # the rollup keeps the grid; recomputing a day keeps it whole
        rollup_days(conn, first=date(2026, 5, 25), last=date(2026, 6, 17), tz=LONDON)
        rollup_days(conn, first=date(2026, 6, 1), last=date(2026, 6, 1), tz=LONDON)
        rollup_days(conn, first=date(2026, 6, 9), last=date(2026, 6, 9), tz=LONDON)
    with engine.connect() as conn:
        grid = retention_grid(conn, today=date(2026, 6, 17), weeks=3, tz=LONDON)
        chosen = retention_grid(
            conn, today=date(2026, 6, 17), weeks=3, tz=LONDON, returning_event="form_completed"
        )
    assert [(c.week, c.size, c.returning) for c in grid] == [
        (date(2026, 6, 1), 4, [4, 2, 1]),
        (date(2026, 6, 8), 1, [1, 0]),
    ]
    assert grid[0].shares == [1.0, 0.5, 0.25]
    assert chosen[0].returning == [0, 0, 1]
    assert grid_rows(grid)[0] == {
        "cohort": date(2026, 6, 1),
        "size": 4,
        "week_0": 1.0,
        "week_1": 0.5,
        "week_2": 0.25,
    }


# ---------------------------------------------------------------- churn risk
def _org(name, *, e7, e30, idle_days, failed=0, mrr=100.0):
    last = None if idle_days is None else NOW - timedelta(days=idle_days)
    return OrgActivity(name, mrr, e7, e30, last, failed)


@pytest.mark.parametrize(
    ("activity", "score", "first_reason"),
    [
        (_org("steady", e7=70, e30=300, idle_days=1), 35 / 28, None),
        (_org("silent", e7=0, e30=0, idle_days=None, failed=2), 100, "no activity in 30 days"),
        (
            _org("fading", e7=7, e30=300, idle_days=14),
            40 * (1 - 1 / 10) + 17.5,
            "activity down 90%",
        ),
        (_org("unpaid", e7=70, e30=300, idle_days=0, failed=1), 12.5, "1 failed payment"),
    ],
)
def test_it_scores_churn_risk_with_reasons(activity, score, first_reason):
    risk = churn_risk(activity, NOW)
    assert risk.score == pytest.approx(score)
    if first_reason is None:
        assert risk.reasons == [] and risk.level == "low"
    else:
        assert risk.reasons[0].startswith(first_reason)


def test_it_ranks_organizations_by_risk_then_mrr():
    orgs = [
        _org("steady", e7=70, e30=300, idle_days=1),
        _org("fading", e7=7, e30=300, idle_days=20),
        _org("gone_small", e7=0, e30=0, idle_days=None, mrr=20),
        _org("gone_big", e7=0, e30=0, idle_days=None, mrr=500),
    ]
    ranked = rank_churn_risk(orgs, NOW)
    assert [r.organization_id for r in ranked] == ["gone_big", "gone_small", "fading", "steady"]
    assert [r.level for r in ranked] == ["high", "high", "high", "low"]
    assert rank_churn_risk(orgs, NOW, limit=1)[0].organization_id == "gone_big"


def test_it_loads_activity_of_paying_organizations_only(engine: Engine):
    store(
        engine,
        [
            ev(NOW - timedelta(days=60), "subscription_started", org="A", mrr=100),
            ev(NOW - timedelta(days=60), "subscription_started", org="B", mrr=40),
            ev(NOW - timedelta(days=10), "subscription_cancelled", org="B"),
            ev(NOW - timedelta(days=2), "page_view", "u1", "A"),
            ev(NOW - timedelta(days=20), "form_completed", "u1", "A"),
            ev(NOW - timedelta(days=3), "payment_failed", None, "A"),
            ev(NOW - timedelta(days=1), "page_view", "u9", "C"),  # never paid
        ],
    )
    with engine.connect() as conn:
        activity = load_activity(conn, now=NOW)
    assert activity == [OrgActivity("A", 100.0, 2, 3, NOW - timedelta(days=20), 1)]


# ---------------------------------------------------------------- anomalies, forecast
def test_it_computes_a_robust_z_score():
    z, mid = robust_z(130, [100, 110, 90, 105, 95])
    assert mid == 100
    assert z == pytest.approx(30 / (1.4826 * 5))
    assert robust_z(103, [100, 101, 99, 100])[0] == pytest.approx(1.5)  # floor: 2 % of 100
    assert robust_z(100, [100, 100, 100, 100])[0] == 0  # flat history: the floor avoids /0


def test_it_flags_kpi_days_against_the_same_weekday():
    # Weekdays differ a lot (weekend dip); only the collapsed Monday is anomalous.
    series = {_d(i): (50.0 if _d(i).weekday() >= 5 else 200.0) + (i % 3) for i in range(70)}
    monday = _d(63)
    assert monday.weekday() == 0
    series[monday] = 120.0
    flags = same_weekday_flags("dau", series, [_d(i) for i in range(56, 70)])
    assert [(f.day, f.direction) for f in flags] == [(monday, "down")]
    assert same_weekday_flags("dau", series, [_d(3)]) == []  # too little history


def test_it_forecasts_two_weeks_with_a_widening_band():
    start = date(2026, 4, 6)  # a Monday
    truth = [
        100 + 0.5 * i + (30 if (start + timedelta(days=i)).weekday() < 5 else -40)
        for i in range(70)
    ]
    noisy = [v + (3 if i % 2 else -3) for i, v in enumerate(truth)]
    points = seasonal_forecast("dau", noisy[:56], start + timedelta(days=55))
    assert len(points) == 14
    assert points[0].day == start + timedelta(days=56)
    for p, actual in zip(points, truth[56:], strict=True):
        assert p.lower <= p.forecast <= p.upper
        assert p.lower <= actual <= p.upper
        assert math.isclose(p.forecast, actual, abs_tol=6)
    widths = [p.upper - p.lower for p in points]
    assert widths == sorted(widths)
    with pytest.raises(ValueError, match="at least 14"):
        seasonal_forecast("dau", [1.0] * 10, start)


def test_it_keeps_a_kpi_spec_per_card():
    assert {s.name for s in KPIS} >= {"dau", "wau", "mau", "stickiness", "mrr", "churn_rate"}
    assert KpiSpec("x", "X", Agg.SUM).fmt == "{:,.0f}"
