"""A 14-day forecast with an uncertainty band: linear trend + additive weekday effects.

Fitted by least squares on the last 8 weeks; the band is the regression's 95 % prediction
interval (z x sigma x sqrt(1 + x'(X'X)^-1 x)), so it widens with the horizon.
numpy only (already installed with pandas): a heavier model did not earn its place here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta

import numpy as np
from sqlalchemy import Connection

from monitoring_core.business.kpis import daily_series

__all__ = ["FORECAST_METRICS", "ForecastPoint", "forecast_kpis", "seasonal_forecast"]

FORECAST_METRICS = ("dau", "revenue")
HISTORY_DAYS = 56
Z_95 = 1.96


@dataclass(frozen=True)
class ForecastPoint:
    day: date
    metric: str
    forecast: float
    lower: float
    upper: float

    def row(self) -> dict[str, object]:
        return asdict(self)


def _design(t: np.ndarray, season: int) -> np.ndarray:
    """Columns: intercept, trend, and one dummy per season phase but the first."""
    phase = t.astype(int) % season
    dummies = [(phase == p).astype(float) for p in range(1, season)]
    return np.column_stack([np.ones_like(t), t, *dummies])


def seasonal_forecast(
    metric: str,
    values: Sequence[float],
    last_day: date,
    *,
    horizon: int = 14,
    season: int = 7,
    non_negative: bool = True,
) -> list[ForecastPoint]:
    """Forecast the `horizon` days after `last_day` from daily `values` ending on it (pure).

    Trend and weekday effects are fitted together (ordinary least squares), so a weekend dip
    at the end of each week does not tilt the trend.
    """
    y = np.asarray(values, dtype=float)
    n = len(y)
    if n < 2 * season:
        raise ValueError(f"need at least {2 * season} days of history, got {n}")
    x = _design(np.arange(n, dtype=float), season)
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    dof = max(n - x.shape[1], 1)
    sigma = float(np.sqrt(((y - x @ beta) ** 2).sum() / dof))
    xtx_inv = np.linalg.pinv(x.T @ x)
    future = _design(np.arange(n, n + horizon, dtype=float), season)
    out = []
    for h, row in enumerate(future, start=1):
        yhat = float(row @ beta)
        half = Z_95 * sigma * float(np.sqrt(1 + row @ xtx_inv @ row))
        lower, upper = yhat - half, yhat + half
        if non_negative:
            yhat, lower, upper = max(yhat, 0.0), max(lower, 0.0), max(upper, 0.0)
        out.append(ForecastPoint(last_day + timedelta(days=h), metric, yhat, lower, upper))
    return out


def forecast_kpis(
    conn: Connection,
    *,
    last_day: date,
    metrics: Sequence[str] = FORECAST_METRICS,
    horizon: int = 14,
) -> list[ForecastPoint]:
    """Forecasts of each metric from its last 8 weeks in the rollup (metrics with too little
    history are left out)."""
    first = last_day - timedelta(days=HISTORY_DAYS - 1)
    series = daily_series(conn, names=metrics, first=first, last=last_day)
    out: list[ForecastPoint] = []
    for metric in metrics:
        days = series.get(metric, {})
        start = min(days, default=last_day)
        values = [
            days.get(start + timedelta(days=i), 0.0) for i in range((last_day - start).days + 1)
        ]
        if len(values) >= 14:
            out += seasonal_forecast(metric, values, last_day, horizon=horizon)
    return out
