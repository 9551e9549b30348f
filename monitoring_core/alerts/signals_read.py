"""Reading the windowed signals (API timings, Web Vitals, error events, p95 regression) for
the engine: one SQL statement per family per cycle, aggregated in numpy.

A cycle asks for every key of a family first (`want`), then the first `fetch` of that family
reads the raw rows of every interval asked for at once: per distinct label combination one
row with its events as `float8[]` arrays (epoch seconds, values), as `raw.read_raw` does for
metric points. Each key is then computed from those arrays:
- `stamps` are when the engine looks: live, the cycle's `now` (and `now − window` for rate of
  change, `now − k weeks` for anomaly); in a backtest, every step of the replay;
- at each stamp the value is the rule's aggregation over (stamp − window, stamp] of the
  group's events: exact percentiles (numpy's linear interpolation, as the raw metric path),
  request-weighted rates, counts (0 in an empty window: a count, not missing data);
- absence rules get one point per 10-second bucket holding events instead (when data last
  arrived), from the events of (now − window − 2 min, now] (a group fallen silent is still
  read, and found silent; the family's read may reach further for other rules).
The regression family asks `performance.queries.regression_flags` (the Performance page's
own rule) once per stamp; with many stamps (a backtest, a graph) the flags of every stamp at
once from the rollups read once (`performance.regression_steps`, the same ratios).
"""

# SQL here is assembled from this module's own constants; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection

from monitoring_core.alerts.engine import Point
from monitoring_core.alerts.signals import service_of, signal, status_class
from monitoring_core.alerts.signals_otel import (
    log_params,
    log_sql,
    otel_labels,
    otel_selector,
    span_sql,
)
from monitoring_core.chunks.timings import source_sql as timings_source
from monitoring_core.performance.queries import regression_flags
from monitoring_core.performance.regression_steps import regression_values

__all__ = ["SignalKey", "SignalReader", "merge_intervals"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WEEK, HOUR = timedelta(days=7), timedelta(hours=1)
ABSENCE_STEP = timedelta(seconds=10)
Grouped = dict[tuple[str, ...], list[Point]]

_RANGES = "unnest(%(los)s::timestamptz[], %(his)s::timestamptz[]) AS r(lo, hi)"
_IN_RANGES = "x.time > r.lo AND x.time <= r.hi AND x.time > %(earliest)s AND x.time <= %(latest)s"
_EP = "date_part('epoch', x.time)"
# API timings from rows and packs (older ones are packed: chunks/timings.py)
_API_TIMINGS = timings_source("%(earliest)s", "%(latest)s", closed="right")
_SQL = {
    "api": f"""
        SELECT x.method, x.endpoint, x.status_code, array_agg({_EP}), array_agg(x.response_time_ms)
        FROM {_API_TIMINGS} x JOIN {_RANGES} ON {_IN_RANGES}
        GROUP BY 1, 2, 3""",
    "vitals": f"""
        SELECT x.name, x.page_route, x.device_type, x.rating, array_agg({_EP}), array_agg(x.value)
        FROM web_vitals x JOIN {_RANGES} ON {_IN_RANGES}
        GROUP BY 1, 2, 3, 4""",
    "errors": f"""
        SELECT 'events', x.group_id::text, x.service_name, x.level, x.severity, x.error_type,
               coalesce(x.environment, ''), coalesce(x.release, ''), array_agg({_EP})
        FROM error_events x JOIN {_RANGES} ON {_IN_RANGES}
        GROUP BY 2, 3, 4, 5, 6, 7, 8
        UNION ALL
        SELECT x.kind, g.id::text, coalesce(g.services[1], ''), g.level, g.severity, g.error_type,
               '', '', array_agg({_EP})
        FROM error_group_changes x JOIN error_groups g ON g.id = x.group_id
        JOIN {_RANGES} ON {_IN_RANGES}
        WHERE x.kind IN ('new', 'regressed')
        GROUP BY 1, 2, 3, 4, 5, 6""",
}
_SQL["spans"] = span_sql(_RANGES, _IN_RANGES, _EP)
_ERROR_KINDS = {
    "errors.events": "events",
    "errors.new_groups": "new",
    "errors.regressions": "regressed",
}


@dataclass(frozen=True)
class SignalKey:
    """What one shared computation needs: the signal, how to aggregate, the labels it keeps,
    the window each value covers and how the stamps are chosen (rule type)."""

    signal: str
    aggregation: str
    dims: tuple[str, ...]
    window: timedelta
    mode: str  # threshold | rate_of_change | anomaly | absence
    weeks: int = 4
    min_count: int = 0  # a window with fewer events gives no value
    contains: str = ""  # logs.lines: the rule's body_contains filter (its own read)


@dataclass
class _Frame:
    """Events of one family: per label combination `labels[i]`, arrays of times and values."""

    labels: list[dict[str, str]] = field(default_factory=list)
    times: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)


