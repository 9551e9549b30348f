"""A metric point and its writer: what collectors, health checks, pushes and jobs store.

Every producer of metric points (collectors, health checks, Pushgateway pushes, incident
figures, the demo) builds `MetricPoint`s and hands them to `store_points`, a thin adapter onto
the one COPY writer in `ingest.metrics` (no second writer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection

from monitoring_core.ingest.metrics import (
    MetricBatch,
    SeriesCache,
    SeriesKey,
    dimensions_key,
    write_metrics,
)

__all__ = ["MetricPoint", "points_to_batch", "store_points"]


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One measurement on its way to `metric_series` + `metric_points`."""

    name: str
    value: float
    time: datetime
    dimensions: Mapping[str, str] = field(default_factory=dict)
    source_system: str | None = None


def points_to_batch(points: Iterable[MetricPoint]) -> MetricBatch:
    """Points as the ingest writer's batch (series keyed by name + canonical dimensions)."""
    batch = MetricBatch([], [], [], {})
    for point in points:
        key = (point.name, dimensions_key(point.dimensions))
        batch.keys.append(key)
        batch.times.append(point.time)
        batch.values.append(float(point.value))
        if key not in batch.sources:
            batch.sources[key] = point.source_system
    return batch


def store_points(
    conn: Connection, points: Iterable[MetricPoint], cache: SeriesCache | None = None
) -> dict[SeriesKey, int]:
    """COPY the points in the caller's transaction; returns new series ids to cache after commit."""
    batch = points_to_batch(points)
    if not batch.values:
        return {}
    return write_metrics(conn, batch, cache if cache is not None else SeriesCache())
