"""Where collected points go: a thin adapter onto the ingest COPY writer (no second writer)."""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from sqlalchemy import Connection

from monitoring_core.collectors.base import MetricPoint
from monitoring_core.ingest.metrics import MetricBatch, SeriesCache, SeriesKey, write_metrics

__all__ = ["points_to_batch", "store_points"]


def points_to_batch(points: Iterable[MetricPoint]) -> MetricBatch:
    """Points as the ingest writer's batch (series keyed by name + canonical dimensions)."""
    batch = MetricBatch([], [], [], {})
    for point in points:
        key = (point.name, orjson.dumps(dict(point.dimensions), option=orjson.OPT_SORT_KEYS))
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
