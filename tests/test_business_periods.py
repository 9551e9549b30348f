"""Business figures a product manager can quote: exactly N days, deltas over complete days,
today apart and dashed (pure with explicit `now`, then the rollup and the page)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert
from streamlit.testing.v1 import AppTest

from monitoring_core.business.daily import rollup_days
from monitoring_core.business.definitions import KPIS, money_specs
from monitoring_core.business.kpis import (
    Period,
    complete_period,
    kpi_cards,
    period_of,
    summarise,
)
from monitoring_core.enums import Role
from monitoring_core.schema import business_metrics_daily
from monitoring_core.timerange import parse_time_range
from tests.business_support import ev, store
from ui.partial_days import daily_trend_figure, split_partial

LONDON = ZoneInfo("Europe/London")
DAY = timedelta(days=1)
EARLY = datetime(2026, 6, 10, 3, 20, tzinfo=UTC)  # 04:20 in London (BST)
LATE = datetime(2026, 6, 10, 22, 59, tzinfo=UTC)  # 23:59 in London
TODAY = date(2026, 6, 10)
DAU = next(spec for spec in KPIS if spec.name == "dau")
SIGNUPS = next(spec for spec in KPIS if spec.name == "signups")


@pytest.mark.parametrize("now", [EARLY, LATE])
@pytest.mark.parametrize("preset", ["7d", "30d", "90d"])
def test_it_makes_a_range_of_n_days_exactly_n_days(now: datetime, preset: str) -> None:
    days = int(preset[:-1])
    period = period_of(parse_time_range(preset, now=now), LONDON)
    assert (period.days, period.last) == (days, TODAY)
    complete = complete_period(period, now, LONDON)
    assert (complete.days, complete.last) == (days, TODAY - DAY)
    assert complete.previous() == Period(complete.first - days * DAY, complete.first - DAY)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # a week across the October change (25 hours on the 25th) is still 7 days
        (datetime(2026, 10, 28, 12, tzinfo=UTC), Period(date(2026, 10, 22), date(2026, 10, 28))),
        # and across the March change (23 hours on the 29th)
        (datetime(2026, 4, 1, 12, tzinfo=UTC), Period(date(2026, 3, 26), date(2026, 4, 1))),
    ],
)
def test_it_counts_days_not_hours_across_daylight_saving(now: datetime, expected: Period) -> None:
    assert period_of(parse_time_range("7d", now=now), LONDON) == expected


def test_it_leaves_a_period_that_ended_before_today_alone() -> None:
    past = Period(date(2026, 5, 1), date(2026, 5, 30))
    assert complete_period(past, EARLY, LONDON) == past


def _flat_dau_with_a_partial_today() -> dict[str, dict[date, float]]:
    """800 users every day, and at 04:20 today only 100 so far; signups 10 a day, 1 so far."""
    days = [TODAY - i * DAY for i in range(1, 61)]
    return {
        "dau": {**{d: 800.0 for d in days}, TODAY: 100.0},
        "signups": {**{d: 10.0 for d in days}, TODAY: 1.0},
    }


@pytest.mark.parametrize("spec", [DAU, SIGNUPS])
def test_it_keeps_today_out_of_values_deltas_and_sparklines(spec: object) -> None:
    series = _flat_dau_with_a_partial_today()
    period = complete_period(Period(TODAY - 6 * DAY, TODAY), EARLY, LONDON)
    card = summarise(DAU if spec is DAU else SIGNUPS, series, period, partial_day=TODAY)
    assert card.delta == 0.0  # the "DAU −12.5 % at 04:20" was the partial day
    assert card.today == (100.0 if spec is DAU else 1.0)
    assert len(card.sparkline) == 7 and (100.0 not in card.sparkline and 1.0 not in card.sparkline)


def test_it_splits_the_partial_day_into_a_dashed_tail() -> None:
    points = [(TODAY - 2 * DAY, 5.0), (TODAY - DAY, 6.0), (TODAY, 1.0)]
    assert split_partial(points, TODAY) == (points[:2], points[1:])
    assert split_partial(points[:2], TODAY) == (points[:2], [])
    assert split_partial(points, None) == (points, [])
    rows = [{"day": d, "metric": "dau", "value": v} for d, v in points]
    dashes = [t.line.dash for t in daily_trend_figure(rows, TODAY).data]
    assert dashes == [None, "dash"]


# ---------------------------------------------------------------- the rollup and the page
def _store_daily(engine: Engine, series: dict[str, dict[date, float]]) -> None:
    rows = [
        {"day": d, "metric_name": name, "value": v}
        for name, days in series.items()
        for d, v in days.items()
    ]
    with engine.begin() as conn:
        conn.execute(insert(business_metrics_daily), rows)


def test_it_reads_cards_over_complete_days_at_0420(engine: Engine) -> None:
    _store_daily(engine, _flat_dau_with_a_partial_today())
    period = period_of(parse_time_range("7d", now=EARLY), LONDON)
    with engine.connect() as conn:
        cards = {c.name: c for c in kpi_cards(conn, period=period, now=EARLY, tz=LONDON)}
    assert (cards["dau"].value, cards["dau"].delta, cards["dau"].today) == (800, 0.0, 100)
    assert (cards["signups"].value, cards["signups"].previous) == (70, 70)


def test_it_shows_complete_days_and_a_dashed_today_on_the_page(
    engine: Engine, now: datetime, logged_in_app: Callable[[Role | None], AppTest]
) -> None:
    today = now.astimezone(LONDON).date()
    days = [today - i * DAY for i in range(1, 61)]
    _store_daily(engine, {"dau": {**{d: 800.0 for d in days}, today: 100.0}})
    at = logged_in_app(Role.VIEWER)
    at.session_state["time_range"] = "30d"
    at.run()
    at.switch_page("pages/business.py").run()
    assert not at.exception
    (dau,) = [m for m in at.metric if m.label == "DAU (avg)"]
    assert (dau.value, dau.delta) == ("800", "+0.0 % vs prior 30 days")
    assert "Today so far (partial): 100" in dau.help
    caption = next(c.value for c in at.caption if c.value.startswith("The last"))
    first, last = today - 30 * DAY, today - DAY
    assert f"The last 30 complete days, {first:%a %-d %b} – {last:%a %-d %b %Y}" in caption


# ---------------------------------------------------------------- money keeps its currency
@pytest.mark.parametrize(
    ("currencies", "cards"),
    [
        ([], [("revenue", "Revenue", "1,234"), ("mrr", "MRR", "1,234")]),
        (["GBP"], [("revenue:GBP", "Revenue (GBP)", "£1,234"), ("mrr", "MRR", "£1,234")]),
        (
            ["USD", "EUR"],
            [
                ("revenue:EUR", "Revenue (EUR)", "€1,234"),
                ("revenue:USD", "Revenue (USD)", "$1,234"),
                ("mrr", "MRR", "1,234"),  # mixed: no single symbol is true
            ],
        ),
        (["JPY"], [("revenue:JPY", "Revenue (JPY)", "JPY 1,234"), ("mrr", "MRR", "JPY 1,234")]),
    ],
)
def test_it_gives_each_currency_its_own_revenue_card(currencies: list, cards: list) -> None:
    money = [s for s in money_specs(KPIS, currencies) if s.name.startswith(("revenue", "mrr"))]
    assert [(s.name, s.label, s.fmt.format(1234)) for s in money] == cards


def test_it_rolls_revenue_up_per_currency(engine: Engine) -> None:
    day = TODAY - 2 * DAY
    at = datetime(2026, 6, 8, 12, tzinfo=UTC)
    gbp, eur = ev(at, "subscription_paid", "u1", revenue=100), ev(at, "subscription_paid", "u2")
    eur = replace(eur, revenue=Decimal("40"), currency="eur")
    bare = replace(eur, user_id="u3", currency=None)
    store(engine, [gbp, eur, bare])
    with engine.begin() as conn:
        rollup_days(conn, first=day, last=day, tz=LONDON)
        cards = {
            c.name: c.value for c in kpi_cards(conn, period=Period(day, day), now=LATE, tz=LONDON)
        }
    assert {k: v for k, v in cards.items() if k.startswith("revenue")} == {
        "revenue:EUR": 40,
        "revenue:GBP": 100,
        "revenue:XXX": 40,  # sent without a currency: never counted as pounds
    }
