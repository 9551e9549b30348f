"""Prometheus staleness markers: kept from remote write, applied by PromQL's instant selectors.

When a target stops exposing a series (or the target goes away), Prometheus appends one
sample whose value is the NaN with the bit pattern `0x7ff0000000000002` — a *staleness marker*
— and remote-writes it like any sample. In Prometheus an instant selector then finds nothing
for that series at or after the marker (until a new sample comes), instead of the last value
for the 5-minute lookback; range selectors skip the markers.

The metric store holds finite values only, so a marker is a row of `metric_stale_markers`
(series id, instant) instead of a point. Markers of series this store has never seen are
dropped (nothing to end). Per series, markers older than `KEEP` are deleted when a new one
for the series arrives (raw points are not kept longer than that either; a series deleted by
retention takes its markers with it).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import orjson
from sqlalchemy import Connection, text

from monitoring_core.ingest.metrics import SeriesCache, SeriesKey

__all__ = ["KEEP", "STALE_NAN_BITS", "is_stale_marker", "read_markers", "store_markers"]

STALE_NAN_BITS = 0x7FF0000000000002
KEEP = timedelta(days=35)

_FIND = text(
    """
    SELECT i.ord, s.id FROM metric_series s
    JOIN ROWS FROM (jsonb_to_recordset(CAST(:keys AS jsonb)) AS (name text, dimensions jsonb))
        WITH ORDINALITY AS i(name, dimensions, ord)
      ON s.name = i.name AND s.dimensions = i.dimensions
    """
)
_INSERT = text(
    """
    INSERT INTO metric_stale_markers (series_id, time)
    SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:times AS timestamptz[]))
    ON CONFLICT DO NOTHING
    """
)
_PRUNE = text(
    "DELETE FROM metric_stale_markers WHERE series_id = ANY(CAST(:ids AS bigint[])) "
    "AND time < :cutoff"
)
_READ = text(
    """
    SELECT series_id, array_agg((extract(epoch FROM time) * 1000)::int8 ORDER BY time)
    FROM metric_stale_markers
    WHERE series_id = ANY(CAST(:ids AS bigint[])) AND time >= :start AND time <= :end
    GROUP BY series_id
    """
)


def is_stale_marker(values: np.ndarray) -> np.ndarray:
    """Which of these float64 values are Prometheus' staleness marker (bit for bit)."""
    return np.ascontiguousarray(values, dtype=np.float64).view(np.uint64) == np.uint64(
        STALE_NAN_BITS
    )


def _series_ids(
    conn: Connection, keys: list[SeriesKey], cache: SeriesCache
) -> dict[SeriesKey, int]:
    ids = {key: cached for key in keys if (cached := cache.get(key)) is not None}
    missing = [key for key in keys if key not in ids]
    if missing:
        document = b",".join(
            b'{"name":' + orjson.dumps(name) + b',"dimensions":' + dims + b"}"
            for name, dims in missing
        )
        rows = conn.execute(_FIND, {"keys": (b"[" + document + b"]").decode()})
        ids.update({missing[row.ord - 1]: int(row.id) for row in rows})
    return ids


def store_markers(
    conn: Connection,
    keys: Sequence[SeriesKey],
    times: Sequence[datetime],
    cache: SeriesCache,
    *,
    now: datetime,
) -> int:
    """Record markers (key i at times[i]) of known series; returns how many series had one."""
    if not keys:
        return 0
    ids = _series_ids(conn, list(dict.fromkeys(keys)), cache)
    pairs = sorted(
        {(ids[key], moment) for key, moment in zip(keys, times, strict=True) if key in ids}
    )
    if not pairs:
        return 0
    conn.execute(_INSERT, {"ids": [p[0] for p in pairs], "times": [p[1] for p in pairs]})
    series = sorted({p[0] for p in pairs})
    conn.execute(_PRUNE, {"ids": series, "cutoff": now - KEEP})
    return len(series)


def read_markers(
    conn: Connection, series_ids: Sequence[int], start: datetime, end: datetime
) -> dict[int, np.ndarray]:
    """Per series id: its markers' instants in [start, end], int64 ms ascending."""
    if not series_ids:
        return {}
    rows = conn.execute(_READ, {"ids": list(series_ids), "start": start, "end": end})
    return {int(sid): np.asarray(stamps, dtype=np.int64) for sid, stamps in rows}
