"""Which minutes of a backtest certainly change nothing, from the 1-minute rollups' bounds.

A backtest evaluates a metric threshold, absence or rate of change rule every minute of its
range (rate of change: on averages, extremes, percentiles or last values), as often
as the values it reads change, however long the range (90 days: 129,600 steps). Most of those
steps are quiet: every key is clear of the threshold and no instance is active, so the
engine keeps every state as it is (`engine._cleared` on an inactive state, `evaluate_keys`'s
`quiet` keys) and notifies nobody. This module finds such steps without reading a point:
from each key's 1-minute rollups (count, sum, min, max per minute, read in one statement)
it bounds what the rule's window can hold at each step, and a step is quiet when

- every key the step's read could hold certainly has data in its window (no "no data"), and
  the bound is on the clear side of the threshold (for `>`: the largest value any point of
  the window's minutes has is below it; avg, min, max, percentiles and last never exceed
  that; sums and counts are bounded by count × extreme and by the counts), with room for
  rounding; for absence: a point certainly fell inside the window; for rate of change: both
  points it compares certainly exist and the change between their minutes' extremes is
  clear (`_change_bounds`; sums and counts: `backtest_change`);
- a grouped rule certainly has some key (else it evaluates its "no data at all" key).
An `equals` check is certainly False where the bounds leave its value out (never certainly
True); `not_equals` the other way round (`_sides`).

The same bounds tell, per key and step, when a threshold or rate of change check certainly
holds (`key_classes`: data in the window and the bound past every limit; for `>` on an
average, minimum or last value the smallest value of the widened minutes, on a maximum the
largest of a minute wholly inside the window, on a count the points of the minutes wholly
inside; sums and percentiles are not bounded that way): while its instance fires with no
repeat due, such a step changes nothing either but the instance's count of triggers
(`backtest_kinds.Classes`, shared with pattern and anomaly rules).

The replay skips a quiet step only while no instance is active; every other step is
evaluated by the engine on the series the cycle would have read, so skipping changes no
decision (tests/test_backtest_live.py replays with and without skipping). The bounds are
wide on purpose (a minute either side of the window): a step wrongly called busy costs one
evaluation, one wrongly called quiet would lose a firing.
"""

# SQL here is assembled from this module's constants and `range_source`; values are bound.
# ruff: noqa: S608

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

from monitoring_core.alerts import series as series_mod
from monitoring_core.alerts.rules import OPERATORS, Rule, compare
from monitoring_core.alerts.signals import counts_zero, is_windowed, signal
from monitoring_core.rollup_read import range_source
from monitoring_core.timerange import TimeRange
from monitoring_core.wavelet import Wavelet, percentiles

__all__ = [
    "ABSENT",
    "FALSE",
    "NO_DATA",
    "TRUE",
    "UNSURE",
    "Bounds",
    "key_classes",
    "minutes_sql",
    "quiet_of",
    "by_key",
    "regression",
    "read_bounds",
    "signal_classes",
    "signal_classes_threshold",
    "skips",
]


def _family(name: str) -> str:
    found = signal(name)
    return found.family if found is not None else ""


MINUTE = timedelta(minutes=1)
ABSENT, FALSE, NO_DATA, UNSURE, TRUE = 0, 1, 2, 3, 4  # what a key's check certainly gives
_GREATER = ("greater_than", "greater_than_or_equal")
_LESS = ("less_than", "less_than_or_equal")


