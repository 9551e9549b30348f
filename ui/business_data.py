"""The Business page's reads, cached by period and by the rollup's version.

The page reads the daily rollup (and, for churn risk and the segment table, a few raw slices).
`ui.data.read` caches for 30 s and its keys carry `now`, so every half minute the whole page was
read again (churn risk alone 0.2–0.4 s on the demo). Here everything the page shows at first
sight comes from one call, `business_view`, cached for BUSINESS_TTL_S and keyed by the period,
the business day, the hour, and `rollup_version` (the newest `updated_at` of the rollup, which
the worker moves every 5 minutes when it recomputes today): a new rollup is a new key, so the
page never shows figures older than the rollup it could read. Widget-dependent extras (segment,
returning event) are cached the same way, one entry per choice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import streamlit as st
from sqlalchemy import Connection

from monitoring_core.business import adoption, kpis
from monitoring_core.business.anomalies import AnomalyFlag, kpi_anomalies
from monitoring_core.business.daily import rollup_version
from monitoring_core.business.dashboard import TREND_METRICS, churn_risk_rows, movement_grain
from monitoring_core.business.definitions import local_day
from monitoring_core.business.forecast import HISTORY_DAYS, ForecastPoint, forecast_kpis
from monitoring_core.business.retention import Cohort, retention_grid, week_start
from ui import data, organisations

__all__ = [
    "BUSINESS_TTL_S",
    "BusinessView",
    "business_view",
    "cached_extra",
    "last_complete_week_day",
]

BUSINESS_TTL_S = 600
CHURN_STEP = timedelta(minutes=5)  # churn risk is computed as of `now` floored to this


@dataclass(frozen=True)
class BusinessView:
    """Everything the page draws before any widget of its own is touched."""

    cards: list[kpis.KpiValue]
    currencies: list[str]
    series: dict[str, dict[date, float]]  # TREND_METRICS and the forecast history, per day
    mrr: list[dict[str, object]]
    grain: str
    adoption: list[dict[str, object]]
    ramp: list[dict[str, object]]
    retention: list[Cohort]
    churn: list[dict[str, Any]]
    anomalies: list[AnomalyFlag]
    forecast: list[ForecastPoint]


def last_complete_week_day(today: date) -> date:
    """The Sunday that ended the last complete week (the retention grid stops there)."""
    return week_start(today) - timedelta(days=1)


def _view(
    conn: Connection, period: kpis.Period, shown: kpis.Period, now: datetime, tz: ZoneInfo
) -> BusinessView:
    complete = kpis.complete_period(period, now, tz)
    today = local_day(now, tz)
    history_first = min(shown.first, complete.last - timedelta(days=HISTORY_DAYS - 1))
    grain = movement_grain(shown)
    return BusinessView(
        cards=kpis.kpi_cards(conn, period=period, now=now, tz=tz),
        currencies=kpis.currencies_in(conn, first=history_first, last=shown.last),
        series=kpis.daily_series(
            conn, names=(*TREND_METRICS, "revenue"), first=history_first, last=shown.last
        ),
        mrr=kpis.mrr_movements(conn, period=shown, grain=grain),
        grain=grain,
        adoption=adoption.adoption_shares(conn, period=shown, grain="week"),
        ramp=adoption.feature_ramp(conn, today=today),
        retention=retention_grid(conn, today=last_complete_week_day(today), tz=tz),
        churn=churn_risk_rows(conn, now=now),
        anomalies=kpi_anomalies(conn, period=complete),
        forecast=forecast_kpis(conn, last_day=complete.last),
    )


@st.cache_data(ttl=BUSINESS_TTL_S, show_spinner=False, max_entries=64)
def _cached_view(
    period: kpis.Period, shown: kpis.Period, moment: datetime, tz: ZoneInfo, version: Any
) -> BusinessView:
    with data.get_read_router().connect() as conn:
        return _view(conn, period, shown, moment, tz)


@st.cache_data(ttl=BUSINESS_TTL_S, show_spinner=False, max_entries=128)
def _cached_extra(target: str, version: Any, kwargs: tuple[tuple[str, Any], ...]) -> Any:
    function = _EXTRAS[target]
    with data.get_read_router().connect() as conn:
        return function(conn, **dict(kwargs))


_EXTRAS: dict[str, Callable[..., Any]] = {
    "features_by_segment": adoption.features_by_segment,
    "retention_grid": retention_grid,
}


def _or_stop(call: Callable[[], Any]) -> Any:
    """`call()`, or the friendly message `ui.data.read_or_stop` shows, and the page stops."""
    try:
        return data.guarded(call, "business view")
    except data.DatabaseProblem as problem:
        data.stop_with(problem)


def _version(today: date) -> Any:
    # The rollup adds up every organisation: never for a user limited to some (their figures
    # are pages/organisation.py's, computed under row-level security).
    organisations.refuse_limited_user("The Business page")
    return data.read_or_stop(rollup_version, today=today)


def business_view(
    period: kpis.Period, shown: kpis.Period, now: datetime, tz: ZoneInfo, today: date
) -> BusinessView:
    """The page's first-sight data for `period` (cards: its complete days) drawing the days of
    `shown`; cached by the rollup version and `now` floored to 5 minutes (cards only need its
    business day; churn risk is read as of that instant); a database failure stops the page
    with a message."""
    moment = now - timedelta(seconds=now.timestamp() % CHURN_STEP.total_seconds())
    version = _version(today)
    view: BusinessView = _or_stop(lambda: _cached_view(period, shown, moment, tz, version))
    return view


def cached_extra(target: str, day: date, /, **kwargs: Any) -> Any:
    """A widget-dependent read (`features_by_segment`, `retention_grid`) cached by the
    rollup's version as of business day `day`."""
    version = _version(day)
    return _or_stop(lambda: _cached_extra(target, version, tuple(sorted(kwargs.items()))))
