"""Rules on a metric's raw window in a backtest, from the raw points and the 1-minute rollups
read once: rates of change of sums or counts (what each key's check gives at every step),
rates of change of counts, sums, averages and extremes exactly (`change_source`: each step's
two points, reduced as the cycle's read reduces them, bit for bit), and whether a key is in
a step's read (`raw_presence`). Any step's series of such a window, and a threshold's value
at every step: `backtest_window`.

`engine._rate_of_change` compares the newest point of the series at or before `now` with the
newest at or before `now − window`. For a metric the series is what the cycle reads
(`series.SeriesReader`, `backtest._live_series`):
- a window up to `series.RAW_MAX` with raw points in (since, now] (since: `now − window −
  2 min` floored to the minute): 10-second buckets (`raw.bucketed`: [s, s + 10 s), on
  multiples of 10 s) of those from the 10 s the window's reach starts in, each stamped with
  its end, the one holding `now` with `now`;
- the same window without a raw point of the metric there (gone after 14 days): the 1-minute
  rollups of [since, now), each minute stamped with its end (or `now`), as the backtest
  reads them where the cycle of then read raw points (`backtest._live_series`);
- a longer window: those rollups before the last whole minutes of `series.RAW_TAIL`, then
  the raw tail's buckets.
A sum or a count of a bucket is not bounded by its minute's extremes (as averages and
percentiles are: `backtest_quiet._change_bounds`), so here each step's two values are
computed: counts exactly, sums from running sums with their rounding allowed for (none for
whole numbers). A key is ABSENT without points in the step's read, NO_DATA when one of the
two points is missing or both are the same bucket, else FALSE, TRUE or UNSURE (near a
limit, or a previous value of 0 in percent). Steps whose read would hold more than
`series.RAW_LIMIT` raw points (the cycle then reads rollups) are UNSURE: the engine decides
them on the series it reads.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection

from monitoring_core.alerts import series as series_mod
from monitoring_core.alerts.backtest_kinds import PERCENTILES, minute_rows
from monitoring_core.alerts.backtest_quiet import (
    ABSENT,
    FALSE,
    NO_DATA,
    TRUE,
    UNSURE,
    Bounds,
    _cumulative_slack,
    _sides,
)
from monitoring_core.alerts.engine import Point
from monitoring_core.alerts.raw import RawMetric, _group_index, read_raw, reduce_segments
from monitoring_core.alerts.rules import Rule

__all__ = ["Presence", "change_source", "raw_presence", "sum_change_classes"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RAW_LIMIT = 2_000_000  # raw points read at once (as `backtest.RAW_LIMIT`); beyond: unsure
_STEP = series_mod.RAW_STEP.total_seconds()


def _floor(x: np.ndarray, width: float) -> np.ndarray:
    return np.floor(x / width) * width


class _Points:
    """One group's raw points (sorted times, values), with running sums."""

    def __init__(self, t: np.ndarray, v: np.ndarray) -> None:
        self.t, self.v = t, v
        self.total = np.concatenate(([0.0], np.cumsum(v)))
        self.slack = _cumulative_slack(v)

    def bucket(
        self, newest: np.ndarray, since: np.ndarray, agg: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per step, the count or sum of the 10-second bucket holding point `newest` (an
        index), from its start (or after `since`, the read's start) up to that point, and
        the bucket's start."""
        t = self.t
        at = np.maximum(newest, 0)
        start = _floor(t[at], _STEP) if len(t) else np.zeros(len(newest))
        first = np.maximum(np.searchsorted(t, start, "left"), np.searchsorted(t, since, "right"))
        end = at + 1
        if agg == "count":
            return (end - first).astype(np.float64), start
        return self.total[end] - self.total[first], start


class _Newest:
    """Per step, one of the two points a rate of change compares: whether there is one,
    its value, and which bucket or minute it is (raw buckets by start, minutes by start
    plus 1e9, so that the two never compare equal)."""

    def __init__(self, count: int) -> None:
        self.found = np.zeros(count, dtype=bool)
        self.value = np.full(count, np.nan)
        self.slot = np.full(count, np.nan)

    def minutes(self, m: np.ndarray, x: np.ndarray, index: np.ndarray, lo: np.ndarray) -> None:
        """The minute at `index` (the newest that may count), if it is at or after `lo`."""
        at = np.maximum(index, 0)
        ok = (index >= 0) & (m[at] >= lo) if len(m) else np.zeros(len(index), dtype=bool)
        if len(m):
            self.found, self.value = ok, np.where(ok, x[at], np.nan)
            self.slot = np.where(ok, m[at] + 1e9, np.nan)

    def raw(self, points: _Points, index: np.ndarray, after: np.ndarray, agg: str) -> None:
        """The raw point at `index` (the newest that may count), if it is after `after`:
        its bucket's value, over the minute's if both."""
        t = points.t
        if not len(t):
            return
        ok = (index >= 0) & (t[np.maximum(index, 0)] > after)
        value, start = points.bucket(index, after, agg)
        self.found |= ok
        self.value = np.where(ok, value, self.value)
        self.slot = np.where(ok, start, self.slot)


def _rows(
    conn: Connection, fk: series_mod.FetchKey, minutes: dict[tuple, Bounds], since: np.ndarray,
    at: np.ndarray, has_raw: np.ndarray,
) -> dict[tuple, tuple[np.ndarray, np.ndarray]] | None:  # fmt: skip
    """The minutes the steps without raw points read (`backtest_kinds.minute_rows`), from the
    first of those steps' reads to the last of them."""
    rollup = np.flatnonzero(~has_raw)
    if not len(rollup):
        return {}
    first, last = float(since[rollup].min()), float(at[rollup].max())
    return minute_rows(conn, fk, minutes, _EPOCH + timedelta(seconds=first),
                       _EPOCH + timedelta(seconds=last))  # fmt: skip


def _read_range(
    conn: Connection, rule: Rule, fk: series_mod.FetchKey, steps: list[datetime]
) -> tuple[np.ndarray, np.ndarray, RawMetric, np.ndarray, np.ndarray] | None:
    """The steps (epoch seconds, evenly spaced), each step's read start (its reach floored to
    the minute), and the metric's raw points of the whole range with their order by time and
    the times so sorted; None when there are too many to read at once, or OTLP histograms."""
    span = series_mod.lookback(rule).total_seconds()
    every = (steps[1] - steps[0]).total_seconds() if len(steps) > 1 else 60.0
    at = steps[0].timestamp() + every * np.arange(len(steps))
    first = steps[0] - timedelta(seconds=span + 120)
    raw = read_raw(conn, {fk.metric: first}, now=steps[-1], limit=RAW_LIMIT)[fk.metric]
    if raw is None:
        return None
    order = np.argsort(raw.t, kind="stable")
    return at, _floor(at - span, 60.0), raw, order, raw.t[order]


def sum_change_classes(
    conn: Connection, rule: Rule, fk: series_mod.FetchKey, minutes: dict[tuple, Bounds],
    steps: list[datetime], limits: list[float],
) -> dict[tuple, np.ndarray] | None:  # fmt: skip
    """Per group of `fk.dims`, per step: ABSENT, NO_DATA, FALSE, TRUE or UNSURE (see the
    module docstring); `minutes`: the groups' 1-minute rollups (`read_bounds`). None when
    the range's raw points are too many to read at once, or come from OTLP histograms."""
    cond = rule.condition
    read = _read_range(conn, rule, fk, steps)
    if read is None:
        return None
    at, since, raw, order, times = read  # since: the read's start, rollup minutes from it
    span = series_mod.lookback(rule).total_seconds()
    window = cond.window_minutes * 60.0
    if fk.long:  # the rollups before the raw tail's whole minutes, the tail's buckets after
        raw_from = _floor(at - series_mod.RAW_TAIL.total_seconds(), 60.0)
        minute_from = since
        raw_ok = np.ones(len(at), dtype=bool)  # a tail over the limit: the rollups alone
        unsure = np.zeros(len(at), dtype=bool)
    else:  # raw points when the metric has any in (since, at] (then only them), else rollups
        lo = np.searchsorted(times, since, "right")
        hi = np.searchsorted(times, at, "right")
        has_raw = hi > lo
        # the buckets start at the 10 s before the window (`SeriesReader.fetch`): points
        # from there on count, that one too (a microsecond below: after it)
        origin = _floor(at - span, _STEP) - 1e-7
        raw_from = np.where(has_raw, origin, np.inf)
        minute_from = np.where(has_raw, np.inf, since)
        raw_ok = hi - lo <= series_mod.RAW_LIMIT
        unsure = has_raw & ~raw_ok  # the cycle then reads the rollups its own way
    raw_from = np.where(raw_ok, raw_from, np.inf)
    group_of, names = _group_index(raw, fk.dims)
    point_group = group_of[raw.s[order]] if len(order) else np.zeros(0, dtype=np.int64)
    values = raw.v[order]
    per_group = {name: _Points(times[point_group == g], values[point_group == g])
                 for g, name in enumerate(names)}  # fmt: skip
    empty = _Points(np.zeros(0), np.zeros(0))
    edge = _floor(at - window, _STEP)  # a bucket ending by at − window starts before this
    out = {}
    for name in set(per_group) | set(minutes):
        points = per_group.get(name, empty)
        rollups = minutes.get(name)
        m = rollups.m if rollups is not None else np.zeros(0)
        x = np.zeros(0)
        if rollups is not None:
            x = rollups.n if cond.aggregation == "count" else rollups.total
        t = points.t
        current, previous = _Newest(len(at)), _Newest(len(at))
        current.minutes(m, x, np.searchsorted(m, np.minimum(at, raw_from), "left") - 1,
                        minute_from)  # fmt: skip
        current.raw(points, np.searchsorted(t, at, "right") - 1, raw_from, cond.aggregation)
        previous.minutes(m, x, np.searchsorted(m, at - window - 60.0, "right") - 1, minute_from)
        previous.raw(points, np.searchsorted(t, edge, "left") - 1, raw_from, cond.aggregation)
        both = current.found & previous.found & (current.slot != previous.slot)
        slack = 2 * points.slack
        with np.errstate(invalid="ignore", divide="ignore"):
            cur, prev = current.value, previous.value
            if cond.change_mode == "percent":
                known = both & (prev > 0)
                change = 100.0 * (cur - prev) / np.abs(prev)
                spread = 100.0 * slack / np.abs(prev) + 1e-9 * np.abs(change)
            else:
                known = both.copy()
                change = cur - prev
                spread = slack + 1e-9 * np.abs(change)
        clear, breach = _sides(rule, change + spread, change - spread, limits)
        found = np.where(known & clear, FALSE, np.where(known & breach, TRUE, UNSURE))
        found = np.where(both, found, NO_DATA)
        found = np.where(unsure, UNSURE, found)
        out[name] = np.where(current.found | unsure, found, ABSENT).astype(np.int8)
    return out


Presence = dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]]


