"""The series of pattern and anomaly rules at every step of a backtest, read once.

A cycle reads a pattern rule's error events of its window (`errors.queries`, counted per
10-second bucket) and an anomaly rule's current hour so far and the same hour of past weeks
(`series.SeriesReader._hours`, one read each; in an hour's first `engine.HOUR_GRACE` the
hour before each of those too, the hour just ended standing in for a current hour with no
rolled-up minute yet). Reading those at each of 129,600 minutes took
minutes; here each rule's events, or its 1-minute rollups and past hours, are read once and
each evaluated step gets the series the cycle would have read then, built from them.

From the same arrays, per alert key and step, what its check certainly gives (`Classes`):
absent, False (pattern: a count clear of every threshold the calendar can make; anomaly: a
current value inside the band whose z-score against that hour's baseline does not breach,
with room for rounding), no data (anomaly: no current value, nor an hour just ended to
stand in for it; fewer than `min_baseline` past weeks), or unsure. A step where every key's certain
outcome keeps its instance as it is and notifies nobody (`Classes.steady`: False or absent
while not active, no data while `no_data_keeps`) is skipped; the engine decides every other
step (`engine.evaluate_keys`) on these series.
"""

# SQL here is assembled from errors.queries' dimension columns; values are bound.
# ruff: noqa: S608

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

from monitoring_core.alerts import series as series_mod
from monitoring_core.alerts.backtest_quiet import Bounds, _range, _sparse, read_bounds
from monitoring_core.alerts.engine import ACTIVE, HOUR_GRACE, AlertState, Known, Point
from monitoring_core.alerts.rules import OPERATORS, Rule
from monitoring_core.enums import AlertStatus
from monitoring_core.errors.queries import _dimension, _filters
from monitoring_core.rollup_read import floor_to
from monitoring_core.timerange import TimeRange

