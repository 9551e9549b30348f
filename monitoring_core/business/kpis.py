"""KPI reads from the daily rollup: cards with deltas and sparklines, series, MRR movements.

Periods a product manager can quote: a range of N days is exactly N business days
(`period_of`); a card's value and delta compare N complete days with the N days before
(`complete_period`: a range reaching today is moved back to end yesterday), and today's
partial value is shown apart (`KpiValue.today`), never inside a delta.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from statistics import fmean
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from monitoring_core.business.definitions import (
    KPIS,
    Agg,
    KpiSpec,
    Movement,
    local_day,
    money_specs,
)
from monitoring_core.schema import business_metrics_daily
from monitoring_core.timerange import TimeRange

__all__ = [
    "KpiValue",
    "Period",
    "complete_period",
    "currencies_in",
    "daily_series",
    "card_days",
    "cards_of",
    "kpi_cards",
    "kpi_summary",
    "mrr_movements",
    "period_of",
    "summarise",
    "trends",
]

Series = Mapping[str, Mapping[date, float]]
MOVEMENT_NAMES = tuple(f"mrr_{m}" for m in Movement)


@dataclass(frozen=True)
class Period:
    """Business days first..last, inclusive."""

    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def previous(self) -> Period:
        return Period(self.first - timedelta(days=self.days), self.first - timedelta(days=1))

    def each_day(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range(self.days)]


_DAY = timedelta(days=1)


def period_of(tr: TimeRange, tz: ZoneInfo) -> Period:
    """Exactly N business days for a range of N days (rounded, at least 1; a daylight-saving
    day of 23 or 25 hours counts as one), ending on the day of its (exclusive) end: "30d" is
    30 days, today included, not the 31 days it touches."""
    last = local_day(tr.end - timedelta(microseconds=1), tz)
    days = max(1, round(tr.duration / _DAY))
    return Period(last - timedelta(days=days - 1), last)


def complete_period(period: Period, now: datetime, tz: ZoneInfo) -> Period:
    """The same number of days, complete: a period reaching today (or later) is moved back
    to end yesterday, so a partial day never drags a value or a delta down."""
    yesterday = local_day(now, tz) - _DAY
    if period.last <= yesterday:
        return period
    return Period(yesterday - timedelta(days=period.days - 1), yesterday)


@dataclass(frozen=True)
class KpiValue:
    name: str
    label: str
    value: float | None
    previous: float | None
    delta: float | None  # relative change against the previous period (both complete)
    today: float | None  # today so far (partial: in no value, delta or sparkline); None
    # when the range does not reach today
    sparkline: list[float]
    fmt: str
    higher_is_better: bool


def daily_series(
    conn: Connection, *, names: Iterable[str], first: date, last: date
) -> dict[str, dict[date, float]]:
    """`{metric: {day: value}}` from business_metrics_daily (days without a row are absent)."""
    t = business_metrics_daily
    rows = conn.execute(
        select(t.c.metric_name, t.c.day, t.c.value).where(
            t.c.day >= first, t.c.day <= last, t.c.metric_name.in_(list(names))
        )
    )
    out: dict[str, dict[date, float]] = defaultdict(dict)
    for name, day, value in rows:
        out[name][day] = value
    return dict(out)


def _values(series: Series, name: str, period: Period) -> list[float]:
    days = series.get(name, {})
    return [days[d] for d in period.each_day() if d in days]


def _aggregate(spec: KpiSpec, series: Series, period: Period) -> float | None:
    if spec.agg is Agg.RATIO:
        assert spec.numerator and spec.denominator
        num = sum(_values(series, spec.numerator, period))
        if spec.denominator_at_start:
            before = series.get(spec.denominator, {}).get(period.first - timedelta(days=1))
            den = before or 0.0
        else:
            den = sum(_values(series, spec.denominator, period))
        return num / den if den else None
    values = _values(series, spec.name, period)
    if not values:
        return None
    if spec.agg is Agg.SUM:
        return sum(values)
    if spec.agg is Agg.MEAN:
        return fmean(values)
    return values[-1]


def _sparkline(spec: KpiSpec, series: Series, period: Period) -> list[float]:
    name = spec.numerator if spec.denominator_at_start and spec.numerator else spec.name
    return _values(series, name, period)


def summarise(
    spec: KpiSpec, series: Series, period: Period, partial_day: date | None = None
) -> KpiValue:
    """One KPI card: the period's value against the previous period's, and the value of
    `partial_day` (today so far) apart (pure)."""
    value = _aggregate(spec, series, period)
    previous = _aggregate(spec, series, period.previous())
    delta = (value - previous) / abs(previous) if value is not None and previous else None
    today = None
    if partial_day is not None:
        today = _aggregate(spec, series, Period(partial_day, partial_day))
    return KpiValue(
        spec.name,
        spec.label,
        value,
        previous,
        delta,
        today,
        _sparkline(spec, series, period),
        spec.fmt,
        spec.higher_is_better,
    )


def _names(specs: Sequence[KpiSpec]) -> set[str]:
    names = set()
    for spec in specs:
        names |= {n for n in (spec.name, spec.numerator, spec.denominator) if n}
    return names


def kpi_summary(
    conn: Connection, *, period: Period, specs: Sequence[KpiSpec] = KPIS
) -> list[KpiValue]:
    """Every KPI card of the period (one read of the rollup for both periods)."""
    first = period.previous().first - timedelta(days=1)
    series = daily_series(conn, names=_names(specs), first=first, last=period.last)
    return [summarise(spec, series, period) for spec in specs]


def currencies_in(conn: Connection, *, first: date, last: date) -> list[str]:
    """The currencies revenue came in on days first..last (`revenue:<code>` rollup rows)."""
    t = business_metrics_daily
    names = conn.execute(
        select(t.c.metric_name)
        .distinct()
        .where(t.c.day >= first, t.c.day <= last, t.c.metric_name.startswith("revenue:"))
    ).scalars()
    return sorted(name.split(":", 1)[1] for name in names)


def kpi_cards(
    conn: Connection,
    *,
    period: Period,
    now: datetime,
    tz: ZoneInfo,
    specs: Sequence[KpiSpec] = KPIS,
) -> list[KpiValue]:
    """The KPI cards of a period as a product manager quotes them: its complete days against
    the same number of days before, today's partial value apart, revenue per currency."""
    days = card_days(period, now, tz)
    currencies = currencies_in(conn, first=days.first, last=days.last)
    names = _names(money_specs(tuple(specs), currencies))
    series = daily_series(conn, names=names, first=days.first, last=days.last)
    return cards_of(series, currencies, period=period, now=now, tz=tz, specs=specs)


