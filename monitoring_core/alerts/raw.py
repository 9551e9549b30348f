"""Raw metric points for one evaluation cycle, read through the one points reader, bucketed
in numpy.

The alert engine's short windows are computed from raw points (exact, and free of the
rollups' lag). Reading them point by point into Python objects costs about a microsecond a
point and a JSON decode per point for its series' dimensions; at 1,000 rules that was most
of a cycle. Here the metrics' series are looked up once (dimensions decoded once per series)
and their points come from `points_reader` (rows and compacted chunks, one statement per
distinct window start) as numpy arrays (epoch seconds, values); `bucket` then aggregates the
points of a group of series into fixed buckets with vectorised numpy (sort, `reduceat`, and
percentiles by linear interpolation between closest ranks, numpy's default method).

A metric with more than `limit` points in its span comes back as `None` (the caller falls back
to the rollups); the count is taken first (`points_reader.count_points`: rows from the
(series_id, time) index, chunks from their stored counts) before any value is read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

from monitoring_core.points_reader import count_points, read_points

__all__ = ["RawMetric", "bucket", "bucketed", "read_raw"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_SERIES = text(
    "SELECT id, name, dimensions::text, source_system = 'otlp' AS otlp FROM metric_series "
    "WHERE name = ANY(:names) ORDER BY id"
)
# OTLP histogram series keep their buckets in `metric_histograms`, not as raw points: a metric
# with such rows in its span comes back as None, so the caller reads the rollups (which fold
# them in, otlp/histograms.py) as it does past `limit`.
_HISTOGRAMS = text(
    "SELECT DISTINCT series_id FROM metric_histograms "
    "WHERE series_id = ANY(:ids) AND time > :since AND time <= :now"
)


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
    series: dict[str, list[tuple[int, str | None]]] = {}
    otlp: dict[int, str] = {}
    for sid, name, dims, from_otlp in conn.execute(_SERIES, {"names": names}):
        series.setdefault(name, []).append((int(sid), dims))
        if from_otlp:
            otlp[int(sid)] = name
    out: dict[str, RawMetric | None] = {name: RawMetric.empty() for name in names}
    if otlp:
        oldest = min(since[name] for name in set(otlp.values()))
        found = conn.execute(_HISTOGRAMS, {"ids": list(otlp), "since": oldest, "now": now})
        for (sid,) in found:
            out[otlp[sid]] = None
    by_start: dict[datetime, list[str]] = {}
    for name in names:
        if series.get(name) and out[name] is not None:
            by_start.setdefault(since[name], []).append(name)
    for start, group in by_start.items():
        ids = {name: [sid for sid, _ in series[name]] for name in group}
        counts = count_points(conn, [i for name in group for i in ids[name]], start, now)
        wanted = []
        for name in group:
            if sum(counts.get(i, 0) for i in ids[name]) > limit:
                out[name] = None
            else:
                wanted.append(name)
        points = read_points(conn, [i for name in wanted for i in ids[name]], start, now)
        for name in wanted:
            dims_list: list[Mapping[str, Any]] = []
            t_parts, v_parts, s_parts = [], [], []
            for sid, dims in series[name]:
                if sid not in points:
                    continue
                t, v = points[sid]
                s_parts.append(np.full(len(t), len(dims_list), dtype=np.int64))
                dims_list.append(json.loads(dims) if dims else {})
                t_parts.append(t)
                v_parts.append(v)
            if t_parts:
                out[name] = RawMetric(
                    dims_list,
                    np.concatenate(t_parts),
                    np.concatenate(v_parts),
                    np.concatenate(s_parts),
                )
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


def reduce_segments(
    aggregation: str, keys: np.ndarray, t: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Points grouped by `keys` (time `t`, value `v`), each segment ordered as its
    aggregation needs (values for percentiles, time for last, else as given) and reduced
    (`_reduce`): (segment keys, one value per segment)."""
    if aggregation.startswith("p"):
        order = np.lexsort((v, keys))
    elif aggregation == "last":
        order = np.lexsort((t, keys))
    else:
        order = np.argsort(keys, kind="stable")
    return _reduce(aggregation, keys[order], v[order])


def bucketed(
    raw: RawMetric,
    *,
    dims: tuple[str, ...],
    aggregation: str,
    since: datetime,
    step: timedelta,
) -> tuple[list[tuple[str, ...]], np.ndarray, np.ndarray, np.ndarray]:
    """`bucket` as arrays: (groups, starts, bucket numbers, values) where group `i`'s buckets
    are rows `starts[i]:starts[i + 1]`, oldest first (every group has one at least)."""
    none = np.empty(0, dtype=np.int64)
    if not len(raw.t):
        return [], np.zeros(1, dtype=np.int64), none, np.empty(0)
    origin, width = (since - _EPOCH).total_seconds(), step.total_seconds()
    keep = raw.t >= origin
    t, v, s = raw.t[keep], raw.v[keep], raw.s[keep]
    if not len(t):
        return [], np.zeros(1, dtype=np.int64), none, np.empty(0)
    group_of, names = _group_index(raw, dims)
    buckets = ((t - origin) // width).astype(np.int64)
    span = int(buckets.max()) + 1
    keys = group_of[s] * span + buckets
    seg_keys, values = reduce_segments(aggregation, keys, t, v)
    groups, bucket_no = np.divmod(seg_keys, span)
    starts = np.flatnonzero(np.concatenate(([True], groups[1:] != groups[:-1])))
    present = [names[int(g)] for g in groups[starts]]
    return present, np.append(starts, len(groups)), bucket_no, values


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
    names, starts, numbers, values = bucketed(
        raw, dims=dims, aggregation=aggregation, since=since, step=step
    )
    bounds, nums, xs = starts.tolist(), numbers.tolist(), values.tolist()
    return {
        name: (nums[bounds[i] : bounds[i + 1]], xs[bounds[i] : bounds[i + 1]])
        for i, name in enumerate(names)
    }