class Bounds:
    """One group's 1-minute rollups: minute starts `m` (epoch s, sorted), point counts `n`,
    and per minute the sum, smallest and largest value."""

    __slots__ = ("m", "n", "total", "lo", "hi")

    def rollup(self, aggregation: str) -> np.ndarray | None:
        """The minute's value as `metrics_query.query_metric` computes it from the same rows
        (None for percentiles and last, which it computes otherwise)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            found = {"avg": self.total / self.n, "min": self.lo, "max": self.hi,
                     "sum": self.total, "count": self.n}.get(aggregation)  # fmt: skip
        return found

    def __init__(self, m: Any, n: Any, total: Any, lo: Any, hi: Any) -> None:
        self.m = np.asarray(m, dtype=np.float64)
        self.n = np.asarray(n, dtype=np.float64)
        self.total = np.asarray(total, dtype=np.float64)
        self.lo = np.asarray(lo, dtype=np.float64)
        self.hi = np.asarray(hi, dtype=np.float64)


def skips(rule: Rule) -> bool:
    """Whether this rule's quiet minutes can be found without evaluating them: metric
    threshold and absence rules read by the minute (from the rollups), and threshold, rate
    of change, absence and anomaly rules on windowed signals (from their events); the rest
    step as before."""
    cond = rule.condition
    key = series_mod.fetch_key(rule)
    if key is None:
        return False
    if key.kind == "signal":
        return cond.type in ("threshold", "rate_of_change", "absence", "anomaly") and (
            _family(key.metric) != "regression"
        )
    if key.kind != "minute" or is_windowed(cond.metric):
        return False
    if cond.type == "rate_of_change":  # sums and counts: `backtest_change`
        return True
    return cond.type in ("absence", "threshold")


def regression(rule: Rule, key: series_mod.FetchKey) -> bool:
    """Whether the rule is a threshold or a rate of change on the p95 regression signal
    (`backtest_regression` computes it at every step)."""
    return (
        rule.condition.type in ("threshold", "rate_of_change")
        and key.kind == "signal"
        and _family(key.metric) == "regression"
    )


def signal_classes_threshold(
    rule: Rule, groups: dict[tuple, tuple[np.ndarray, np.ndarray]], at: np.ndarray,
    limits: list[float], exact: dict[tuple, np.ndarray] | None = None,
) -> tuple[dict[tuple, np.ndarray], np.ndarray]:  # fmt: skip
    """Per group of a windowed signal's events (sorted times, values), per step (epoch
    seconds `at`), what a threshold rule's check certainly gives over the window
    (stamp − window, stamp]: ABSENT without events there (the group is not in the cycle's
    read), FALSE with fewer than `min_count` (a NaN value never breaches), else FALSE or
    TRUE from bounds of the value (counts exact; sums and averages from running sums,
    widened by their rounding; extremes exact; percentiles between the order statistics
    either side of numpy's interpolation) or UNSURE near a limit. Also what the rule's key
    "" gives where no group is in the read: a count of 0 compared (`engine._threshold`,
    exact) for a counting signal, else no data. `exact`, when given, is filled per group
    with the value `signals_read._windowed` computes at each step for a percentile or an
    extreme (NaN: no point, or a NaN one), bit for bit (`wavelet.percentiles`)."""
    cond = rule.condition
    window = cond.window_minutes * 60.0
    agg = cond.aggregation
    out = {}
    for g, (t, v) in groups.items():
        hi = np.searchsorted(t, at, side="right")
        lo = np.searchsorted(t, at - window, side="right")
        n = hi - lo
        with np.errstate(invalid="ignore", divide="ignore"):
            if agg.startswith("p"):  # numpy's percentile itself
                distinct, codes = np.unique(v, return_inverse=True)
                tree = Wavelet(codes.astype(np.int64))
                top = bottom = percentiles(int(agg[1:]) / 100, distinct, tree, lo, hi)
            else:
                top, bottom, _nan = _signal_value_bounds(cond, v, lo, hi, [])
            clear, breach = _sides(rule, top, bottom, limits, exact=agg not in ("sum", "avg"))
            if exact is not None and agg not in ("count", "sum", "avg"):
                exact[g] = np.where(n < max(cond.min_count, 1), np.nan, top)
        found = np.where(clear, FALSE, np.where(breach, TRUE, UNSURE))
        found = np.where(n < max(cond.min_count, 1), FALSE, found)  # NaN: never breaches
        out[g] = np.where(n > 0, found, ABSENT).astype(np.int8)
    empty = np.full(len(at), NO_DATA, dtype=np.int8)
    if counts_zero(cond.metric):  # nothing counted: a count of 0, compared as any count
        zero = [compare(cond.operator, 0.0, limit) for limit in limits]
        empty[:] = TRUE if all(zero) else FALSE if not any(zero) else UNSURE
    return out, empty


def _cumulative_slack(v: np.ndarray) -> float:
    """How far a window's sum from running sums over all of `v` may be from the sum a
    cycle computes over that window's events alone (each running sum's rounding); none
    for whole numbers (an error rate's 0s and 1s) whose sums stay exact."""
    total = float(np.abs(v).sum())
    if total < 2**53 and bool(np.all(v == np.floor(v))):
        return 0.0
    return 3e-16 * len(v) * total


def _signal_value_bounds(
    cond: Any, v: np.ndarray, lo: np.ndarray, hi: np.ndarray, ranked: list[Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per window [lo, hi) of a group's event values `v`: bounds of the value
    `signals_read._windowed` computes over it (count exact; sum and average from running
    sums, widened by their rounding; extremes exact; a percentile between the order
    statistics either side of numpy's interpolation), and whether it is NaN (fewer events
    than `min_count`). `ranked`: the group's values ranked (sorted distinct values, and a
    `Wavelet` of their codes in time order), built by the first call that needs it."""
    n = hi - lo
    agg = cond.aggregation
    nan = n < cond.min_count
    with np.errstate(invalid="ignore", divide="ignore"):
        if agg == "count":
            return n.astype(np.float64), n.astype(np.float64), nan
        if agg in ("sum", "avg"):
            total = np.concatenate(([0.0], np.cumsum(v)))
            sums, slack = total[hi] - total[lo], _cumulative_slack(v)
            if agg == "avg":
                return (sums + slack) / np.maximum(n, 1), (sums - slack) / np.maximum(n, 1), nan
            return sums + slack, sums - slack, nan
        if agg.startswith("p"):
            return (*_percentile_bounds(int(agg[1:]) / 100, v, lo, hi, ranked), nan)
        pick = np.maximum if agg == "max" else np.minimum  # the window's extreme itself
        top = _range(_sparse(v, pick), lo, hi, pick, np.nan)
        return top, top, nan


def _percentile_bounds(
    q: float, v: np.ndarray, lo: np.ndarray, hi: np.ndarray, ranked: list[Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Per window [lo, hi) (NaN where empty): the order statistics at ⌈i⌉ and ⌊i⌋ of
    numpy's virtual index i = q·(n − 1), a hair wider either way for its own rounding
    (`np.percentile`'s linear method interpolates between ⌊i⌋ and ⌊i⌋ + 1)."""
    n = hi - lo
    top, bottom = np.full(len(n), np.nan), np.full(len(n), np.nan)
    some = np.flatnonzero(n > 0)
    if not len(some):
        return top, bottom
    if not ranked:
        distinct, codes = np.unique(v, return_inverse=True)
        ranked += [distinct, Wavelet(codes.astype(np.int64))]
    distinct, tree = ranked
    count = n[some]
    index = q * (count - 1).astype(np.float64)
    runs = [(lo[some], hi[some])]
    below = np.clip(np.floor(index - 1e-9), 0, count - 1)
    above = np.clip(np.ceil(index + 1e-9), 0, count - 1)
    bottom[some] = distinct[tree.at_rank(runs, below)]
    top[some] = distinct[tree.at_rank(runs, above)]
    return top, bottom


def signal_classes(
    rule: Rule, groups: dict[tuple, tuple[np.ndarray, np.ndarray]], at: np.ndarray,
    limits: list[float], reach: float,
) -> dict[tuple, np.ndarray]:  # fmt: skip
    """Per group of a windowed signal's events (sorted times, values), per step (epoch
    seconds `at`): what a rate of change or absence rule's check certainly gives.

    Absence: a cycle reads the events of (at − reach, at] (`reach`: the window and two
    minutes, `series._signal_window`); a group without one is absent from the read
    (ABSENT; the rule's key "" then finds no data at all), one with one is TRUE when the
    10-second bucket of its last event ends at least a window before `at`
    (`engine._absence` on `signals_read._buckets`, the same arithmetic), else FALSE.
    Rate of change: a cycle reads (at − 2·window, at] and compares the value over
    (at − window, at] with the value over the window before it (`engine._rate_of_change`
    on the two stamps). ABSENT without events in the read; NO_DATA when a side has no
    events (no point: counts always have one); FALSE when a side has fewer than
    `min_count` (a NaN change breaches nothing); else FALSE, TRUE or UNSURE from bounds of
    both values (`_signal_value_bounds`), as `_change_bounds` bounds a metric's."""
    cond = rule.condition
    window = cond.window_minutes * 60.0
    out = {}
    for g, (t, v) in groups.items():
        if cond.type == "absence":
            last = np.searchsorted(t, at, "right") - 1
            when = t[np.maximum(last, 0)]
            end = np.minimum(np.floor(when / 10.0) * 10.0 + 10.0, at)  # its bucket's end
            silent = np.where((at - end) / 60.0 >= cond.window_minutes, TRUE, FALSE)
            out[g] = np.where((last >= 0) & (when > at - reach), silent, ABSENT).astype(np.int8)
            continue
        first, middle, last = (np.searchsorted(t, at - k * window, "right") for k in (2, 1, 0))
        ranked: list[Any] = []
        prev_hi, prev_lo, prev_nan = _signal_value_bounds(cond, v, first, middle, ranked)
        cur_hi, cur_lo, cur_nan = _signal_value_bounds(cond, v, middle, last, ranked)
        with np.errstate(invalid="ignore", divide="ignore"):
            if cond.change_mode == "percent":
                known = prev_lo > 0
                top = 100.0 * (np.where(cur_hi >= 0, cur_hi / prev_lo, cur_hi / prev_hi) - 1.0)
                bottom = 100.0 * (np.where(cur_lo >= 0, cur_lo / prev_hi, cur_lo / prev_lo) - 1.0)
            else:
                known = np.ones(len(at), dtype=bool)
                top, bottom = cur_hi - prev_lo, cur_lo - prev_hi
            known &= np.isfinite(top) & np.isfinite(bottom)
        clear, breach = _sides(rule, top, bottom, limits)
        found = np.where(known & clear, FALSE, np.where(known & breach, TRUE, UNSURE))
        found = np.where(prev_nan | cur_nan, FALSE, found)
        if cond.aggregation != "count":  # an empty side gives no point: nothing to compare
            found = np.where((middle == first) | (last == middle), NO_DATA, found)
        out[g] = np.where(last > first, found, ABSENT).astype(np.int8)
    return out


def read_bounds(
    conn: Connection,
    key: series_mod.FetchKey,
    start: datetime,
    end: datetime,
    *,
    extremes: bool = True,
) -> dict[tuple, Bounds]:
    """Per group of `key.dims` (a read's groups, see `by_key`), its minutes in [start, end]
    (`extremes=False`: counts and sums only, the minima and maxima NaN; a third faster).

    One row per series, each column its minutes' values as big-endian doubles in one bytea
    (90 days are 129,600 minutes a series: as arrays of numbers they took seconds to build
    and convert), sorted and merged per group in numpy."""
    dims = list(key.dims)
    wanted = ["date_part('epoch', r.bucket)", "r.count::float8", "r.sum"]
    sql, params = minutes_sql(
        key, start, end,
        columns="count, sum, min, max",
        aggregates=[f"string_agg(float8send({c}), ''::bytea)"
                    for c in (wanted + ["r.min", "r.max"] if extremes else wanted)],
    )  # fmt: skip
    parts: dict[tuple, list[list[np.ndarray]]] = {}
    for row in conn.execute(text(sql), params):
        values = tuple(row[: len(dims)])
        arrays = [np.frombuffer(x, dtype=">f8").astype(np.float64) for x in row[len(dims) :]]
        if not extremes:
            arrays += [np.full(len(arrays[0]), np.nan)] * 2
        if len(arrays[0]):
            parts.setdefault(values, []).append(arrays)
    return {values: _merged(series) for values, series in parts.items()}


def minutes_sql(
    key: series_mod.FetchKey, start: datetime, end: datetime, *, columns: str,
    aggregates: list[str], unnest: str = "", per_series: bool = True,
) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """A statement over the 1-minute rollups `r` (`columns` of theirs besides series_id and
    bucket) in [start, end] of the series of `key.metric`, joined to `s` (the series, with
    `key.dims` as g0, g1, …): per series (or per group, not `per_series`) of `key.dims`
    its group's values, then `aggregates`; `unnest`: a set-returning join after them."""
    dims = list(key.dims)
    names = ", ".join(f"coalesce(dimensions->>:g{i}, '') AS g{i}" for i in range(len(dims)))
    groups = [f"s.g{i}" for i in range(len(dims))]
    source = range_source(
        "metric",
        TimeRange(start, end),
        columns=f"series_id, bucket, {columns}",
        where="series_id IN (SELECT id FROM sel)",
        step=MINUTE,
    )
    grouping = ", ".join((["s.id"] if per_series else []) + groups)
    sql = (
        f"WITH sel AS (SELECT id{', ' + names if names else ''} FROM metric_series "
        "WHERE name = :name) "
        f"SELECT {', '.join([*groups, *aggregates])} "
        f"FROM ({source.sql}) r JOIN sel s ON s.id = r.series_id{unnest}"
        + (f" GROUP BY {grouping}" if grouping else "")
    )
    params = {**source.params, "name": key.metric, **{f"g{i}": d for i, d in enumerate(dims)}}
    return sql, params


def _merged(series: list[list[np.ndarray]]) -> Bounds:
    """One group's minutes from its series' (minute, count, sum, min, max) columns."""
    m, n, total, lo, hi = (np.concatenate(c) for c in zip(*series, strict=True))
    order = np.argsort(m, kind="stable")
    m, n, total, lo, hi = m[order], n[order], total[order], lo[order], hi[order]
    if len(series) == 1:
        return Bounds(m, n, total, lo, hi)
    heads = np.flatnonzero(np.concatenate(([True], m[1:] != m[:-1])))
    return Bounds(
        m[heads],
        np.add.reduceat(n, heads),
        np.add.reduceat(total, heads),
        np.minimum.reduceat(lo, heads),
        np.maximum.reduceat(hi, heads),
    )


def by_key(rule: Rule, grouped: dict[tuple, Bounds]) -> dict[str, Bounds]:
    """The groups' bounds by the rule's alert keys (as `series.for_rule` cuts a read)."""
    key = series_mod.fetch_key(rule)
    assert key is not None
    read: Any = grouped  # bounds in place of points: for_rule only moves them
    keyed: Any = series_mod.for_rule(rule, key, read)
    return {k: b for k, (_dims, b) in keyed.items()}


def _sparse(values: np.ndarray, pick: Any) -> list[np.ndarray]:
    """A sparse table: level j holds `pick` over values[i : i + 2**j]."""
    table = [values]
    width = 1
    while 2 * width <= len(values):
        prev = table[-1]
        table.append(pick(prev[:-width], prev[width:]))
        width *= 2
    return table


def _range(table: list[np.ndarray], a: np.ndarray, b: np.ndarray, pick: Any, empty: float) -> Any:
    """`pick` over values[a:b] per pair (empty ranges give `empty`)."""
    size = b - a
    out = np.full(len(a), empty)
    some = size > 0
    if not some.any():
        return out
    level = np.zeros(len(a), dtype=np.int64)
    level[some] = np.floor(np.log2(size[some])).astype(np.int64)
    for j in np.unique(level[some]).tolist():
        rows = some & (level == j)
        left, right = a[rows], b[rows] - (1 << j)
        out[rows] = pick(table[j][left], table[j][right])
    return out


def _cumulative(values: np.ndarray) -> np.ndarray:
    return np.concatenate(([0.0], np.cumsum(values)))


def _value_bounds(
    rule: Rule, bounds: Bounds, a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per step: an upper and a lower bound of the threshold check's value (`a:b` the
    widened minutes, any point of which may be in the window; `c:d` minutes wholly inside
    it, after its start: every point of theirs is read and counted), and whether both bound
    it for a breach as well (not for percentiles: only their extremes' side is trusted, for
    clearing)."""
    agg = rule.condition.aggregation
    if agg == "count":
        counts = _cumulative(bounds.n)
        return counts[b] - counts[a], counts[d] - counts[c], True
    if agg == "sum":  # every point's positive part, or negative part, of the widened minutes
        up = _cumulative(bounds.n * np.maximum(bounds.hi, 0.0))
        down = _cumulative(bounds.n * np.minimum(bounds.lo, 0.0))
        return up[b] - up[a], down[b] - down[a], True
    # avg, min, max, percentiles, last: within the extremes of the window; the largest is at
    # least that of a minute inside, the smallest at most that of one
    if agg in ("max", "min"):  # a whole minute inside bounds it on its own side
        extreme, pick, empty = (
            (bounds.hi, np.maximum, -np.inf) if agg == "max" else (bounds.lo, np.minimum, np.inf)
        )
        table = _sparse(extreme, pick)
        near = _range(table, a, b, pick, empty)  # its side: over the widened minutes
        inside = _range(table, c, d, pick, empty)  # the other: over the minutes inside
        bare = np.flatnonzero(d <= c)  # none inside: the other extreme of the widened ones
        if len(bare):
            other, other_pick = (bounds.lo, np.minimum) if agg == "max" else (bounds.hi, np.maximum)
            inside[bare] = _range(_sparse(other, other_pick), a[bare], b[bare], other_pick, -empty)
        return (near, inside, True) if agg == "max" else (inside, near, True)
    highs, lows = _sparse(bounds.hi, np.maximum), _sparse(bounds.lo, np.minimum)
    top = _range(highs, a, b, np.maximum, -np.inf)
    bottom = _range(lows, a, b, np.minimum, np.inf)
    return top, bottom, agg in ("avg", "last")


def _sides(
    rule: Rule, top: np.ndarray, bottom: np.ndarray, limits: list[float], exact: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per step, from bounds of the compared value: whether the check certainly gives False
    for every limit, and certainly True for every limit (room left for rounding, unless the
    bounds are `exact`: extremes, counts, percentiles of the values themselves, which may sit
    on the limit, as a health check's 1 on `min < 1`)."""
    operator = rule.condition.operator
    if exact:
        return _exact_sides(operator, top, bottom, limits)
    clear = np.ones(len(top), dtype=bool)
    breach = np.ones(len(top), dtype=bool)
    with np.errstate(invalid="ignore"):
        room = 1e-9 * np.maximum(np.abs(top), np.abs(bottom))
        for limit in limits:
            near = 1e-9 * max(1.0, abs(limit)) + room
            above, below = bottom > limit + near, top < limit - near
            if operator in _GREATER:
                clear &= below
                breach &= above
            elif operator in _LESS:
                clear &= above
                breach &= below
            elif operator == "equals":  # certainly another value: False; never certainly equal
                clear &= above | below
                breach[:] = False
            else:  # not_equals
                clear[:] = False
                breach &= above | below
    return clear, breach


def _exact_sides(
    operator: str, top: np.ndarray, bottom: np.ndarray, limits: list[float]
) -> tuple[np.ndarray, np.ndarray]:
    """`_sides` for bounds without rounding: the comparison itself at the bound that
    decides (NaN bounds decide nothing)."""
    clear = np.ones(len(top), dtype=bool)
    breach = np.ones(len(top), dtype=bool)
    known = ~(np.isnan(top) | np.isnan(bottom))
    with np.errstate(invalid="ignore"):
        for limit in limits:
            if operator in _GREATER:
                clear &= known & ~OPERATORS[operator](top, limit)
                breach &= known & OPERATORS[operator](bottom, limit)
            elif operator in _LESS:
                clear &= known & ~OPERATORS[operator](bottom, limit)
                breach &= known & OPERATORS[operator](top, limit)
            else:
                apart = known & ((top < limit) | (bottom > limit))
                alike = known & (top == limit) & (bottom == limit)
                clear &= apart if operator == "equals" else alike
                breach &= alike if operator == "equals" else apart
    return clear, breach


def _change_bounds(
    rule: Rule, bounds: Bounds, at: np.ndarray, window: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per step (epoch seconds `at`): whether a rate of change rule's check certainly has
    both points, and bounds of the change it computes.

    `engine._rate_of_change` compares the newest point at or before the step with the newest
    at or before `at − window`. Both certainly exist when a whole minute lies in
    [at − window, at − 60 s] (points after `at − window`) and one in
    [at − window − 120 s, at − window − 60 s] (inside the read, which starts at
    `at − window − 2 min`, and before `at − window`). The current value is then a point of
    the minutes [at − window − 60 s, at], the previous one of [at − window − 120 s,
    at − window]: each within its minutes' extremes (a 10-second bucket's or a minute's
    average, extreme, percentile or last value is), so the change is bounded; in percent
    only while the previous value is certainly above 0."""
    cond, m = rule.condition, bounds.m
    now_a = np.searchsorted(m, at - window, "left")
    now_b = np.searchsorted(m, at - 60.0, "right")
    then_a = np.searchsorted(m, at - window - 120.0, "left")
    then_b = np.searchsorted(m, at - window - 60.0, "right")
    both = (now_b > now_a) & (then_b > then_a)
    hi_table, lo_table = _sparse(bounds.hi, np.maximum), _sparse(bounds.lo, np.minimum)
    cur = (np.searchsorted(m, at - window - 60.0, "left"), np.searchsorted(m, at, "right"))
    prev = (then_a, np.searchsorted(m, at - window, "right"))
    cur_hi = _range(hi_table, *cur, np.maximum, np.nan)
    cur_lo = _range(lo_table, *cur, np.minimum, np.nan)
    prev_hi = _range(hi_table, *prev, np.maximum, np.nan)
    prev_lo = _range(lo_table, *prev, np.minimum, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        if cond.change_mode == "percent":
            positive = prev_lo > 0
            top = 100.0 * (np.where(cur_hi >= 0, cur_hi / prev_lo, cur_hi / prev_hi) - 1.0)
            bottom = 100.0 * (np.where(cur_lo >= 0, cur_lo / prev_hi, cur_lo / prev_lo) - 1.0)
            both &= positive
        else:
            top, bottom = cur_hi - prev_lo, cur_lo - prev_hi
        both &= np.isfinite(top) & np.isfinite(bottom)
    return both, top, bottom


def key_classes(
    rule: Rule, keyed: dict[str, Bounds], steps: list[datetime], limits: list[float],
    presence: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Per key, per step, what its check certainly gives (see the module docstring): ABSENT
    (no minute of the key in the step's read), FALSE (data in the window, clear of every
    limit; absence: a point in the window), TRUE (data in the window, past every limit: a
    threshold on counts, sums, averages, extremes or last values, or a rate of change) or
    UNSURE. `limits`: every threshold the calendar can make of the rule's value.
    `presence` (`backtest_change.raw_presence`, a threshold or absence rule's short window):
    per key whether it is in the step's read, whether its newest point is inside the window,
    and that point's stamp, from the raw points: then a key is ABSENT exactly when not in
    the read, a threshold gives NO_DATA exactly when nothing is inside the window, and an
    absence rule's check is decided (TRUE when silent for the window, else FALSE)."""
    cond = rule.condition
    every = (steps[1] - steps[0]).total_seconds() if len(steps) > 1 else 60.0
    at = steps[0].timestamp() + every * np.arange(len(steps))  # steps are evenly spaced
    window = cond.window_minutes * 60.0
    span = series_mod.lookback(rule).total_seconds()
    out = {}
    for key, bounds in keyed.items():
        m = bounds.m
        a = np.searchsorted(m, at - span - 60.0, side="left")  # could be in the step's read
        b = np.searchsorted(m, at, side="right")
        c = np.searchsorted(m, at - window, side="left")  # certainly inside the window
        d = np.searchsorted(m, at - 60.0, side="right")
        inside = d > c
        breach = np.zeros(len(at), dtype=bool)
        if cond.type == "absence":
            fine = inside
        elif cond.type == "rate_of_change":
            both, top, bottom = _change_bounds(rule, bounds, at, window)
            clear, breach = _sides(rule, top, bottom, limits)
            fine, breach = both & clear, both & breach
        else:
            w_a = np.searchsorted(m, at - window - 60.0, side="left")
            after = np.searchsorted(m, at - window, side="right")  # wholly read and inside
            top, bottom, exact = _value_bounds(rule, bounds, w_a, b, after, d)
            whole = cond.aggregation in ("min", "max", "count", "last")  # no rounding
            clear, breach = _sides(rule, top, bottom, limits, exact=whole)
            breach &= exact
            fine, breach = inside & clear, inside & breach
        found = np.where(fine, FALSE, np.where(breach, TRUE, UNSURE))
        seen = presence.get(key) if presence is not None else None
        if seen is None:
            out[key] = np.where(b > a, found, ABSENT).astype(np.int8)
            continue
        present, in_window, stamp = seen
        if cond.type == "absence":  # `engine._absence` on the stamp, the same arithmetic
            with np.errstate(invalid="ignore"):
                found = np.where((at - stamp) / 60.0 >= cond.window_minutes, TRUE, FALSE)
        elif cond.type == "threshold":  # the bounds above, with exact presence
            found = np.where(clear, FALSE, np.where(breach, TRUE, UNSURE))
            found = np.where(in_window, found, NO_DATA)
        out[key] = np.where(present, found, ABSENT).astype(np.int8)
    for key, (present, _in_window, _stamp) in (presence or {}).items():
        if key not in out:  # raw points without a rolled-up minute yet
            out[key] = np.where(present, UNSURE, ABSENT).astype(np.int8)
    return out


def quiet_of(classes: dict[str, np.ndarray], count: int) -> np.ndarray:
    """Per step of `count`: every key absent or clear, and one clear."""
    fine = np.ones(count, dtype=bool)
    some = np.zeros(count, dtype=bool)
    for found in classes.values():
        fine &= (found == ABSENT) | (found == FALSE)
        some |= found == FALSE
    return fine & some
