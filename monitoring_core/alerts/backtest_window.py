"""A metric's window at any step of a backtest, from the raw points and 1-minute rollups read
once (`backtest_change._read_range`): the series the replay gives the engine at any step
(`window_source`, for the replay key by key), and a threshold's check at every step
(`threshold_source`).

The series is what the cycle reads (`backtest._live_series`, `series.SeriesReader.fetch`),
for a window up to `series.RAW_MAX`:
- where the metric has raw points in (since, now] (since: the reach floored to the minute):
  the 10-second buckets of those (`raw.bucketed`: [s, s + 10 s), numbered from a multiple
  of 10 s) from the 10 s the reach starts in, each stamped with its end, the one holding
  `now` with `now` (its points up to `now`);
- else (raw points are kept 14 days, rollups 90): the 1-minute rollups of [since, now),
  each stamped with its end (or `now`), as `query_metric` gives them (sums, counts,
  averages and extremes from the rollup rows already read, a percentile from the minutes'
  histograms read once: `backtest_kinds.minute_rows`).

`engine._threshold` reduces the points of (now − window, now]: `math.fsum` for sums and
counts, that over their number for averages, min, max, else (percentiles, last) the worst.
Here that is, per key and step, a run of whole buckets (or minutes) and the bucket holding
`now`, reduced in numpy over all steps at once (`backtest_change._segments`): extremes,
counts, percentiles and last values exactly; sums and averages to within their rounding (a
class is unsure only that close to a limit; the engine's value, `math.fsum` over the same
values, is computed where a decision takes it: `Classes.value_at`). Unsure as well: a
window holding a value that is not finite, and a step whose first bucket starts exactly at
`since` with a point there (the read leaves that point out; the engine decides on the
series built for it).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection

from monitoring_core.alerts import series as series_mod
from monitoring_core.alerts.backtest_change import (
    _EPOCH,
    _STEP,
    _floor,
    _read_range,
    _rows,
    _runs,
    _segments,
)
from monitoring_core.alerts.backtest_kinds import Classes, Source, compact
from monitoring_core.alerts.backtest_quiet import (
    ABSENT,
    FALSE,
    NO_DATA,
    TRUE,
    UNSURE,
    Bounds,
    _sides,
)
from monitoring_core.alerts.engine import Point
from monitoring_core.alerts.raw import _group_index, reduce_segments
from monitoring_core.alerts.rules import Rule
from monitoring_core.alerts.signals import is_windowed

__all__ = ["threshold_source", "window_source"]


class _Buckets:
    """One group's raw points (time order) and its whole 10-second buckets reduced as
    `raw.bucketed` reduces them (numbered from `origin`, a multiple of 10 s)."""

    def __init__(self, t: np.ndarray, v: np.ndarray, agg: str, origin: float) -> None:
        self.t, self.v, self.agg, self.origin = t, v, agg, origin
        number = ((t - origin) // _STEP).astype(np.int64)
        self.number, self.keys, self.values = number, *_reduced(agg, number, t, v)

    def at(self, first: int, since: float, now: float) -> list[tuple[float, float]]:
        """(stamp, value) of the buckets from number `first` up to `now`: the whole ones as
        reduced, the one holding `now` from its points up to `now`; a point at `since` (the
        read's start, where bucket `first` may start) left out, as the read leaves it."""
        current = int((now - self.origin) // _STEP)
        lo, hi = np.searchsorted(self.keys, [first, current])
        stamps = self.origin + (self.keys[lo:hi] + 1) * _STEP
        out = list(zip(stamps.tolist(), self.values[lo:hi].tolist(), strict=True))
        if out and self.origin + first * _STEP == since and self.keys[lo] == first:
            a = int(np.searchsorted(self.t, since, "right"))
            if self.t[a - 1 : a].tolist() == [since]:  # that point: the bucket without it
                head = self._reduce(a, int(np.searchsorted(self.number, first + 1)))
                out[:1] = [(out[0][0], head)] if head is not None else []
        found = self._reduce(
            int(np.searchsorted(self.number, current)), int(np.searchsorted(self.t, now, "right"))
        )
        if found is not None:
            out.append((now, found))
        return out

    def _reduce(self, a: int, b: int) -> float | None:
        """The value of points [a, b) (one bucket's) as reduced, None for none."""
        if b <= a:
            return None
        _keys, value = _reduced(self.agg, self.number[a:b], self.t[a:b], self.v[a:b])
        return float(value[0])


def _reduced(
    agg: str, number: np.ndarray, t: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`raw.bucketed`'s reduction of each bucket (none for no points)."""
    if not len(number):
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return reduce_segments(agg, number, t, v)


class _Read:
    """The range's read for one rule: per step its time (`at`), its read's start (`since`),
    whether the metric has raw points in it, and per group its buckets and minutes."""

    def __init__(
        self, rule: Rule, fk: series_mod.FetchKey, steps: list[datetime], at: np.ndarray,
        since: np.ndarray, has_raw: np.ndarray, buckets: dict[tuple, _Buckets],
        minute_rows: dict[tuple, tuple[np.ndarray, np.ndarray]], origin: float,
    ) -> None:  # fmt: skip
        self.rule, self.fk, self.at, self.since, self.has_raw = rule, fk, at, since, has_raw
        self.buckets, self.minute_rows, self.origin = buckets, minute_rows, origin
        self.span = series_mod.lookback(rule).total_seconds()
        self.first = steps[0]
        self.every = steps[1] - steps[0] if len(steps) > 1 else timedelta(minutes=1)
        moved: Any = {g: g for g in set(buckets) | set(minute_rows)}
        keyed: Any = series_mod.for_rule(rule, fk, moved)  # groups in place of points
        self.group_of_key: dict[str, tuple] = {key: g for key, (_dims, g) in keyed.items()}
        self.dims_of = {key: d for key, (d, _g) in keyed.items()}
        self._raw, self._since = has_raw.tolist(), since.tolist()

    def pick(self, at: datetime, only: Collection[str] | None = None) -> series_mod.Keyed:
        """The series of each key (of `only`) at step `at`; a key without a point absent."""
        i = (at - self.first) // self.every
        a = float(self.at[i])
        out: series_mod.Keyed = {}
        for key in self.group_of_key if only is None else only:
            g = self.group_of_key.get(key)
            if g is None:
                continue
            if self._raw[i]:
                found = self.buckets.get(g)
                start = int((_floor(np.array([a - self.span]), _STEP)[0] - self.origin) // _STEP)
                pairs = found.at(start, self._since[i], a) if found is not None else []
            else:
                m, x = self.minute_rows.get(g, (np.zeros(0), np.zeros(0)))
                lo_m, hi_m = np.searchsorted(m, [self._since[i], a])
                pairs = [(min(s + 60.0, a), v)
                         for s, v in zip(m[lo_m:hi_m].tolist(), x[lo_m:hi_m].tolist(),
                                         strict=True)]  # fmt: skip
            if pairs:
                out[key] = (self.dims_of[key], [Point(_EPOCH + timedelta(seconds=s), v)
                                                for s, v in pairs])  # fmt: skip
        return out


def _window_read(
    conn: Connection, rule: Rule, fk: series_mod.FetchKey, minutes: dict[tuple, Bounds],
    steps: list[datetime],
) -> _Read | None:  # fmt: skip
    """The range's raw points read once and bucketed per group, and the groups' minutes (as
    the rule's aggregation gives them). None for a longer window, raw points too many to
    read at once, a step whose read is over `series.RAW_LIMIT` (the cycle reads those its
    own way), or rollups needed of an aggregation their bounds lack."""
    if fk.long:
        return None
    read = _read_range(conn, rule, fk, steps)
    if read is None:
        return None
    at, since, raw, order, times = read
    span = series_mod.lookback(rule).total_seconds()
    lo = np.searchsorted(times, since, "right")
    hi = np.searchsorted(times, at, "right")
    if int((hi - lo).max(initial=0)) > series_mod.RAW_LIMIT:
        return None
    has_raw = hi > lo
    agg = fk.aggregation
    rows = _rows(conn, fk, minutes, since, at, has_raw)
    if rows is None:
        return None  # last values: their minutes are not read here
    origin = float(_floor(at[:1] - span - 120.0, _STEP)[0])
    group_of, names = _group_index(raw, fk.dims)
    point_group = group_of[raw.s[order]] if len(order) else np.zeros(0, dtype=np.int64)
    values = raw.v[order]
    buckets = {name: _Buckets(times[point_group == g], values[point_group == g], agg, origin)
               for g, name in enumerate(names)}  # fmt: skip
    return _Read(rule, fk, steps, at, since, has_raw, buckets, rows, origin)


def window_source(
    conn: Connection, rule: Rule, fk: series_mod.FetchKey, minutes: dict[tuple, Bounds],
    steps: list[datetime],
) -> Any:  # fmt: skip
    """For a rule on a metric with a window up to `series.RAW_MAX`: per step (any step, in
    any order) the series the replay gives the engine (`backtest._live_series`, the module
    docstring), built for the keys asked; None where `_window_read` is."""
    read = _window_read(conn, rule, fk, minutes, steps)
    return None if read is None else read.pick


# ---------------------------------------------------------------- a threshold at every step
_ADD = ("sum", "count", "avg")


class _Window:
    """One group's window at every step: the values in it as runs of one array per regime
    (raw buckets, then the bucket holding `now`; or minutes), their reduction, and what is
    needed to reduce them again exactly (`exact`)."""

    def __init__(self, read: _Read, group: tuple) -> None:
        # a threshold's window is its reach (`series.lookback`): every bucket or minute of
        # a step's series is in it (the first bucket's end is past `now − window`, the
        # first minute's too)
        at, agg, count = read.at, read.fk.aggregation, len(read.at)
        self.agg, self.raw_regime = agg, read.has_raw
        ufunc = np.add if agg in _ADD else np.minimum if agg == "min" else np.maximum
        self.n = np.zeros(count, dtype=np.int64)
        self.present = np.zeros(count, dtype=bool)
        self.value, size = np.full(count, np.nan), np.zeros(count)
        self.unsure = np.zeros(count, dtype=bool)
        # steps reading raw points: whole buckets [lo, hi) of `keys`, then the one holding
        # `now` (`part`, its value reduced from its points up to `now`)
        found = read.buckets.get(group)
        self.b_values = found.values if found is not None else np.zeros(0)
        self.b_lo, self.b_hi = np.zeros(count, dtype=np.int64), np.zeros(count, dtype=np.int64)
        self.part, self.part_value = np.zeros(count, dtype=bool), np.full(count, np.nan)
        self.head = np.full(count, np.nan)  # see below
        r = np.flatnonzero(read.has_raw)
        if found is not None and len(found.t) and len(r):
            keys, t, at_r = found.keys, found.t, at[r]
            current = np.floor_divide(at_r - read.origin, _STEP).astype(np.int64)
            start = np.floor_divide(_floor(at_r - read.span, _STEP) - read.origin, _STEP)
            start = start.astype(np.int64)
            lo = np.searchsorted(keys, start, "left")
            hi = np.maximum(np.searchsorted(keys, current, "left"), lo)
            a = np.searchsorted(found.number, current, "left")
            b = np.maximum(np.searchsorted(t, at_r, "right"), a)
            part = b > a
            part_value = _runs(agg, t, found.v, a, b)
            # the first bucket starting at `since` with a point there: the read leaves that
            # point out (`_Buckets.at`), so that bucket is reduced from its other points
            # (`head`, NaN: none) in place of its whole value
            head = np.full(len(r), np.nan)
            there = np.flatnonzero((read.origin + start * _STEP == read.since[r]) & (hi > lo))
            since = read.since[r[there]]
            after = np.searchsorted(t, since, "right")
            on = (after > 0) & (t[np.maximum(after - 1, 0)] == since)
            there, after = there[on], after[on]
            if len(there):
                end = np.searchsorted(found.number, start[there] + 1, "left")
                head[there] = _runs(agg, t, found.v, after, end)
                lo[there] += 1
            self.head[r] = head
            self.b_lo[r], self.b_hi[r], self.part[r], self.part_value[r] = lo, hi, part, part_value
            heads = ~np.isnan(head)
            self.n[r] = hi - lo + part + heads
            self.present[r] = self.n[r] > 0
            run, magnitude, bad = _run(ufunc, self.b_values, lo, hi)
            with np.errstate(invalid="ignore"):
                run = _join(ufunc, head, run)
                self.value[r] = _join(ufunc, run, np.where(part, part_value, np.nan))
            size[r] = (
                magnitude + np.abs(np.nan_to_num(head)) + np.where(part, np.abs(part_value), 0)
            )
            self.unsure[r] = bad | (part & ~np.isfinite(part_value))
        # steps reading rollups: minutes [lo, hi) of the group's rows
        m, x = read.minute_rows.get(group, (np.zeros(0), np.zeros(0)))
        self.m_values = x
        self.m_lo, self.m_hi = np.zeros(count, dtype=np.int64), np.zeros(count, dtype=np.int64)
        q = np.flatnonzero(~read.has_raw)
        if len(m) and len(q):
            lo, hi = np.searchsorted(m, read.since[q], "left"), np.searchsorted(m, at[q], "left")
            hi = np.maximum(hi, lo)
            self.m_lo[q], self.m_hi[q] = lo, hi
            self.n[q] = hi - lo
            self.present[q] = hi > lo
            self.value[q], size[q], self.unsure[q] = _run(ufunc, x, lo, hi)
        with np.errstate(invalid="ignore", divide="ignore"):
            if agg == "avg":
                self.value, size = self.value / self.n, size / self.n
            self.unsure |= (self.n > 0) & ~np.isfinite(self.value)
        # sums and averages: numpy's running order against fsum's exact rounding
        self.spread = 1e-12 * size if agg in ("sum", "avg") else None


class _Fsum:
    """What `engine._reduce` needs to sum a window of sums or averages exactly at any step,
    kept compact (`backtest_kinds.compact`: ~40 bytes a step)."""

    def __init__(self, w: _Window) -> None:
        raw = w.raw_regime
        self.avg = w.agg == "avg"
        self.value, self.n = compact(w.value, "d"), compact(w.n, "i")
        self.raw, self.head = compact(raw, "b"), compact(w.head, "d")
        self.part, self.part_value = compact(w.part, "b"), compact(w.part_value, "d")
        # a step's run: of the buckets (reading raw points) or of the minutes
        self.lo = compact(np.where(raw, w.b_lo, w.m_lo), "i")
        self.hi = compact(np.where(raw, w.b_hi, w.m_hi), "i")
        self.buckets, self.minutes = compact(w.b_values, "d"), compact(w.m_values, "d")

    def __call__(self, i: int) -> float:
        """The engine's value at step `i` (`engine._reduce` over the same values)."""
        if self.n[i] <= 2:
            return self.value[i]  # one addition (or none) rounds as fsum does
        if self.raw[i]:
            values = self.buckets[self.lo[i] : self.hi[i]]
            head = self.head[i]
            if head == head:
                values.append(head)
            if self.part[i]:
                values.append(self.part_value[i])
        else:
            values = self.minutes[self.lo[i] : self.hi[i]]
        total = math.fsum(values)
        return total / len(values) if self.avg else total


def _run(
    ufunc: np.ufunc, v: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per step, `ufunc` over v[lo:hi] (NaN where empty), the sum of their magnitudes (for
    sums), and whether one is not finite."""
    reduced = _segments(ufunc, v, lo, hi)
    magnitude = np.zeros(len(lo))
    if ufunc is np.add:
        magnitude = np.nan_to_num(_segments(np.add, np.abs(v), lo, hi), nan=0.0)
    bad = np.zeros(len(lo), dtype=bool)
    if not np.isfinite(v).all():
        ill = np.concatenate(([0], np.cumsum(~np.isfinite(v))))
        bad = ill[hi] > ill[lo]
    return reduced, magnitude, bad


def _join(ufunc: np.ufunc, run: np.ndarray, last: np.ndarray) -> np.ndarray:
    """A run's reduction and one more value (NaN: none), as a left-to-right reduction."""
    if ufunc is np.add:
        both = run + last
    else:
        both = ufunc(run, last)
    return np.where(np.isnan(run), last, np.where(np.isnan(last), run, both))


def threshold_source(
    conn: Connection, rule: Rule, fk: series_mod.FetchKey, minutes: dict[tuple, Bounds],
    steps: list[datetime], limits: list[float],
) -> Source | None:  # fmt: skip
    """A threshold on a metric's window up to `series.RAW_MAX`: per alert key and step what
    its check gives (the module docstring) and the value it compares, with the series for
    any step (`window_source`). None for another rule, or where `_window_read` is."""
    cond = rule.condition
    if cond.type != "threshold" or is_windowed(cond.metric):
        return None
    read = _window_read(conn, rule, fk, minutes, steps)
    if read is None:
        return None
    exact_agg = fk.aggregation not in ("sum", "avg")
    codes: dict[str, np.ndarray] = {}
    values: dict[str, np.ndarray] = {}
    sums: dict[str, _Fsum] = {}
    for key, group in read.group_of_key.items():
        w = _Window(read, group)
        spread = w.spread if w.spread is not None else 0.0
        clear, breach = _sides(rule, w.value + spread, w.value - spread, limits, exact=exact_agg)
        found = np.where(clear, FALSE, np.where(breach, TRUE, UNSURE))
        found = np.where(w.unsure, UNSURE, found)
        found = np.where(w.n > 0, found, NO_DATA)
        codes[key] = np.where(w.present, found, ABSENT).astype(np.int8)
        values[key] = np.where((w.n > 0) & w.present, w.value, np.nan)
        if not exact_agg:
            sums[key] = _Fsum(w)
    empty = np.full(len(steps), NO_DATA, dtype=np.int8)

    def value_at(key: str, i: int) -> float:
        return sums[key](i)

    refine = None if exact_agg else value_at  # sums and averages: fsum where one is taken
    return read.pick, Classes(rule, codes, empty, values, exact=True, value_at=refine)
