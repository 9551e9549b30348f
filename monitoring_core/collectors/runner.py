"""Running collectors: a failing one is recorded (as `collector_up 0` and its error) and
skipped; it never raises into the worker."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, func, or_, select, update

from monitoring_core.collectors.base import Collector
from monitoring_core.collectors.scrape import ScrapeCollector
from monitoring_core.collectors.sql import SqlCollector
from monitoring_core.ingest.points import MetricPoint, store_points
from monitoring_core.schema import sql_collectors

__all__ = ["CollectorRun", "build_configured", "run_collector", "run_configured_collectors"]

log = logging.getLogger(__name__)


@dataclass
class CollectorRun:
    name: str
    ok: bool
    points: int
    duration_ms: float
    error: str | None = None

    def summary(self) -> str:
        state = "ok" if self.ok else f"failed: {self.error}"
        return f"{self.name}: {self.points} points in {self.duration_ms:.0f} ms, {state}"


def _self_points(run: CollectorRun, now: datetime) -> list[MetricPoint]:
    dims = {"collector": run.name}
    return [
        MetricPoint("collector_up", float(run.ok), now, dims, "collector"),
        MetricPoint("collector_duration_ms", run.duration_ms, now, dims, "collector"),
        MetricPoint("collector_points", float(run.points), now, dims, "collector"),
    ]


def run_collector(engine: Engine, collector: Collector, now: datetime) -> CollectorRun:
    """Collect and store; the collector's own health is stored beside its points."""
    start = time.perf_counter()
    points: list[MetricPoint] = []
    error = None
    try:
        points = collector.collect(now)
    except Exception as exc:  # noqa: BLE001 - a failing collector is data, not a crash
        log.warning("collector %s failed: %s", collector.name, exc)
        error = f"{type(exc).__name__}: {exc}"[:500]
    run = CollectorRun(
        collector.name, error is None, len(points), (time.perf_counter() - start) * 1000, error
    )
    with engine.begin() as conn:
        store_points(conn, [*points, *_self_points(run, now)])
    return run


def build_configured(row: dict, engine: Engine) -> Collector:
    """A collector from a `sql_collectors` row (kind `sql` or `prometheus_scrape`)."""
    if row["kind"] == "prometheus_scrape":
        return ScrapeCollector(
            name=row["name"], url=row["url"], interval_seconds=row["interval_seconds"]
        )
    return SqlCollector(
        name=row["name"],
        url=row["url"],
        query=row["query"] or "",
        metric_name=row["metric_name"],
        interval_seconds=row["interval_seconds"],
        self_engine=engine,
    )


@dataclass
class ConfiguredReport:
    runs: list[CollectorRun] = field(default_factory=list)

    def summary(self) -> str:
        failed = sum(not r.ok for r in self.runs)
        return f"{len(self.runs)} configured collectors ran, {failed} failed"


def run_configured_collectors(engine: Engine, now: datetime) -> ConfiguredReport:
    """Every enabled SQL / scrape collector whose interval has passed, each on its own."""
    c = sql_collectors.c
    interval = func.make_interval(0, 0, 0, 0, 0, 0, c.interval_seconds)
    due = (
        select(sql_collectors)
        .where(
            c.is_enabled,
            or_(c.last_run_at.is_(None), c.last_run_at <= now - interval),
        )
        .with_for_update(skip_locked=True)
    )
    with engine.begin() as conn:
        rows = [dict(r) for r in conn.execute(due).mappings()]
        if rows:
            ids = [r["id"] for r in rows]
            conn.execute(update(sql_collectors).where(c.id.in_(ids)).values(last_run_at=now))
    report = ConfiguredReport()
    for row in rows:
        run = run_collector(engine, build_configured(row, engine), now)
        report.runs.append(run)
        with engine.begin() as conn:
            conn.execute(
                update(sql_collectors).where(c.id == row["id"]).values(last_error=run.error)
            )
    return report