__all__ = ["Classes", "anomaly_source", "no_data_keeps", "pattern_source"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR, WEEK = timedelta(hours=1), timedelta(days=7)
_BUCKET_US = 10_000_000  # the pattern read's buckets (series.RAW_STEP)
ABSENT, FALSE, NO_DATA, UNSURE = 0, 1, 2, 3  # what a key's check certainly gives


class Classes:
    """Per alert key, per step: ABSENT, FALSE, NO_DATA or UNSURE. `empty`: for a grouped
    rule, what the key "" gives at a step where no key is present (a cycle evaluates it on
    no series); a rule without group_by has the one key "", never absent."""

    def __init__(self, rule: Rule, keys: dict[str, np.ndarray], empty: np.ndarray) -> None:
        self.rule, self.grouped, self.empty = rule, bool(rule.condition.group_by), empty
        if not self.grouped:
            found = keys.get("", np.full(len(empty), ABSENT, dtype=np.int8))
            keys = {"": np.where(found == ABSENT, empty, found).astype(np.int8)}
        self.keys = keys

    def quiet(self) -> np.ndarray:
        """Steps where every key is absent or False (and one is evaluated)."""
        fine = np.ones(len(self.empty), dtype=bool)
        some = np.zeros(len(self.empty), dtype=bool)
        present = np.zeros(len(self.empty), dtype=bool)
        for found in self.keys.values():
            fine &= (found == ABSENT) | (found == FALSE)
            some |= found == FALSE
            present |= found != ABSENT
        return fine & (some | (~present & (self.empty == FALSE)))

    def steady(self, i: int, known: Mapping[str, Known]) -> bool:
        """Whether the engine's decision at step `i` keeps every instance and notifies
        nobody (`evaluate_keys`: present keys, absent known keys, the key "")."""
        present = False
        for key, found in self.keys.items():
            c = int(found[i])
            present |= c != ABSENT
            if not _keeps(self.rule, c, known.get(key)):
                return False
        for key, before in known.items():
            if key not in self.keys and key != "" and not _keeps(self.rule, ABSENT, before):
                return False
        if self.grouped and (not present or "" in known):
            c = FALSE if present else int(self.empty[i])  # data is back, or no series at all
            return _keeps(self.rule, c, known.get(""))
        return True

    def needed(
        self, i: int, keyed: series_mod.Keyed, known: Mapping[str, Known]
    ) -> tuple[series_mod.Keyed, bool]:
        """`keyed` less the keys of a grouped rule whose check certainly gives False and
        whose instance is not active (the engine keeps them as they are: left out, such a
        key is absent, which keeps an inactive instance too), and whether one was left out
        (a cycle hears False from it). Every key is kept if all could go (the rule would
        then see no series at all)."""
        if not self.grouped:
            return keyed, False
        out = {}
        for key, item in keyed.items():
            found = self.keys.get(key)
            before = known.get(key)
            if found is None or found[i] != FALSE or (before and before.state.status in ACTIVE):
                out[key] = item
        if not out:
            return keyed, False
        return out, len(out) < len(keyed)

    def holds(self, i: int) -> bool | None:
        """What a cycle tells a composite at a steady step (False or None)."""
        found = [int(f[i]) for f in self.keys.values() if f[i] != ABSENT]
        found = found or [int(self.empty[i])]
        return False if FALSE in found else None


def _keeps(rule: Rule, found: int, before: Known | None) -> bool:
    state = before.state if before is not None else AlertState()
    if found in (ABSENT, FALSE):
        return state.status not in ACTIVE
    return found == NO_DATA and no_data_keeps(rule, state)


Source = tuple[Callable[[datetime], series_mod.Keyed], Classes]


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _step_us(steps: list[datetime]) -> np.ndarray:
    every = _us(steps[1]) - _us(steps[0]) if len(steps) > 1 else 60_000_000
    return _us(steps[0]) + every * np.arange(len(steps), dtype=np.int64)


def no_data_keeps(rule: Rule, state: AlertState) -> bool:
    """Whether a check giving no data leaves this state as it is, notifying nobody
    (`engine._no_data`)."""
    mode = rule.condition.no_data
    if mode == "keep_last":
        return True
    if mode == "ok":
        return state.status not in ACTIVE
    return mode == "no_data" and state.status == AlertStatus.NO_DATA


def _clear(rule: Rule, values: np.ndarray, limits: list[float]) -> np.ndarray:
    """Per value: the comparison holds for none of the limits."""
    compare = OPERATORS[rule.condition.operator]
    clear = np.ones(len(values), dtype=bool)
    for limit in limits:
        clear &= ~np.asarray(compare(values, limit), dtype=bool)
    return clear


# ---------------------------------------------------------------- pattern
def _read_events(conn: Connection, fk: series_mod.FetchKey, start: datetime, end: datetime) -> dict:
    """Per group of `fk.dims`: the sorted times (µs) of the error events in [start, end),
    filtered and grouped as `errors.queries.error_count_series` does."""
    params: dict[str, Any] = {"start": start, "end": end}
    columns = [_dimension(g) for g in fk.dims]
    dims = "".join(f", {c}::text AS d{i}" for i, c in enumerate(columns))
    where = _filters(json.loads(fk.filters), params)
    sql = (
        f"SELECT floor(extract(epoch FROM time) * 1000000)::bigint AS t{dims} FROM error_events "
        f"WHERE time >= :start AND time < :end{where}"
    )
    parts: dict[tuple[str, ...], list[int]] = {}
    for row in conn.execute(text(sql), params):
        key = tuple(str(row[i + 1]) for i in range(len(columns)))
        parts.setdefault(key, []).append(int(row[0]))
    return {k: np.sort(np.asarray(v, dtype=np.int64)) for k, v in parts.items()}


def _buckets(times: np.ndarray, at: datetime, at_us: int) -> list[Point]:
    """The 10-second buckets a cycle at `at` reads (stamped with their end, or `at`)."""
    ends, counts = np.unique((times // _BUCKET_US + 1) * _BUCKET_US, return_counts=True)
    return [
        Point(min(_EPOCH + timedelta(microseconds=e), at), float(n))
        for e, n in zip(ends.tolist(), counts.tolist(), strict=True)
    ]


def pattern_source(
    conn: Connection, rule: Rule, fk: series_mod.FetchKey, steps: list[datetime],
    limits: list[float],
) -> Source:  # fmt: skip
    """A pattern rule: per step the error counts of its window as a cycle reads them (events
    in [at − window, at]) and what each key's check certainly gives."""
    window_us = int(rule.condition.window_minutes * 60_000_000)
    events = _read_events(conn, fk, steps[0] - series_mod.lookback(rule), steps[-1] + _ONE_US)
    at_us = _step_us(steps)
    spans = {
        k: (np.searchsorted(t, at_us - window_us, "left"), np.searchsorted(t, at_us, "right"))
        for k, t in events.items()
    }
    moved: Any = {k: spans[k] for k in events}  # spans in place of points: for_rule moves them
    keyed: Any = series_mod.for_rule(rule, fk, moved)
    zero = FALSE if _clear(rule, np.zeros(1), limits)[0] else UNSURE
    classes = {}
    for key, (_dims, (lo, hi)) in keyed.items():
        n = hi - lo
        found = np.where(_clear(rule, n.astype(np.float64), limits), FALSE, UNSURE)
        classes[key] = np.where(n == 0, ABSENT, found).astype(np.int8)
    index = {at: i for i, at in enumerate(steps)}

    def at_step(at: datetime) -> series_mod.Keyed:
        i = index[at]
        grouped: series_mod.Grouped = {}
        for k, t in events.items():
            lo, hi = spans[k][0][i], spans[k][1][i]
            if hi > lo:
                grouped[k] = _buckets(t[lo:hi], at, int(at_us[i]))
        return series_mod.for_rule(rule, fk, grouped)

    return at_step, Classes(rule, classes, np.full(len(steps), zero, dtype=np.int8))


_ONE_US = timedelta(microseconds=1)


# ---------------------------------------------------------------- anomaly
_SUMMED = ("avg", "sum", "count")


def _hour_values(
    b: Bounds, agg: str, at_s: np.ndarray, hour_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per step: the current hour's value so far from the group's 1-minute rollups (minutes
    starting in [hour, at)), as `metrics_query.query_metric` computes it (NaN: no minute),
    and bounds on it (for percentiles and last: the minutes' extremes)."""
    lo = np.searchsorted(b.m, hour_s, "left")
    hi = np.searchsorted(b.m, at_s, "left")
    value = np.full(len(at_s), np.nan)
    low, high = value.copy(), value.copy()
    if agg in _SUMMED:  # sums run from each hour's first minute, in order, as SQL adds them
        heads = np.flatnonzero(np.r_[True, np.diff(np.floor(b.m / 3600.0)) != 0])
        total, count = np.empty(len(b.m)), np.empty(len(b.m))
        for a, z in zip(heads.tolist(), [*heads[1:].tolist(), len(b.m)], strict=True):
            total[a:z], count[a:z] = np.cumsum(b.total[a:z]), np.cumsum(b.n[a:z])
        some = hi > lo
        last = hi[some] - 1
        sums = {"sum": total[last], "count": count[last], "avg": total[last] / count[last]}
        value[some] = sums[agg]
        low = high = value
    else:
        low = _range(_sparse(b.lo, np.minimum), lo, hi, np.minimum, np.nan)
        high = _range(_sparse(b.hi, np.maximum), lo, hi, np.maximum, np.nan)
        if agg in ("min", "max"):
            value = low if agg == "min" else high
            low = high = value
    return value, low, high


def _band(cond: Any, baseline: list[float]) -> tuple[float, float] | None:
    """The current values whose robust z-score against `baseline` does not breach (None:
    unsure, a flat baseline), as `engine._anomaly` decides with `engine.robust_z`."""
    median = statistics.median(baseline)
    mad = statistics.median(abs(b - median) for b in baseline)
    scale = 1.4826 * mad or 1.2533 * statistics.fmean(abs(b - median) for b in baseline)
    if scale == 0 or not math.isfinite(scale):
        return None
    reach = cond.z_threshold * scale
    room = 1e-9 * (abs(median) + reach)
    lo = -math.inf if cond.direction == "above" else median - reach + room
    hi = math.inf if cond.direction == "below" else median + reach - room
    return lo, hi


def anomaly_source(
    conn: Connection, rule: Rule, fk: series_mod.FetchKey, steps: list[datetime]
) -> Source:
    """An anomaly rule on a metric: per step the series a cycle's `_hours` read gives (the
    current hour so far and each past week's same hour; in an hour's first `HOUR_GRACE`, the
    hour before each of those too) and what each key's check certainly gives.
    Percentiles and `last` are read per evaluated step by the cycle's own reader (their
    value needs the rollups' histograms); the arrays only bound them."""
    cond, agg = rule.condition, fk.aggregation
    first_hour, last_hour = floor_to(steps[0], HOUR), floor_to(steps[-1], HOUR)
    minutes = read_bounds(conn, fk, first_hour, steps[-1])
    reader = series_mod.SeriesReader(conn, steps[-1])
    # past weeks' hours and the steps' own complete hours (an hour's first minutes check the
    # hour just ended)
    past = reader._rollups(fk, TimeRange(first_hour - cond.weeks * WEEK - HOUR, last_hour))
    at_s = _step_us(steps) / 1e6
    hour_s = np.floor(at_s / 3600.0) * 3600.0
    grace = (at_s - hour_s) < HOUR_GRACE.total_seconds()
    own = np.unique(hour_s)
    sorted_hours = np.unique(np.r_[own, own - 3600.0])
    hours = sorted_hours.tolist()
    pos = np.searchsorted(sorted_hours, hour_s)  # each step's hour in `hours`
    before = np.searchsorted(sorted_hours, hour_s - 3600.0)  # and the hour before it
    per_group: dict[tuple, Any] = {}
    for g in set(minutes) | set(past):
        by_hour = {(h - _EPOCH).total_seconds(): v for h, v in past.get(g, {}).items()}
        b = minutes.get(g)
        if b is None:
            value = low = high = np.full(len(steps), np.nan)
        else:
            value, low, high = _hour_values(b, agg, at_s, hour_s)
        bands, counts, present = [], [], []
        for h in hours:
            base = [by_hour[x] for k in range(cond.weeks, 0, -1)
                    if (x := h - k * WEEK.total_seconds()) in by_hour]  # fmt: skip
            counts.append(len(base))
            present.append(bool(base))
            bands.append(_band(cond, base) if len(base) >= cond.min_baseline else None)
        # no current value in an hour's first minutes: the hour just ended is checked
        ended = np.array([by_hour.get(h - 3600.0, np.nan) for h in hours])[pos]
        current = ~np.isnan(value) | ~np.isnan(low)
        fallback = ~current & grace & ~np.isnan(ended)
        at = np.where(fallback, before, pos)
        low, high = np.where(fallback, ended, low), np.where(fallback, ended, high)
        lo_band = np.array([x[0] if x else np.nan for x in bands])[at]
        hi_band = np.array([x[1] if x else np.nan for x in bands])[at]
        enough = np.array(counts)[at] >= cond.min_baseline
        had = np.array(present, dtype=bool)
        had = had[pos] | (grace & had[before])
        with np.errstate(invalid="ignore"):
            fine = (low >= lo_band) & (high <= hi_band)
        checked = current | fallback
        found = np.where(~checked | ~enough, NO_DATA, np.where(fine, FALSE, UNSURE))
        per_group[g] = (by_hour, value, np.where(~checked & ~had, ABSENT, found).astype(np.int8))
    keyed: Any = series_mod.for_rule(rule, fk, per_group)
    classes = {key: found for key, (_dims, (_by_hour, _value, found)) in keyed.items()}
    index = {at: i for i, at in enumerate(steps)}
    exact = agg in (*_SUMMED, "min", "max")

    def at_step(at: datetime) -> series_mod.Keyed:
        if not exact:
            span = series_mod.lookback(rule)
            return series_mod.for_rule(rule, fk, series_mod.SeriesReader(conn, at).fetch(fk, span))
        i = index[at]
        out: series_mod.Grouped = {}
        hour, ended = float(hour_s[i]), bool(grace[i])
        if (hour, ended) not in held:  # the hour's baseline points, built once (steps ask in order)
            held.clear()
            held[hour, ended] = {
                g: _baseline(by_hour, hour, ended) for g, (by_hour, *_rest) in per_group.items()
            }
        stamp = _EPOCH + timedelta(seconds=hour)
        for g, (_by_hour, value, _found) in per_group.items():
            points = held[hour, ended][g]
            if not math.isnan(value[i]):
                points = [*points, Point(stamp, float(value[i]))]
            if points:
                out[g] = points
        return series_mod.for_rule(rule, fk, out)

    held: dict[tuple[float, bool], dict[tuple, list[Point]]] = {}

    def _baseline(by_hour: dict[float, float], hour: float, ended: bool) -> list[Point]:
        """The same hour of each past week, oldest first, each after the hour before it in an
        hour's first minutes, and then the hour just ended: what `_hours` reads."""
        starts = [hour - k * WEEK.total_seconds() for k in range(cond.weeks, -1, -1)]
        wanted = [x for s in starts for x in ((s - 3600.0, s) if ended else (s,))]
        return [
            Point(_EPOCH + timedelta(seconds=x), by_hour[x])
            for x in wanted
            if x in by_hour and x != hour
        ]

    return at_step, Classes(rule, classes, np.full(len(steps), NO_DATA, dtype=np.int8))
