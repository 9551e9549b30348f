"""The foundation's own jobs: thin adapters from the worker to monitoring_core.

Imports happen inside the functions so that `python -m jobs.worker --list` stays fast and a
broken module only breaks its own job (the worker records the ImportError as a failed run).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

__all__ = ["partitions", "retention", "rollups"]


def rollups(engine: Engine, now: datetime) -> str:
    from monitoring_core.ingest.points import MetricPoint, store_points
    from monitoring_core.rollups import quarantine_count, run_rollups

    report = run_rollups(engine, now)
    with engine.begin() as conn:
        count = quarantine_count(conn)
        if count:  # a gauge an alert rule can watch; the Health page lists the ranges
            point = MetricPoint("rollup_quarantined_ranges", float(count), now, {}, "rollups")
            store_points(conn, [point])
    return report.summary()


def partitions(engine: Engine, now: datetime) -> str:
    from monitoring_core.retention import create_partitions_ahead

    with engine.begin() as conn:
        created = create_partitions_ahead(conn, now)
    return f"created {len(created)} partitions"


def retention(engine: Engine, now: datetime) -> str:
    from monitoring_core.retention import apply_retention

    with engine.begin() as conn:
        report = apply_retention(conn, now)
    return report.summary()
