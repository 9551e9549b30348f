"""The daily rollup against hand-computed small data sets (time zones, rolling users, MRR)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from monitoring_core.business.daily import compute_days, rollup_days, run_daily_rollup
from monitoring_core.business.definitions import Movement, classify_mrr_change
from tests.business_support import daily_values, ev, store
from tests.rollup_fixtures import roll_up_now

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
D = date(2026, 6, 1)


@pytest.mark.parametrize(
    ("previous", "current", "had", "expected"),
    [
        (0, 100, False, (Movement.NEW, 100)),
        (0, 80, True, (Movement.REACTIVATION, 80)),
        (100, 150, True, (Movement.EXPANSION, 50)),
        (150, 120, True, (Movement.CONTRACTION, 30)),
        (120, 0, True, (Movement.CHURN, 120)),
        (100, 100, True, None),
        (0, 0, True, None),
    ],
)
def test_it_classifies_mrr_changes_as_chartmogul(previous, current, had, expected):
    got = classify_mrr_change(Decimal(previous), Decimal(current), had_mrr_before=had)
    assert got == (None if expected is None else (expected[0], Decimal(expected[1])))


def test_it_counts_events_on_the_business_day_across_midnight(engine: Engine):
    store(
        engine,
        [
            ev("2026-06-06T22:59:59+00:00", "signup", "u1"),  # 23:59:59 BST, June 6
            ev("2026-06-06T23:00:00+00:00", "signup", "u2"),  # 00:00 BST, June 7
            ev("2026-01-10T23:30:00+00:00", "signup", "u3"),  # GMT in winter: still Jan 10
        ],
    )
    with engine.connect() as conn:
        june = compute_days(conn, first=date(2026, 6, 6), last=date(2026, 6, 7), tz=LONDON)
        jan = compute_days(conn, first=date(2026, 1, 10), last=date(2026, 1, 11), tz=LONDON)
        ny = compute_days(conn, first=date(2026, 6, 6), last=date(2026, 6, 7), tz=NEW_YORK)
    assert june[(date(2026, 6, 6), "signups")] == 1
    assert june[(date(2026, 6, 7), "signups")] == 1
    assert jan[(date(2026, 1, 10), "signups")] == 1
    assert jan[(date(2026, 1, 11), "signups")] == 0
    assert ny[(date(2026, 6, 6), "signups")] == 2  # 18:59 and 19:00 in New York


def _day(n: int, hour: int = 12) -> datetime:
    return datetime(D.year, D.month, D.day, hour, tzinfo=UTC) + timedelta(days=n)


def test_it_counts_dau_wau_mau_for_users_active_on_several_days(engine: Engine):
    # u1 on days 0, 1 and 8; u2 on day 0 (twice); u3 on day 30.
    store(
        engine,
        [
            ev(_day(0), "page_view", "u1"),
            ev(_day(1), "page_view", "u1"),
            ev(_day(8), "page_view", "u1"),
            ev(_day(0, 9), "page_view", "u2"),
            ev(_day(0, 10), "form_started", "u2"),
            ev(_day(30), "page_view", "u3"),
        ],
    )
    with engine.connect() as conn:
        rows = compute_days(conn, first=D, last=D + timedelta(days=35), tz=LONDON)

    def at(n: int, name: str) -> float:
        return rows[(D + timedelta(days=n), name)]

    assert [at(n, "dau") for n in (0, 1, 2, 8, 30)] == [2, 1, 0, 1, 1]
    assert [at(n, "wau") for n in (0, 1, 6, 7, 8, 14, 15)] == [2, 2, 2, 1, 1, 1, 0]
    assert [at(n, "mau") for n in (0, 27, 28, 29, 30, 35)] == [2, 2, 1, 1, 2, 2]
    assert at(35, "mau") == 2  # u1 (day 8) until day 35, u3
    assert at(0, "stickiness") == 1.0
    assert at(30, "stickiness") == 0.5
    assert at(0, "events") == 3


def test_it_matches_brute_force_rolling_counts_on_random_activity(engine: Engine):
    rnd = random.Random(7)
    events = [
        ev(_day(rnd.randrange(60), rnd.randrange(24)), "page_view", f"u{rnd.randrange(40)}")
        for _ in range(400)
    ]
    store(engine, events)
    first, last = D + timedelta(days=20), D + timedelta(days=59)
    with engine.connect() as conn:
        rows = compute_days(conn, first=first, last=last, tz=LONDON)
    days = {(e.user_id, e.time.astimezone(LONDON).date()) for e in events}
    for n in range((last - first).days + 1):
        day = first + timedelta(days=n)
        for name, width in (("dau", 1), ("wau", 7), ("mau", 28)):
            users = {u for u, d in days if day - timedelta(days=width) < d <= day}
            assert rows[(day, name)] == len(users), (day, name)


def test_it_classifies_mrr_movements_and_carries_mrr_forward(engine: Engine):
    store(
        engine,
        [
            ev(_day(-40), "subscription_started", org="A", mrr=100),  # before the range
            ev(_day(0), "subscription_changed", org="A", mrr=150),  # expansion 50
            ev(_day(1), "subscription_changed", org="A", mrr=120),  # contraction 30
            ev(_day(1), "subscription_started", org="B", mrr=50),  # new 50
            ev(_day(3), "subscription_cancelled", org="A"),  # churn 120
            ev(_day(5, 9), "subscription_started", org="A", mrr=80),  # reactivation 80
            ev(_day(5, 10), "subscription_changed", org="B", mrr=50),  # no movement
        ],
    )
    with engine.connect() as conn:
        rows = compute_days(conn, first=D, last=D + timedelta(days=6), tz=LONDON)

    def at(n: int, name: str) -> float | None:
        return rows.get((D + timedelta(days=n), name))

    assert [at(n, "mrr") for n in range(7)] == [150, 170, 170, 50, 50, 130, 130]
    assert [at(n, "paying_orgs") for n in range(7)] == [1, 2, 2, 1, 1, 2, 2]
    assert (at(0, "mrr_expansion"), at(1, "mrr_contraction"), at(1, "mrr_new")) == (50, 30, 50)
    assert (at(3, "mrr_churn"), at(3, "churned_orgs")) == (120, 1)
    assert (at(5, "mrr_reactivation"), at(5, "mrr_new"), at(5, "reactivated_orgs")) == (80, 0, 1)
    assert at(2, "mrr_new") is None  # no movement rows on a quiet day


def test_it_sql_movements_agree_with_the_pure_classifier(engine: Engine):
    rnd = random.Random(3)
    events, expected = [], {m: Decimal(0) for m in Movement}
    for org in range(12):
        previous, had = Decimal(0), False
        for step in range(8):
            mrr = Decimal(rnd.choice([0, 0, 50, 100, 150, 200]))
            kind = "subscription_cancelled" if mrr == 0 else "subscription_changed"
            events.append(ev(_day(step, 8 + org), kind, org=f"o{org}", mrr=float(mrr)))
            got = classify_mrr_change(previous, mrr, had_mrr_before=had)
            if got:
                expected[got[0]] += got[1]
            had, previous = had or previous > 0, mrr
    store(engine, events)
    with engine.connect() as conn:
        rows = compute_days(conn, first=D, last=D + timedelta(days=8), tz=LONDON)
    for movement, amount in expected.items():
        total = sum(v for (_, name), v in rows.items() if name == f"mrr_{movement}")
        assert total == float(amount), movement


def test_it_computes_rates_revenue_and_feature_users(engine: Engine):
    store(
        engine,
        [
            ev(_day(0), "form_started", "u1"),
            ev(_day(0), "form_started", "u2"),
            ev(_day(0), "form_started", "u3"),
            ev(_day(0), "form_started", "u4"),
            ev(_day(0), "form_completed", "u1"),
            ev(_day(0), "subscription_paid", "u1", "A", revenue=49.5),
            ev(_day(0), "subscription_paid", "u2", "B", revenue=100),
            ev(_day(0), "feature_used", "u1", feature="timeline"),
            ev(_day(0, 13), "feature_used", "u1", feature="timeline"),
            ev(_day(2), "feature_used", "u2", feature="timeline"),
        ],
    )
    with engine.connect() as conn:
        rows = compute_days(conn, first=D, last=D + timedelta(days=2), tz=LONDON)
    assert rows[(D, "form_completion_rate")] == 0.25
    assert rows[(D, "revenue")] == 149.5
    assert rows[(D, "feature_users:timeline")] == 1
    assert rows[(D + timedelta(days=2), "feature_wau:timeline")] == 2
    assert (D + timedelta(days=1), "form_completion_rate") not in rows  # no starts, no rate


def test_it_replaces_rows_of_recomputed_days_and_picks_up_late_events(engine: Engine):
    now = datetime(2026, 6, 20, 12, tzinfo=UTC)
    # Events backfilled before the first run are rolled up by it.
    store(
        engine,
        [
            ev(now - timedelta(hours=1), "signup", "u1"),
            ev(now - timedelta(days=19), "signup", "u0"),
        ],
    )
    with engine.begin() as conn:
        days = run_daily_rollup(conn, now=now, tz=LONDON)
    assert days == [date(2026, 6, 1), date(2026, 6, 19), date(2026, 6, 20)]
    assert daily_values(engine, "signups")[date(2026, 6, 20)] == 1
    # A late event for June 10 arrives: the next run recomputes that day only (besides today).
    store(engine, [ev("2026-06-10T10:00:00+00:00", "signup", "u2")])
    with engine.begin() as conn:
        days = run_daily_rollup(conn, now=now + timedelta(minutes=5), tz=LONDON)
    assert date(2026, 6, 10) in days
    assert daily_values(engine, "signups")[date(2026, 6, 10)] == 1
    with engine.begin() as conn:
        rollup_days(conn, first=date(2026, 6, 20), last=date(2026, 6, 20), tz=LONDON)
    assert daily_values(engine, "signups")[date(2026, 6, 20)] == 1  # replaced, not doubled


@pytest.mark.clock
def test_it_hands_todays_kpis_to_the_alert_engine_as_metric_points(engine: Engine, now):
    from sqlalchemy import text

    from jobs.business import business_rollup
    from jobs.registry import find_job

    # A minute apart, all today in London even just after midnight.
    since_midnight = now - now.astimezone(LONDON).replace(hour=0, minute=0, second=0)
    step = min(timedelta(minutes=1), since_midnight / 5)
    store(
        engine,
        [
            ev(now - 5 * step, "form_started", "u1"),
            ev(now - 4 * step, "form_started", "u2"),
            ev(now - 3 * step, "form_completed", "u1"),
        ],
    )
    assert find_job("business_rollup").func is business_rollup
    summary = business_rollup(engine, now)
    assert "KPI points" in summary
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT s.name, p.value FROM metric_points p "
                "JOIN metric_series s ON s.id = p.series_id WHERE s.name LIKE 'business.%'"
            )
        )
        points = {name: value for name, value in rows}
    assert points["business.form_completion_rate"] == 0.5
    assert points["business.dau"] == 2
    # … and the alert engine's metric query sees them once the worker's rollups ran.
    from monitoring_core.metrics_query import query_metric
    from monitoring_core.timerange import TimeRange

    roll_up_now(engine)
    with engine.connect() as conn:
        frame = query_metric(
            conn,
            metric_name="business.form_completion_rate",
            aggregation="avg",
            interval="5m",
            tr=TimeRange(now - timedelta(minutes=30), now + timedelta(minutes=5)),
        )
    assert frame["value"].tolist() == [0.5]
