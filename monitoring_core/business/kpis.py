"""KPI reads from the daily rollup: cards with deltas and sparklines, series, MRR movements."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from statistics import fmean
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from monitoring_core.business.definitions import KPIS, Agg, KpiSpec, Movement, local_day
from monitoring_core.schema import business_metrics_daily
from monitoring_core.timerange import TimeRange

__all__ = [
    "KpiValue",
    "Period",
    "daily_series",
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


def period_of(tr: TimeRange, tz: ZoneInfo) -> Period:
    """The business days a time range touches (its end is exclusive)."""
    last = local_day(tr.end - timedelta(microseconds=1), tz)
    return Period(min(local_day(tr.start, tz), last), last)


@dataclass(frozen=True)
class KpiValue:
    name: str
    label: str
    value: float | None
    previous: float | None
    delta: float | None  # relative change against the previous period
    today: float | None  # the value on the period's last day
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


def summarise(spec: KpiSpec, series: Series, period: Period) -> KpiValue:
    """One KPI card: the period's value against the previous period's (pure)."""
    value = _aggregate(spec, series, period)
    previous = _aggregate(spec, series, period.previous())
    delta = (value - previous) / abs(previous) if value is not None and previous else None
    last_day = Period(period.last, period.last)
    today = _aggregate(spec, series, last_day) if spec.agg is not Agg.SUM else None
    if spec.agg is Agg.SUM:
        today = series.get(spec.name, {}).get(period.last)
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
