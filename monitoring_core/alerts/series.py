"""Series for the engine, read through helper B's `metrics_query` and helper D's
`error_count_series`; nothing here reads a rollup table itself.

A `SeriesReader` lives for one evaluation cycle and shares reads between rules:
- rules are grouped by (metric, aggregation, dims) where dims = group_by ∪ filter names, so
  a rule filtered to `{"k": "a"}` and one grouped by `k` use the same read (each group of
  the read is exactly one alert key of each rule: values stay exact);
- windows up to `RAW_MAX` are computed from raw points (`live_points`, one read per metric
  per cycle) in 10-second buckets: exact, and free of the rollups' 15–30 s lag — that is
  what lets a breach reach the webhook within seconds. A metric with more than `RAW_LIMIT`
  raw points in that span falls back to the rollups;
- longer windows read 1-minute rollups (`query_metric`) with the newest minutes replaced by
  raw buckets; anomaly rules read hourly rollups stamped with the hour's start, so the
  current hour lines up with the same hour of past weeks.
A bucket's point is stamped with its end (the current, partial bucket with `now`).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection

from monitoring_core.alerts.engine import Point
from monitoring_core.alerts.rules import Rule
from monitoring_core.errors.queries import error_count_series
from monitoring_core.metrics_query import live_points, query_metric
from monitoring_core.rollup_read import floor_to
from monitoring_core.timerange import TimeRange

__all__ = [
    "RAW_MAX",
    "RAW_STEP",
    "RAW_TAIL",
    "FetchKey",
    "Grouped",
    "Keyed",
    "SeriesReader",
    "alert_key",
    "fetch",
    "fetch_key",
    "for_rule",
    "lookback",
]

MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)
RAW_STEP = timedelta(seconds=10)
RAW_MAX = timedelta(minutes=20)  # windows up to this long are read from raw points
RAW_TAIL = timedelta(minutes=2)  # longer windows: rollups, with this tail from raw points
RAW_LIMIT = 100_000


@dataclass(frozen=True)
class FetchKey:
    kind: str  # minute|hour|pattern
    metric: str
    aggregation: str
    dims: tuple[str, ...]
    filters: str = "{}"  # JSON; only pattern reads filter in SQL


# dims values -> points, oldest first
Grouped = dict[tuple[str, ...], list[Point]]
# alert key -> (dimensions, points)
Keyed = dict[str, tuple[dict[str, str], list[Point]]]


def alert_key(group_by: Sequence[str], values: Sequence[Any]) -> str:
    """`endpoint=/api/x,method=GET`; empty for a rule without group_by."""
    return ",".join(f"{name}={value}" for name, value in zip(group_by, values, strict=True))


def fetch_key(rule: Rule) -> FetchKey | None:
    cond = rule.condition
    if cond.type == "pattern":  # error events, filtered and counted by helper D's query
        filters = json.dumps(dict(cond.filters), sort_keys=True)
        return FetchKey("pattern", "error_events", "count", cond.group_by, filters)
    if cond.type == "composite" or not cond.metric:
        return None
    kind = "hour" if cond.type == "anomaly" else "minute"
    dims = tuple(sorted(set(cond.group_by) | set(cond.filters)))
    return FetchKey(kind, cond.metric, cond.aggregation, dims)


def lookback(rule: Rule) -> timedelta:
    cond = rule.condition
    if cond.type == "anomaly":
        return cond.weeks * timedelta(days=7) + 2 * HOUR
    # absence only asks "any point within the window?": window + 2 min answers it, and keeps
    # short heartbeat windows on the shared raw read
    return timedelta(minutes=cond.window_minutes) + 2 * MINUTE


def for_rule(rule: Rule, key: FetchKey, grouped: Grouped) -> Keyed:
    """The groups of a shared read that belong to this rule, by its alert keys."""
    cond = rule.condition
    if key.kind == "pattern":
        return {alert_key(cond.group_by, v): (dict(zip(cond.group_by, v, strict=True)), pts)
                for v, pts in grouped.items()}  # fmt: skip
    wanted = {key.dims.index(name): str(value) for name, value in cond.filters.items()}
    picks = [key.dims.index(name) for name in cond.group_by]
    out: Keyed = {}
    for values, points in grouped.items():
        if all(values[i] == v for i, v in wanted.items()):
            mine = [values[i] for i in picks]
            out[alert_key(cond.group_by, mine)] = (
                dict(zip(cond.group_by, mine, strict=True)),
                points,
            )
    return out


def _percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), for small lists."""
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _aggregate(aggregation: str, values: list[float]) -> float:
    """One bucket's value (buckets hold a few points: plain Python beats numpy here)."""
    if aggregation == "avg":
        return math.fsum(values) / len(values)
    if aggregation == "sum":
        return math.fsum(values)
    if aggregation == "count":
        return float(len(values))
    if aggregation == "min":
        return min(values)
    if aggregation == "max":
        return max(values)
    if aggregation == "last":
        return values[-1]
    return _percentile(values, int(aggregation[1:]) / 100)


