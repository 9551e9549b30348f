"""Business KPIs for the alert engine: today's values as `business.<kpi>` metric points.

Written by the rollup job after each run (time = now), through the same metric writer as
`POST /api/monitoring/metrics`, so alert rules can watch e.g. `business.form_completion_rate`.
Early in the day the values rest on few events; rules should use a `duration_minutes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from monitoring_core.business.definitions import local_day
from monitoring_core.ingest.metrics import SeriesCache, validate_metrics, write_metrics
from monitoring_core.ingest.validate import Limits
from monitoring_core.partitions import ensure_partitions
from monitoring_core.schema import business_metrics_daily

__all__ = ["ALERTABLE_KPIS", "KPI_METRIC_PREFIX", "kpi_points", "write_kpi_points"]

ALERTABLE_KPIS = (
    "dau",
    "wau",
    "mau",
    "stickiness",
    "signups",
    "form_completion_rate",
    "journey_completion_rate",
    "revenue",
    "mrr",
    "paying_orgs",
    "churned_orgs",
    "payments_failed",
)
KPI_METRIC_PREFIX = "business."
KPI_SOURCE = "business_rollup"


def kpi_points(values: Mapping[str, float], now: datetime) -> list[dict[str, Any]]:
    """Today's KPI values as metric items (`business.<kpi>`), time = now (pure)."""
    return [
        {
            "metric_name": KPI_METRIC_PREFIX + name,
            "metric_value": values[name],
            "timestamp": now.isoformat(),
            "source_system": KPI_SOURCE,
        }
        for name in ALERTABLE_KPIS
        if name in values
    ]


def write_kpi_points(conn: Connection, *, now: datetime, tz: ZoneInfo) -> int:
    """Write today's KPIs so far as metric points: alert rules can watch e.g.
    `business.form_completion_rate`. Returns the points written."""
    t = business_metrics_daily
    today = local_day(now, tz)
    rows = conn.execute(select(t.c.metric_name, t.c.value).where(t.c.day == today))
    items = kpi_points({name: value for name, value in rows}, now)
    if not items:
        return 0
    ensure_partitions(conn, start=now, end=now, tables=("metric_points",))
    limits = Limits(oldest=now - timedelta(days=1), newest=now + timedelta(days=1))
    batch = validate_metrics(items, limits=limits, now=now)
    write_metrics(conn, batch, SeriesCache())
    return len(batch)