def merge_intervals(spans: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Sorted, disjoint (lo, hi] intervals covering the given ones (no row is read twice)."""
    out: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


MAX_RANGES = 64


def _few(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Many disjoint intervals (a long backtest's windows, steps apart) as the one interval
    covering them: joining thousands of ranges against the rows took Postgres a minute for a
    90-day backtest; the values at each stamp are computed over its own window either way."""
    return [(spans[0][0], spans[-1][1])] if len(spans) > MAX_RANGES else spans


def _uncovered(
    wanted: list[tuple[datetime, datetime]], covered: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    """The parts of `wanted` outside `covered` (both sorted and disjoint)."""
    out = []
    for lo, hi in wanted:
        for c_lo, c_hi in covered:
            if c_hi <= lo or c_lo >= hi:
                continue
            if c_lo > lo:
                out.append((lo, c_lo))
            lo = max(lo, c_hi)
            if lo >= hi:
                break
        if lo < hi:
            out.append((lo, hi))
    return out


def _family(key: SignalKey) -> str:
    found = signal(key.signal)
    assert found is not None and found.windowed, key.signal
    return found.family


def _source(key: SignalKey) -> str:
    """What one read covers: the family, or for logs with a substring, that substring too."""
    family = _family(key)
    return f"logs\x1f{key.contains}" if family == "logs" and key.contains else family


@dataclass
class SignalReader:
    """The windowed signals of one cycle (`step=None`) or one backtest (`step` = its step)."""

    conn: Connection
    now: datetime
    step: timedelta | None = None
    start: datetime | None = None  # backtest: the first step
    wanted: dict[str, list[tuple[datetime, datetime]]] = field(default_factory=dict)
    frames: dict[str, _Frame] = field(default_factory=dict)
    read: dict[str, list[tuple[datetime, datetime]]] = field(default_factory=dict)
    sorted: dict[tuple[str, tuple[str, ...], int], dict[tuple[str, ...], tuple[Any, Any]]] = field(
        default_factory=dict
    )
    regressions: dict[tuple[datetime, int], list[tuple[dict[str, str], float]]] = field(
        default_factory=dict
    )
    computed: dict[SignalKey, Grouped] = field(default_factory=dict)

    # ---------------------------------------------------------------- stamps and intervals
    def stamps(self, key: SignalKey) -> list[datetime]:
        if self.step is None or self.start is None:
            base = [self.now]
            if key.mode == "rate_of_change":
                base = [self.now - key.window, self.now]
        else:
            count = int((self.now - self.start) / self.step) + 1
            base = [self.start + i * self.step for i in range(count)]
            if key.mode == "rate_of_change":
                base = sorted({*base, *(b - key.window for b in base)})
        if key.mode == "anomaly":
            base = sorted({b - k * WEEK for b in base for k in range(key.weeks + 1)})
        return base

    def _intervals(self, key: SignalKey) -> list[tuple[datetime, datetime]]:
        stamps = self.stamps(key)
        if key.mode == "anomaly" or (self.step is not None and len(stamps) > 2):
            # one interval per stamp, merged: a backtest's steps overlap into one range
            return merge_intervals((s - key.window, s) for s in stamps)
        return merge_intervals([(stamps[0] - key.window, stamps[-1])])

    def want(self, key: SignalKey) -> None:
        """Note a key before the first fetch, so its family is read once for all keys."""
        if _family(key) == "regression":
            return
        self.wanted.setdefault(_source(key), []).extend(self._intervals(key))

    # ---------------------------------------------------------------- reading
    def _read(self, source: str, spans: list[tuple[datetime, datetime]]) -> _Frame:
        frame = _Frame()
        if not spans:
            return frame
        family, _, contains = source.partition("\x1f")
        params = {
            "los": [lo for lo, _ in spans],
            "his": [hi for _, hi in spans],
            "earliest": spans[0][0],
            "latest": spans[-1][1],
            **(
                log_params(self.conn, contains, spans[0][0], spans[-1][1])
                if family == "logs"
                else {}
            ),
        }
        sql = log_sql(_RANGES, _IN_RANGES, _EP, contains) if family == "logs" else _SQL[family]
        driver = self.conn.connection.driver_connection
        assert driver is not None
        with driver.cursor(binary=True) as cursor:
            rows = cursor.execute(sql, params).fetchall()
        for row in rows:
            labels, ts, vs = (
                otel_labels(family, row, contains)
                if family in ("spans", "logs")
                else _labels(family, row)
            )
            frame.labels.append(labels)
            frame.times.append(np.asarray(ts, dtype=np.float64))
            frame.values.append(np.asarray(vs, dtype=np.float64))
        return frame

    def _frame(self, key: SignalKey) -> _Frame:
        """The family's events, read once for every announced key; a key asking for more
        (one nobody announced) reads only what is missing."""
        family = _source(key)
        if family not in self.frames:
            self.want(key)
            spans = _few(merge_intervals(self.wanted.get(family, [])))
            self.frames[family], self.read[family] = self._read(family, spans), spans
            return self.frames[family]
        missing = _uncovered(self._intervals(key), self.read[family])
        if missing:
            extra = self._read(family, missing)
            frame = self.frames[family]
            frame.labels += extra.labels
            frame.times += extra.times
            frame.values += extra.values
            self.read[family] = merge_intervals([*self.read[family], *missing])
        return self.frames[family]

    def fetch(self, key: SignalKey) -> Grouped:
        """Points per group of `key.dims`, oldest first (see the module docstring)."""
        if key not in self.computed:
            if _family(key) == "regression":
                self.computed[key] = self._regression(key)
            else:
                self.computed[key] = self._compute(key, self._frame(key))
        return self.computed[key]

    # ---------------------------------------------------------------- computing
    def _groups(self, key: SignalKey, frame: _Frame) -> dict[tuple[str, ...], tuple[Any, Any]]:
        """Per group of `key.dims`, the signal's (times, values) in time order; shared by
        every key of the same signal and dimensions (they differ in aggregation or window)."""
        cache_key = (key.signal + "\x1f" + key.contains, key.dims, len(frame.labels))
        if cache_key in self.sorted:
            return self.sorted[cache_key]
        selector = _selector(key.signal)
        parts: dict[tuple[str, ...], tuple[list[np.ndarray], list[np.ndarray]]] = {}
        for labels, ts, vs in zip(frame.labels, frame.times, frame.values, strict=True):
            values = selector(labels, vs)
            if values is not None:
                lists = parts.setdefault(tuple(labels.get(d, "") for d in key.dims), ([], []))
                lists[0].append(ts)
                lists[1].append(values)
        out: dict[tuple[str, ...], tuple[Any, Any]] = {}
        for group, (t_parts, v_parts) in parts.items():
            t, v = np.concatenate(t_parts), np.concatenate(v_parts)
            order = np.argsort(t, kind="stable")
            out[group] = (t[order], v[order])
        self.sorted[cache_key] = out
        return out

    def _compute(self, key: SignalKey, frame: _Frame) -> Grouped:
        stamps = self.stamps(key)
        at = np.array([(s - _EPOCH).total_seconds() for s in stamps])
        out: Grouped = {}
        for group, (t, v) in self._groups(key, frame).items():
            if key.mode == "absence":
                if self.step is None:  # its own read only, whatever other rules read
                    t = t[t > at[-1] - key.window.total_seconds()]
                points = _buckets(t, self.now)
            else:
                points = _windowed(t, v, stamps, at, key)
            if points:
                out[group] = points
        return out

    def _regression(self, key: SignalKey) -> Grouped:
        stamps = self.stamps(key)
        out: dict[tuple[str, ...], list[Point]] = {}
        if self.step is not None:  # a backtest's or a graph's stamps: every one at once
            return self._regressions(key, stamps)
        for stamp in stamps:
            for group, ratio in self._ratios(stamp, key).items():
                out.setdefault(group, []).append(Point(stamp, ratio))
        return out

    def _regressions(self, key: SignalKey, stamps: list[datetime]) -> Grouped:
        """`_ratios` at many stamps, from the API rollups read once (`group_ratios`)."""
        seconds = np.array([(s - _EPOCH).total_seconds() for s in stamps])
        out: Grouped = {}
        for group, ratio in group_ratios(self.conn, seconds, key.dims, key.weeks).items():
            values = ratio.tolist()
            points = [Point(s, x) for s, x in zip(stamps, values, strict=True) if x == x]
            if points:
                out[group] = points
        return out

    def _ratios(self, at: datetime, key: SignalKey) -> dict[tuple[str, ...], float]:
        out: dict[tuple[str, ...], float] = {}
        for labels, ratio in self._flags(at, key.weeks):
            group = tuple(labels.get(d, "") for d in key.dims)
            out[group] = max(out.get(group, 0.0), ratio)
        return out

    def _flags(self, at: datetime, weeks: int) -> list[tuple[dict[str, str], float]]:
        """The Performance page's regression rows at `at` (one query, shared by every key)."""
        if (at, weeks) not in self.regressions:
            frame = regression_flags(self.conn, at, weeks)
            rows = []
            for row in frame.itertuples(index=False):
                enough = row.requests_last_hour >= 20 and row.baseline_requests >= 20
                if enough and math.isfinite(float(row.ratio)):
                    endpoint = str(row.endpoint)
                    labels = {"method": str(row.method), "endpoint": endpoint}
                    rows.append(({**labels, "service": service_of(endpoint)}, float(row.ratio)))
            self.regressions[(at, weeks)] = rows
        return self.regressions[(at, weeks)]


def _labels(family: str, row: Sequence[Any]) -> tuple[dict[str, str], Any, Any]:
    if family == "api":
        method, endpoint, status, ts, vs = row
        labels = {
            "method": method,
            "endpoint": endpoint,
            "service": service_of(endpoint),
            "status_class": status_class(int(status)),
            "_status": str(status),
        }
        return labels, ts, vs
    if family == "vitals":
        name, page, device, rating, ts, vs = row
        return {"_name": name, "page_route": page, "device_type": device, "_rating": rating}, ts, vs
    kind, group_id, service, level, severity, error_type, env, release, ts = row
    labels = {
        "_kind": kind,
        "group_id": group_id,
        "service": service,
        "level": level,
        "severity": severity,
        "error_type": error_type,
        "environment": env,
        "release": release,
    }
    return labels, ts, np.ones(len(ts))


def _selector(name: str) -> Any:
    """(labels, values) -> the values this signal aggregates for those rows, or None."""
    if name == "api.error_rate":
        return lambda labels, vs: np.full(len(vs), float(int(labels["_status"]) >= 500))
    if name.startswith("api."):
        return lambda labels, vs: vs
    if name.startswith(("spans.", "logs.")):
        return otel_selector(name)
    if name.startswith("web_vitals."):
        parts = name.split(".")
        vital, poor = parts[1], parts[-1] == "poor_share"

        def vitals(labels: dict[str, str], vs: np.ndarray) -> np.ndarray | None:
            if labels["_name"] != vital:
                return None
            return np.full(len(vs), float(labels["_rating"] == "poor")) if poor else vs

        return vitals
    kind = _ERROR_KINDS[name]
    return lambda labels, vs: vs if labels["_kind"] == kind else None


def _aggregate(aggregation: str, values: np.ndarray) -> float:
    if aggregation == "count":
        return float(len(values))
    if aggregation == "sum":
        return float(values.sum())
    if aggregation == "avg":
        return float(values.mean())
    if aggregation == "min":
        return float(values.min())
    if aggregation == "max":
        return float(values.max())
    return float(np.percentile(values, int(aggregation[1:])))


def group_ratios(
    conn: Connection, seconds: np.ndarray, dims: Sequence[str], weeks: int
) -> dict[tuple[str, ...], np.ndarray]:
    """`SignalReader._ratios` at many stamps (epoch s): per group of `dims`, the largest of
    its endpoints' listed ratios (from 0.0; NaN where none is listed), from the API rollups
    read once (`performance.regression_steps`: the same flags, bit for bit)."""
    ends = np.ceil(seconds / 60.0) * 60.0  # a stamp in (E − 1 min, E] reads up to E
    grid, where = np.unique(ends, return_inverse=True)
    best: dict[tuple[str, ...], np.ndarray] = {}
    for (method, endpoint), ratio in regression_values(conn, grid, weeks).items():
        labels = {"method": method, "endpoint": endpoint, "service": service_of(endpoint)}
        group = tuple(labels.get(d, "") for d in dims)
        held = best.get(group)
        best[group] = ratio if held is None else np.fmax(held, ratio)
    return {g: np.where(np.isnan(v), np.nan, np.maximum(v, 0.0))[where] for g, v in best.items()}


def _windowed(
    t: np.ndarray, v: np.ndarray, stamps: list[datetime], at: np.ndarray, key: SignalKey
) -> list[Point]:
    """The aggregation over (stamp − window, stamp] at every stamp. An empty window gives no
    point (counts: 0); one with fewer than `min_count` events gives NaN, which the engine
    reads as "not enough to breach" rather than as missing data."""
    hi = np.searchsorted(t, at, side="right")
    lo = np.searchsorted(t, at - key.window.total_seconds(), side="right")
    n = hi - lo
    counting = key.aggregation == "count"
    if key.aggregation in ("count", "sum", "avg"):  # vectorised: cumulative sums
        total = np.concatenate(([0.0], np.cumsum(v)))
        sums = total[hi] - total[lo]
        values = n if counting else (sums if key.aggregation == "sum" else sums / np.maximum(n, 1))
        values = np.where(n < key.min_count, np.nan, values)
        keep = (n > 0) | counting
        return [
            Point(s, float(x))
            for s, x, k in zip(stamps, values.tolist(), keep.tolist(), strict=True)
            if k
        ]
    points = []
    for stamp, a, b in zip(stamps, lo.tolist(), hi.tolist(), strict=True):
        if b - a >= max(key.min_count, 1):
            points.append(Point(stamp, _aggregate(key.aggregation, v[a:b])))
        elif b > a:
            points.append(Point(stamp, math.nan))
    return points


def _buckets(t: np.ndarray, now: datetime) -> list[Point]:
    """One point per 10-second bucket with events, stamped with its end (at most `now`)."""
    width = ABSENCE_STEP.total_seconds()
    ends = np.unique(np.floor(t / width)) * width + width
    limit = (now - _EPOCH).total_seconds()
    return [Point(_EPOCH + timedelta(seconds=min(float(e), limit)), 1.0) for e in ends.tolist()]
