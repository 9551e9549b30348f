"""Business intelligence's job: the daily KPI rollup (thin adapter)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

__all__ = ["business_rollup"]


def business_rollup(engine: Engine, now: datetime) -> str:
    """Recompute dirty business days, then hand today's KPIs to the alert engine as metrics."""
    from monitoring_core.business.daily import run_daily_rollup
    from monitoring_core.business.kpi_metrics import write_kpi_points
    from monitoring_core.config import load_settings
    from monitoring_core.live_settings import read_calendar

    tz = read_calendar(engine, load_settings())  # the live wedding calendar, once per run
    with engine.begin() as conn:
        days = run_daily_rollup(conn, now=now, tz=tz)
        points = write_kpi_points(conn, now=now, tz=tz)
    return f"rolled up {len(days)} business days, wrote {points} KPI points"