def card_days(period: Period, now: datetime, tz: ZoneInfo) -> Period:
    """The days the cards of `period` read: the day before the previous complete period (churn
    rate's denominator) up to its last complete day, or today when the period reaches it."""
    complete = complete_period(period, now, tz)
    today = local_day(now, tz)
    last = today if period.first <= today <= period.last else complete.last
    return Period(complete.previous().first - _DAY, max(complete.last, last))


def cards_of(
    series: Series,
    currencies: list[str],
    *,
    period: Period,
    now: datetime,
    tz: ZoneInfo,
    specs: Sequence[KpiSpec] = KPIS,
) -> list[KpiValue]:
    """`kpi_cards` from a series already read (the rollup's, or one computed from the events
    an organisation-scoped session may read) covering `card_days` (pure)."""
    complete = complete_period(period, now, tz)
    today = local_day(now, tz)
    partial = today if period.first <= today <= period.last else None
    specs = money_specs(tuple(specs), currencies)
    return [summarise(spec, series, complete, partial) for spec in specs]


def trends(conn: Connection, *, names: Sequence[str], period: Period) -> list[dict[str, object]]:
    """Daily values with a trailing 7-day mean, one row per (day, metric)."""
    first = period.first - timedelta(days=6)
    series = daily_series(conn, names=names, first=first, last=period.last)
    rows: list[dict[str, object]] = []
    for name in names:
        days = series.get(name, {})
        for day in period.each_day():
            window = [days[d] for d in Period(day - timedelta(days=6), day).each_day() if d in days]
            rows.append(
                {
                    "day": day,
                    "metric": name,
                    "value": days.get(day),
                    "mean_7d": fmean(window) if window else None,
                }
            )
    return rows


def _bucket(day: date, grain: str) -> date:
    if grain == "month":
        return day.replace(day=1)
    if grain == "week":
        return day - timedelta(days=day.weekday())
    return day


def mrr_movements(
    conn: Connection, *, period: Period, grain: str = "month"
) -> list[dict[str, object]]:
    """MRR movements per month/week/day: losses negative, net, and MRR at the bucket's end."""
    if grain not in ("day", "week", "month"):
        raise ValueError("grain must be day, week or month")
    series = daily_series(
        conn, names=(*MOVEMENT_NAMES, "mrr"), first=period.first, last=period.last
    )
    buckets: dict[date, dict[str, float]] = {}
    mrr = series.get("mrr", {})
    for day in period.each_day():
        row = buckets.setdefault(_bucket(day, grain), dict.fromkeys(MOVEMENT_NAMES, 0.0))
        for name in MOVEMENT_NAMES:
            sign = -1.0 if name in ("mrr_churn", "mrr_contraction") else 1.0
            row[name] += sign * series.get(name, {}).get(day, 0.0)
        if day in mrr:
            row["mrr"] = mrr[day]
    return [
        {"period": start, **row, "net": sum(row[m] for m in MOVEMENT_NAMES)}
        for start, row in sorted(buckets.items())
    ]


def as_of(now: datetime, tz: ZoneInfo, days: int) -> Period:
    """The last `days` business days ending today."""
    today = local_day(now, tz)
    return Period(today - timedelta(days=days - 1), today)