def _py_times(column: pd.Series) -> list[datetime]:
    return list(pd.to_datetime(column, utc=True).dt.to_pydatetime())


@dataclass
class _Raw:
    times: list[datetime]
    values: list[float]
    dims: list[Mapping[str, Any]]
    complete: bool


@dataclass
class SeriesReader:
    """Shared reads for one evaluation cycle at `now`."""

    conn: Connection
    now: datetime
    raw_spans: dict[str, timedelta] = field(default_factory=dict)  # per metric; default RAW_MAX
    raw_cache: dict[str, _Raw] = field(default_factory=dict)

    def _raw(self, metric: str) -> _Raw:
        if metric not in self.raw_cache:
            since = floor_to(self.now - self.raw_spans.get(metric, RAW_MAX), MINUTE)
            # live_points keeps time > now - window: a hair more so the first minute is whole
            window = self.now - since + timedelta(microseconds=1)
            frame = live_points(self.conn, metric, window, now=self.now, limit=RAW_LIMIT)
            self.raw_cache[metric] = _Raw(_py_times(frame["time"]) if len(frame) else [],
                                          frame["value"].astype(float).tolist(),
                                          frame["dimensions"].tolist(), len(frame) < RAW_LIMIT)  # fmt: skip
        return self.raw_cache[metric]

    def _raw_buckets(self, key: FetchKey, since: datetime) -> dict[tuple, dict[datetime, float]]:
        raw = self._raw(key.metric)
        grouped: dict[tuple, dict[datetime, list[float]]] = defaultdict(lambda: defaultdict(list))
        for t, value, dims in zip(raw.times, raw.values, raw.dims, strict=True):
            if t >= since:
                values = tuple(str((dims or {}).get(d, "")) for d in key.dims)
                grouped[values][floor_to(t, RAW_STEP)].append(value)
        return {v: {b: _aggregate(key.aggregation, vs) for b, vs in buckets.items()}
                for v, buckets in grouped.items()}  # fmt: skip

    def _rollups(self, key: FetchKey, span: timedelta) -> dict[tuple, dict[datetime, float]]:
        frame = query_metric(self.conn, metric_name=key.metric, aggregation=key.aggregation,
                             interval="1h" if key.kind == "hour" else "1m",
                             tr=TimeRange(self.now - span, self.now), group_by=list(key.dims))  # fmt: skip
        out: dict[tuple, dict[datetime, float]] = defaultdict(dict)
        if not len(frame):
            return out
        groups = (
            zip(*(frame[d].astype(str).tolist() for d in key.dims), strict=True)
            if key.dims
            else iter(lambda: (), None)
        )
        for values, bucket, value in zip(
            groups, _py_times(frame["bucket"]), frame["value"].tolist(), strict=False
        ):
            if value == value:  # not NaN
                out[tuple(values)][bucket] = float(value)
        return out

    def _pattern(self, key: FetchKey, span: timedelta) -> Grouped:
        counts = error_count_series(self.conn, start=self.now - span,
                                    end=self.now + timedelta(microseconds=1),  # its end is exclusive
                                    filters=json.loads(key.filters), group_by=list(key.dims),
                                    interval=RAW_STEP)  # fmt: skip
        return {v: [Point(min(b, self.now), float(n)) for b, n in pts] for v, pts in counts.items()}

    def fetch(self, key: FetchKey, span: timedelta) -> Grouped:
        """Points per group of `key.dims` over [now − span, now]."""
        if key.kind == "pattern":
            return self._pattern(key, span)
        now = self.now

        def stamp(b: datetime, size: timedelta) -> datetime:
            return b if key.kind == "hour" else min(b + size, now)

        if key.kind == "minute" and span <= RAW_MAX and self._raw(key.metric).complete:
            raw = self._raw_buckets(key, floor_to(now - span, RAW_STEP))
            return {
                v: [Point(stamp(b, RAW_STEP), x) for b, x in sorted(bs.items())]
                for v, bs in raw.items()
            }
        points: dict[tuple, list[Point]] = defaultdict(list)
        raw_from = floor_to(now - RAW_TAIL, MINUTE)
        tail = self._raw_buckets(key, raw_from) if key.kind == "minute" else {}
        for values, buckets in self._rollups(key, span).items():
            kept = (
                buckets
                if key.kind == "hour"
                else {b: x for b, x in buckets.items() if b < raw_from}
            )
            step = HOUR if key.kind == "hour" else MINUTE
            points[values].extend(Point(stamp(b, step), x) for b, x in sorted(kept.items()))
        for values, buckets in tail.items():
            points[values].extend(Point(stamp(b, RAW_STEP), x) for b, x in sorted(buckets.items()))
        return {v: pts for v, pts in points.items() if pts}


def fetch(conn: Connection, key: FetchKey, *, span: timedelta, now: datetime) -> Grouped:
    """One read outside a cycle (the rule test against history uses it)."""
    return SeriesReader(conn, now).fetch(key, span)