def raw_presence(
    conn: Connection, rule: Rule, fk: series_mod.FetchKey, minutes: dict[tuple, Bounds],
    steps: list[datetime],
) -> Presence | None:  # fmt: skip
    """For a threshold or absence rule with a window up to `series.RAW_MAX`: per group of
    `fk.dims`, per step, whether the group is in the read the replay gives the engine
    (`backtest._live_series`: 10-second buckets of the raw points from the 10 s the reach
    starts in, or where the metric has no raw point in (since, now], the 1-minute rollups
    of [since, now)), whether its newest point's stamp is inside the window, and that stamp
    (epoch seconds; the bucket's end or `now`, the minute's end or `now`). Exact where the
    minutes' bounds are not: a check every few minutes leaves windows without a whole minute
    of data. None for a longer window, or raw points too many to read at once."""
    if fk.long:
        return None
    cond = rule.condition
    read = _read_range(conn, rule, fk, steps)
    if read is None:
        return None
    at, since, raw, order, times = read
    span = series_mod.lookback(rule).total_seconds()
    window = cond.window_minutes * 60.0
    lo = np.searchsorted(times, since, "right")
    hi = np.searchsorted(times, at, "right")
    if int((hi - lo).max(initial=0)) > series_mod.RAW_LIMIT:
        return None  # the cycle would read rollups its own way
    has_raw = hi > lo
    origin = _floor(at - span, _STEP)  # buckets from here (`SeriesReader.fetch`)
    group_of, names = _group_index(raw, fk.dims)
    point_group = group_of[raw.s[order]] if len(order) else np.zeros(0, dtype=np.int64)
    out: Presence = {}
    for name in set(names) | set(minutes):
        mine = times[point_group == names.index(name)] if name in names else np.zeros(0)
        last = np.searchsorted(mine, at, "right") - 1
        t_last = mine[np.maximum(last, 0)] if len(mine) else np.full(len(at), -np.inf)
        raw_seen = (last >= 0) & (t_last > since) & (t_last >= origin)
        raw_stamp = np.minimum(_floor(t_last, _STEP) + _STEP, at)
        m = minutes[name].m if name in minutes else np.zeros(0)
        newest = np.searchsorted(m, at, "left") - 1  # minutes before `at`
        b_last = m[np.maximum(newest, 0)] if len(m) else np.full(len(at), -np.inf)
        minute_seen = (newest >= 0) & (b_last >= since)
        minute_stamp = np.minimum(b_last + 60.0, at)
        present = np.where(has_raw, raw_seen, minute_seen)
        stamp = np.where(has_raw, raw_stamp, minute_stamp)
        stamp = np.where(present, stamp, np.nan)
        with np.errstate(invalid="ignore"):
            out[name] = (present, present & (stamp > at - window), stamp)
    return out


