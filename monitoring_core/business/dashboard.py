"""Everything the Business page shows, as plain rows: one entry point for the page and the API."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from monitoring_core.business.adoption import adoption_shares, feature_ramp, features_by_segment
from monitoring_core.business.anomalies import kpi_anomalies
from monitoring_core.business.definitions import day_bounds, local_day
from monitoring_core.business.early_warning import load_activity, rank_churn_risk
from monitoring_core.business.forecast import forecast_kpis
from monitoring_core.business.kpis import Period, complete_period, kpi_cards, mrr_movements, trends
from monitoring_core.business.retention import grid_rows, retention_grid

__all__ = [
    "TREND_METRICS",
    "business_dashboard",
    "churn_risk_rows",
    "complete_period",
    "movement_grain",
]

TREND_METRICS = ("dau", "wau", "mau", "signups", "revenue", "mrr", "form_completion_rate")


def movement_grain(period: Period) -> str:
    return "day" if period.days <= 14 else "week" if period.days <= 120 else "month"


def churn_risk_rows(conn: Connection, *, now: datetime, limit: int = 50) -> list[dict[str, Any]]:
    return [r.row() for r in rank_churn_risk(load_activity(conn, now=now), now, limit=limit)]


def business_dashboard(
    conn: Connection, *, period: Period, now: datetime, tz: ZoneInfo
) -> dict[str, Any]:
    """Every section of the Business page for the period (rollup first, raw slices for the rest)."""
    complete = complete_period(period, now, tz)
    start, end = day_bounds(period.first, period.last, tz)
    today = local_day(now, tz)
    return {
        "period": {"first": period.first, "last": period.last, "time_zone": tz.key},
        "complete_period": {"first": complete.first, "last": complete.last},
        "kpis": [asdict(k) for k in kpi_cards(conn, period=period, now=now, tz=tz)],
        "trends": trends(conn, names=TREND_METRICS, period=period),
        "mrr_movements": mrr_movements(conn, period=period, grain=movement_grain(period)),
        "feature_adoption": adoption_shares(conn, period=period, grain="week"),
        "feature_ramp": feature_ramp(conn, today=today),
        "features_by_segment": features_by_segment(conn, start=start, end=min(end, now)),
        "retention": grid_rows(retention_grid(conn, today=today, tz=tz)),
        "churn_risk": churn_risk_rows(conn, now=now),
        "anomalies": [f.row() for f in kpi_anomalies(conn, period=complete)],
        "forecasts": [p.row() for p in forecast_kpis(conn, last_day=complete.last)],
    }
