"""Raw metric points for one evaluation cycle: one SQL read for every metric, bucketed in numpy.

The alert engine's short windows are computed from raw points (exact, and free of the
rollups' lag). Reading them point by point into Python objects costs about a microsecond a
point and a JSON decode per point for its series' dimensions; at 1,000 rules that was most
of a cycle. Here one statement returns, per series, its dimensions once and its points as two
`float8[]` arrays (epoch seconds, values); `bucket` then aggregates the points of a group of
series into fixed buckets with vectorised numpy (sort, `reduceat`, and percentiles by linear
interpolation between closest ranks, numpy's default method).

A metric with more than `limit` points in its span comes back as `None` (the caller falls back
to the rollups); the count is taken in the same statement from the (series_id, time) index
before any value is read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection

__all__ = ["RawMetric", "bucket", "read_raw"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Every value is a bound parameter; the text is constant. psycopg placeholders: it runs on the
# driver's cursor in binary mode (float8[] arrive as C doubles rather than decimal text).
_SQL = """
WITH w AS (
    SELECT * FROM unnest(%(names)s::text[], %(sinces)s::timestamptz[]) AS w(name, since)
), sel AS MATERIALIZED (
    SELECT s.id, s.name, s.dimensions, w.since FROM w JOIN metric_series s ON s.name = w.name
), n AS MATERIALIZED (
    SELECT sel.name, count(*) AS n FROM sel JOIN metric_points p ON p.series_id = sel.id
    WHERE p.time > sel.since AND p.time > %(earliest)s AND p.time <= %(now)s GROUP BY sel.name
)
SELECT sel.name, n.n, sel.dimensions::text, x.ts, x.vs
FROM sel JOIN n ON n.name = sel.name
LEFT JOIN LATERAL (
    SELECT array_agg(date_part('epoch', p.time)) AS ts, array_agg(p.value) AS vs
    FROM metric_points p
    WHERE p.series_id = sel.id AND p.time > sel.since AND p.time > %(earliest)s
      AND p.time <= %(now)s
) x ON n.n <= %(limit)s
"""


@dataclass(frozen=True)
class RawMetric:
    """The points of one metric: `t` (epoch s), `v`, `s` (index into `dims`), time order
    in no particular order."""

    dims: Sequence[Mapping[str, Any]]
    t: np.ndarray
    v: np.ndarray
    s: np.ndarray

    @classmethod
    def empty(cls) -> RawMetric:
        none = np.empty(0)
        return cls([], none, none, np.empty(0, dtype=np.int64))


def read_raw(
    conn: Connection, since: Mapping[str, datetime], *, now: datetime, limit: int
) -> dict[str, RawMetric | None]:
    """Points in (since[name], now] for every metric named; None for one over `limit`."""
    if not since:
        return {}
    names = list(since)
    params = {
        "names": names,
        "sinces": [since[n] for n in names],
        "earliest": min(since.values()),  # lets the planner prune day partitions
        "now": now,
        "limit": limit,
    }
    parts: dict[str, tuple[list, list, list, list]] = {}
    over: set[str] = set()
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor(binary=True) as cursor:
        rows = cursor.execute(_SQL, params).fetchall()
    for name, count, dims, ts, vs in rows:
        if count > limit:
            over.add(name)
            continue
        if ts is None:
            continue
        dims_list, t_parts, v_parts, s_parts = parts.setdefault(name, ([], [], [], []))
        s_parts.append(np.full(len(ts), len(dims_list), dtype=np.int64))
        dims_list.append(json.loads(dims) if dims else {})
        t_parts.append(np.asarray(ts, dtype=np.float64))
        v_parts.append(np.asarray(vs, dtype=np.float64))
    out: dict[str, RawMetric | None] = {name: RawMetric.empty() for name in names}
    for name, (dims_list, t_parts, v_parts, s_parts) in parts.items():
        out[name] = RawMetric(
            dims_list, np.concatenate(t_parts), np.concatenate(v_parts), np.concatenate(s_parts)
        )
    for name in over:
        out[name] = None
    return out


def _group_index(raw: RawMetric, dims: tuple[str, ...]) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Per series, the index of its group (its values of `dims`, missing as '')."""
    groups: dict[tuple[str, ...], int] = {}
    index = [
        groups.setdefault(tuple(str(d.get(name, "")) for name in dims), len(groups))
        for d in raw.dims
    ]
    return np.asarray(index, dtype=np.int64), list(groups)


def _reduce(
    aggregation: str, keys: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(segment keys, one value per segment) for points sorted by key."""
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    counts = np.diff(np.append(starts, len(keys)))
    if aggregation == "count":
        out = counts.astype(np.float64)
    elif aggregation == "sum":
        out = np.add.reduceat(values, starts)
    elif aggregation == "avg":
        out = np.add.reduceat(values, starts) / counts
    elif aggregation == "min":
        out = np.minimum.reduceat(values, starts)
    elif aggregation == "max":
        out = np.maximum.reduceat(values, starts)
    elif aggregation == "last":
        out = values[starts + counts - 1]
    else:  # pNN: values are sorted within each segment
        rank = int(aggregation[1:]) / 100 * (counts - 1)
        low = np.floor(rank).astype(np.int64)
        high = np.minimum(low + 1, counts - 1)
        lo_v, hi_v = values[starts + low], values[starts + high]
        out = lo_v + (hi_v - lo_v) * (rank - low)
    return keys[starts], out


def bucket(
    raw: RawMetric,
    *,
    dims: tuple[str, ...],
    aggregation: str,
    since: datetime,
    step: timedelta,
) -> dict[tuple[str, ...], tuple[list[int], list[float]]]:
    """Per group of `dims`: bucket numbers (from `since`, in `step`s) and their values,
    oldest first. Points before `since` are left out."""
    if not len(raw.t):
        return {}
    origin, width = (since - _EPOCH).total_seconds(), step.total_seconds()
    keep = raw.t >= origin
    t, v, s = raw.t[keep], raw.v[keep], raw.s[keep]
    if not len(t):
        return {}
    group_of, names = _group_index(raw, dims)
    buckets = ((t - origin) // width).astype(np.int64)
    span = int(buckets.max()) + 1
    keys = group_of[s] * span + buckets
    if aggregation.startswith("p"):
        order = np.lexsort((v, keys))
    elif aggregation == "last":
        order = np.lexsort((t, keys))
    else:
        order = np.argsort(keys, kind="stable")
    seg_keys, values = _reduce(aggregation, keys[order], v[order])
    groups, bucket_no = np.divmod(seg_keys, span)
    bounds = np.flatnonzero(np.diff(groups)) + 1
    out = {}
    for g_part, b_part, v_part in zip(
        np.split(groups, bounds), np.split(bucket_no, bounds), np.split(values, bounds), strict=True
    ):
        out[names[int(g_part[0])]] = (b_part.tolist(), v_part.tolist())
    return out