# ---------------------------------------------------------------- every step exactly
_EXACT = {"count": None, "sum": np.add, "avg": np.add, "min": np.minimum, "max": np.maximum}
# … and percentiles: reduced as `raw.reduce_segments` reduces a bucket's points (`_runs`)
_EXACT_TOO = PERCENTILES


def _runs(agg: str, t: np.ndarray, v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per step, the points [lo, hi) reduced as `raw.reduce_segments` reduces one bucket's
    (the same points in the same order, one segment per step); NaN where none."""
    out = np.full(len(lo), np.nan)
    some = np.flatnonzero(hi > lo)
    if not len(some):
        return out
    sizes = (hi - lo)[some]
    offsets = np.cumsum(sizes) - sizes
    index = np.arange(int(sizes.sum())) - np.repeat(offsets, sizes) + np.repeat(lo[some], sizes)
    _keys, out[some] = reduce_segments(agg, np.repeat(some, sizes), t[index], v[index])
    return out


def _segments(ufunc: np.ufunc, v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per step, `ufunc` over v[lo:hi] as `raw.bucketed` reduces a bucket (`ufunc.reduceat`
    over the same values in the same order: the same float, bit for bit); NaN where empty."""
    if not len(v):
        return np.full(len(lo), np.nan)
    hi = np.maximum(hi, lo)
    # each segment starts at or before the one before (steps backwards when their windows
    # move on, as they do: no sort)
    order: Any = slice(None, None, -1)
    if not bool(np.all(lo[1:] >= lo[:-1])):
        order = np.argsort(-lo, kind="stable")
    # ends: what lies between them is one value, not a run (reduceat's odd rows, unused)
    index = np.empty(2 * len(lo), dtype=np.intp)
    index[0::2], index[1::2] = lo[order], hi[order]
    out = np.empty(len(lo))
    out[order] = ufunc.reduceat(np.append(v, 0.0), index)[0::2]
    return np.where(hi > lo, out, np.nan)


class _Exact:
    """One group's raw points as a cycle's read orders them (by series, then time; within a
    10-second bucket that is time order, else None), reduced per bucket as `raw.bucketed`."""

    def __init__(self, t: np.ndarray, v: np.ndarray, agg: str) -> None:
        self.t, self.v, self.agg = t, v, agg

    @staticmethod
    def of(t: np.ndarray, v: np.ndarray, agg: str) -> _Exact | None:
        order = np.argsort(np.floor(t / _STEP), kind="stable")  # by bucket, then as read
        t, v = t[order], v[order]
        if len(t) and bool(np.any(t[1:] < t[:-1])):
            return None  # a bucket's points out of time order: its part up to `now` is not
            # a run of them
        return _Exact(t, v, agg)

    def bucket(self, newest: np.ndarray, since: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per step, the value of the 10-second bucket holding point `newest` (an index), from
        its start (or after `since`) up to that point, and the bucket's start."""
        t = self.t
        at = np.maximum(newest, 0)
        start = _floor(t[at], _STEP) if len(t) else np.zeros(len(newest))
        first = np.maximum(np.searchsorted(t, start, "left"), np.searchsorted(t, since, "right"))
        end = at + 1
        count = (end - first).astype(np.float64)
        if self.agg not in _EXACT:  # a percentile
            return _runs(self.agg, t, self.v, first, end), start
        ufunc = _EXACT[self.agg]
        if ufunc is None:
            return count, start
        value = _segments(ufunc, self.v, first, end)
        return (value / count if self.agg == "avg" else value), start


class _Point:
    """Per step, one of the two points a rate of change compares: found, value, stamp."""

    def __init__(self, count: int) -> None:
        self.found = np.zeros(count, dtype=bool)
        self.value = np.full(count, np.nan)
        self.stamp = np.full(count, np.nan)


def change_source(
    conn: Connection, rule: Rule, fk: series_mod.FetchKey, minutes: dict[tuple, Bounds],
    steps: list[datetime], limits: list[float],
) -> tuple[Any, dict[str, np.ndarray], dict[str, np.ndarray]] | None:  # fmt: skip
    """A rate of change of a metric's count, sum, average, extremes or percentile over a
    window up to `series.RAW_MAX`, at every step exactly: per group of `fk.dims` the two points
    `engine._rate_of_change` takes from the read the replay gives the engine (10-second
    buckets of raw points, or the 1-minute rollups where the metric has no raw point in the
    read: the module docstring), each bucket reduced as `raw.bucketed` reduces it and each
    minute as the rollups give it (a percentile's from the minutes' histograms:
    `backtest_kinds.minute_rows`). Returns (per step the series of two points, per alert key
    the change's class and value, bit for bit the engine's). None for last values or
    a longer window, raw points too many to read at once, or a step whose read is over
    `series.RAW_LIMIT` (the cycle reads those its own way)."""
    cond = rule.condition
    agg = cond.aggregation
    if fk.long or (agg not in _EXACT and agg not in _EXACT_TOO):
        return None
    read = _read_range(conn, rule, fk, steps)
    if read is None:
        return None
    at, since, raw, _order, times = read
    span = series_mod.lookback(rule).total_seconds()
    window = cond.window_minutes * 60.0
    lo = np.searchsorted(times, since, "right")
    hi = np.searchsorted(times, at, "right")
    if int((hi - lo).max(initial=0)) > series_mod.RAW_LIMIT:
        return None
    has_raw = hi > lo
    origin = _floor(at - span, _STEP) - 1e-7  # buckets from the 10 s the reach starts in
    raw_from = np.where(has_raw, origin, np.inf)
    minute_from = np.where(has_raw, np.inf, since)
    group_of, names = _group_index(raw, fk.dims)
    point_group = group_of[raw.s] if len(raw.s) else np.zeros(0, dtype=np.int64)
    groups = {}
    for g, name in enumerate(names):
        mine = point_group == g
        found = _Exact.of(raw.t[mine], raw.v[mine], agg)
        if found is None:
            return None
        groups[name] = found
    rows = _rows(conn, fk, minutes, since, at, has_raw)
    if rows is None:
        return None  # last values: their minutes are not read here
    edge = _floor(at - window, _STEP)  # a bucket ending by at − window starts before this
    none = _Exact(np.zeros(0), np.zeros(0), agg)
    per_group: dict[tuple, tuple[_Point, _Point]] = {}
    for name in set(groups) | set(rows):
        points = groups.get(name, none)
        current, previous = _Point(len(at)), _Point(len(at))
        if name in rows:  # the minutes the replay's rollups give (`_from_bounds`)
            m, x = rows[name]
            for point, index in (
                (current, np.searchsorted(m, np.minimum(at, raw_from)) - 1),
                (previous, np.searchsorted(m, at - window - 60.0, "right") - 1),
            ):
                if not len(m):
                    continue
                k = np.maximum(index, 0)
                ok = (index >= 0) & (m[k] >= minute_from)
                point.found, point.value = ok, np.where(ok, x[k], np.nan)
                point.stamp = np.where(ok, np.minimum(m[k] + 60.0, at), np.nan)
        t = points.t
        if len(t):
            for point, index in (
                (current, np.searchsorted(t, at, "right") - 1),
                (previous, np.searchsorted(t, edge, "left") - 1),
            ):
                ok = (index >= 0) & (t[np.maximum(index, 0)] > raw_from)
                value, start = points.bucket(index, raw_from)
                point.found |= ok
                point.value = np.where(ok, value, point.value)
                point.stamp = np.where(ok, np.minimum(start + _STEP, at), point.stamp)
        per_group[name] = (current, previous)
    return _change_series(rule, fk, per_group, steps, limits)


def _change_series(
    rule: Rule, fk: series_mod.FetchKey, per_group: dict[tuple, tuple[_Point, _Point]],
    steps: list[datetime], limits: list[float],
) -> tuple[Any, dict[str, np.ndarray], dict[str, np.ndarray]]:  # fmt: skip
    """`change_source`'s answer from each group's two points per step: the change as
    `engine._rate_of_change` computes it, its class for every limit the calendar can make
    (unsure only where they disagree), and a series of those two points for the engine."""
    cond = rule.condition
    moved: Any = per_group  # points in place of series: for_rule only moves them
    keyed: Any = series_mod.for_rule(rule, fk, moved)
    classes, values = {}, {}
    for key, (_dims, (current, previous)) in keyed.items():
        both = current.found & previous.found & (current.stamp != previous.stamp)
        with np.errstate(invalid="ignore", divide="ignore"):
            change = current.value - previous.value
            if cond.change_mode == "percent":
                flat = np.where(change == 0, 0.0, np.copysign(np.inf, change))
                change = np.where(previous.value == 0, flat, 100 * change / np.abs(previous.value))
        change = np.where(both, change, np.nan)
        clear, breach = _sides(rule, change, change, limits, exact=True)
        found = np.where(clear, FALSE, np.where(breach, TRUE, UNSURE))
        found = np.where(both, found, NO_DATA)
        classes[key] = np.where(current.found, found, ABSENT).astype(np.int8)
        values[key] = change
    first = steps[0]
    every = steps[1] - steps[0] if len(steps) > 1 else timedelta(minutes=1)

    def pick(at: datetime, only: Collection[str] | None = None) -> series_mod.Keyed:
        """The engine's two points at `at`, per key (a key without a current point absent)."""
        i = (at - first) // every
        out: series_mod.Keyed = {}
        for key in keyed if only is None else only:
            dims, (current, previous) = keyed[key]
            if not current.found[i]:
                continue
            points = [_point(current, i)]
            if previous.found[i] and previous.stamp[i] != current.stamp[i]:
                points.insert(0, _point(previous, i))
            out[key] = (dims, points)
        return out

    return pick, classes, values


def _point(side: _Point, i: int) -> Point:
    return Point(_EPOCH + timedelta(seconds=float(side.stamp[i])), float(side.value[i]))
