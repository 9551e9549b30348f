"""Series for the engine, read through `metrics_query` (helper B's rollup readers).

One fetch serves every rule that shares metric, aggregation, group_by and filters, so a cycle
over 1,000 rules runs a few dozen queries. Per-minute values come from the 1-minute rollups,
except the newest minutes: rollups lag ingest by the worker's safety lag (~15–30 s), so the
minutes since `RAW_WINDOW` ago are recomputed from raw points (`live_points`) in 10-second
buckets — that is what lets a breach reach the webhook within seconds, and what keeps a
1-minute window sliding to within 10 s. A point is stamped with the end of its bucket (the
current, partial bucket with `now`); the engine takes the buckets ending inside its window. Anomaly rules read hourly values stamped
with the hour's start, so the current hour lines up with the same hour of past weeks.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection

from monitoring_core.alerts.engine import Point
from monitoring_core.alerts.rules import Rule
from monitoring_core.errors.queries import error_count_series
from monitoring_core.metrics_query import live_points, query_metric
from monitoring_core.rollup_read import floor_to
from monitoring_core.timerange import TimeRange

__all__ = ["RAW_WINDOW", "FetchKey", "Keyed", "alert_key", "fetch", "fetch_key", "lookback"]

MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)
RAW_WINDOW = timedelta(minutes=2)
RAW_STEP = timedelta(seconds=10)
RAW_LIMIT = 50_000


@dataclass(frozen=True)
class FetchKey:
    kind: str  # minute|hour
    metric: str
    aggregation: str
    group_by: tuple[str, ...]
    filters: str  # JSON, sorted keys


# alert key -> (dimensions, points oldest first)
Keyed = dict[str, tuple[dict[str, str], list[Point]]]


def alert_key(group_by: Sequence[str], values: Sequence[Any]) -> str:
    """`endpoint=/api/x,method=GET`; empty for a rule without group_by."""
    return ",".join(f"{name}={value}" for name, value in zip(group_by, values, strict=True))


def fetch_key(rule: Rule) -> FetchKey | None:
    cond = rule.condition
    filters = json.dumps(dict(cond.filters), sort_keys=True)
    if cond.type == "pattern":  # error events matching the filter, counted by helper D's query
        return FetchKey("pattern", "error_events", "count", cond.group_by, filters)
    if cond.type == "composite" or not cond.metric:
        return None
    kind = "hour" if cond.type == "anomaly" else "minute"
    return FetchKey(kind, cond.metric, cond.aggregation, cond.group_by, filters)


def lookback(rule: Rule) -> timedelta:
    cond = rule.condition
    if cond.type == "anomaly":
        return cond.weeks * timedelta(days=7) + 2 * HOUR
    if cond.type == "absence":
        return max(timedelta(minutes=cond.window_minutes) * 3, timedelta(hours=1))
    return timedelta(minutes=cond.window_minutes) + 2 * MINUTE


def _rollup_values(
    conn: Connection, key: FetchKey, start: datetime, now: datetime
) -> dict[tuple, dict[datetime, float]]:
    frame = query_metric(
        conn,
        metric_name=key.metric,
        aggregation=key.aggregation,
        interval="1h" if key.kind == "hour" else "1m",
        tr=TimeRange(start, now),
        group_by=list(key.group_by),
        filters=json.loads(key.filters),
    )
    out: dict[tuple, dict[datetime, float]] = defaultdict(dict)
    for row in frame.itertuples(index=False):
        values = tuple(getattr(row, g) for g in key.group_by) if key.group_by else ()
        if row.value is not None and not math.isnan(row.value):
            out[values][
                row.bucket.to_pydatetime() if hasattr(row.bucket, "to_pydatetime") else row.bucket
            ] = float(row.value)
    return out


def _aggregate(aggregation: str, values: list[float]) -> float:
    if aggregation == "avg":
        return float(np.mean(values))
    if aggregation in ("sum",):
        return float(np.sum(values))
    if aggregation == "count":
        return float(len(values))
    if aggregation in ("min", "max"):
        return float(getattr(np, aggregation)(values))
    if aggregation == "last":
        return values[-1]
    return float(np.percentile(values, int(aggregation[1:])))


def _raw_values(
    conn: Connection, key: FetchKey, since: datetime, now: datetime
) -> dict[tuple, dict[datetime, float]]:
    # live_points keeps time > now - window: a hair more so the minute's first point counts
    window = now - since + timedelta(microseconds=1)
    frame = live_points(conn, key.metric, window, now=now, limit=RAW_LIMIT)
    wanted = json.loads(key.filters)
    grouped: dict[tuple, dict[datetime, list[float]]] = defaultdict(lambda: defaultdict(list))
    for t, value, dims in zip(frame["time"], frame["value"], frame["dimensions"], strict=True):
        dims = dims or {}
        if any(str(dims.get(k)) != str(v) for k, v in wanted.items()):
            continue
        values = tuple(str(dims.get(g, "")) for g in key.group_by)
        grouped[values][
            floor_to(t.to_pydatetime() if hasattr(t, "to_pydatetime") else t, MINUTE)
        ].append(float(value))
    return {
        values: {minute: _aggregate(key.aggregation, vs) for minute, vs in minutes.items()}
        for values, minutes in grouped.items()
    }


def _pattern(conn: Connection, key: FetchKey, span: timedelta, now: datetime) -> Keyed:
    """Error-event counts in 10-second buckets (stamped at their end, capped at now)."""
    counts = error_count_series(
        conn,
        start=now - span,
        end=now + timedelta(microseconds=1),  # its end is exclusive; ours inclusive
        filters=json.loads(key.filters),
        group_by=list(key.group_by),
        interval=RAW_STEP,
    )
    return {
        alert_key(key.group_by, values): (
            dict(zip(key.group_by, values, strict=True)),
            [Point(min(b, now), float(n)) for b, n in buckets],
        )
        for values, buckets in counts.items()
    }


def fetch(conn: Connection, key: FetchKey, *, span: timedelta, now: datetime) -> Keyed:
    """Per alert key: its dimensions and points over [now − span, now]."""
    if key.kind == "pattern":
        return _pattern(conn, key, span, now)
    step = HOUR if key.kind == "hour" else MINUTE
    stamp = (lambda b, size: b) if key.kind == "hour" else (lambda b, size: min(b + size, now))
    points: dict[tuple, list[Point]] = defaultdict(list)
    raw_from = floor_to(now - RAW_WINDOW, MINUTE)  # whole minutes only: raw is complete there
    raw = _raw_values(conn, key, raw_from, now) if key.kind == "minute" else {}
    for values, buckets in _rollup_values(conn, key, now - span, now).items():
        # minutes from raw_from on come from raw points, which hold everything rollups hold
        kept = buckets if key.kind == "hour" else {b: v for b, v in buckets.items() if b < raw_from}
        points[values].extend(Point(stamp(b, step), v) for b, v in sorted(kept.items()))
    for values, buckets in raw.items():
        points[values].extend(Point(stamp(b, RAW_STEP), v) for b, v in sorted(buckets.items()))
    return {
        alert_key(key.group_by, values): (
            dict(zip(key.group_by, map(str, values), strict=True)),
            pts,
        )
        for values, pts in points.items()
        if pts
    }
