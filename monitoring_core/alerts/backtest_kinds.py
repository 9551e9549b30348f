"""The series of pattern and anomaly rules at every step of a backtest, read once.

A cycle reads a pattern rule's error events of its window (`errors.queries`, counted per
10-second bucket) and an anomaly rule's current hour so far (its whole minutes) and the same
minutes of that hour in past weeks (`series.SeriesReader._hours`, one read each; in an hour's first `engine.HOUR_GRACE` the
hour before each of those too, the hour just ended standing in for a current hour with no
rolled-up minute yet). Reading those at each of 129,600 minutes took
minutes; here each rule's events, or its 1-minute rollups and past hours, are read once and
each evaluated step gets the series the cycle would have read then, built from them.

From the same arrays, per alert key and step, what its check certainly gives (`Classes`):
absent, False (pattern: a count clear of every threshold the calendar can make; anomaly: a
current value inside the band whose z-score against that hour's baseline does not breach,
with room for rounding), True (a count past every such threshold; a value outside that
band by the same room), no data (anomaly: no current value, nor an hour just ended to
stand in for it; fewer than `min_baseline` past weeks), or unsure. A step where every key's
certain outcome keeps its instance's status and notifies nobody (`Classes.steady`: False or
absent while not active, no data while `no_data_keeps`, True while firing with no repeat
due, acknowledged, or pending before its duration has passed) is skipped, with the steps
after it up to the next change of any key's class, a repeat falling due or a pending
instance's duration passing; a firing instance is moved there as the engine moves it
(`engine._still_holding`: triggered again, with the step's value: `Classes.hold_run`). The
engine decides every other step (`engine.evaluate_keys`) on these series, for the keys that
may change only.
"""

# SQL here is assembled from errors.queries' dimension columns; values are bound.
# ruff: noqa: S608

from __future__ import annotations

import bisect
import json
import warnings
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
from sqlalchemy import Connection, text

from monitoring_core.alerts import series as series_mod
from monitoring_core.alerts.backtest_quiet import (
    ABSENT,
    FALSE,
    NO_DATA,
    TRUE,
    UNSURE,
    Bounds,
    _range,
    _sparse,
    minutes_sql,
    read_bounds,
)
from monitoring_core.alerts.engine import (
    ACTIVE,
    HOUR_GRACE,
    MINUTE_SETTLED,
    AlertState,
    Known,
    Point,
    with_changes,
)
from monitoring_core.alerts.rules import OPERATORS, Rule
from monitoring_core.enums import AlertStatus
from monitoring_core.errors.queries import _dimension, _filters
from monitoring_core.histogram import bucket_values
from monitoring_core.rollup_read import floor_to
from monitoring_core.timerange import TimeRange

__all__ = [
    "PERCENTILES", "TRUE", "Classes", "anomaly_source", "compact", "minute_rows",
    "no_data_keeps", "pattern_source",
]  # fmt: skip

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR, WEEK = timedelta(hours=1), timedelta(days=7)
_BUCKET_US = 10_000_000  # the pattern read's buckets (series.RAW_STEP)


class Classes:
    """Per alert key, per step: ABSENT, FALSE, NO_DATA, TRUE or UNSURE. `empty`: for a
    grouped rule, what the key "" gives at a step where no key is present (a cycle evaluates
    it on no series); a rule without group_by has the one key "", never absent. `values`:
    per key, the value its check gives at each step (what a held instance's
    `trigger_value` becomes, and the chart's point, at a step the engine is not asked);
    `exact`: those values are the ones the engine's check takes from the source's series,
    bit for bit, wherever the class is False or True (`backtest_runs` then decides such a
    step without building the series), or within rounding of them where `value_at(key, step)`
    gives them exactly (a threshold on sums or averages: `math.fsum` of the window)."""

    def __init__(
        self,
        rule: Rule,
        keys: dict[str, np.ndarray],
        empty: np.ndarray,
        values: dict[str, np.ndarray] | None = None,
        *,
        exact: bool = False,
        value_at: Callable[[str, int], float] | None = None,
    ) -> None:
        self.rule, self.grouped, self.empty = rule, bool(rule.condition.group_by), empty
        if not self.grouped:
            found = keys.get("", np.full(len(empty), ABSENT, dtype=np.int8))
            keys = {"": np.where(found == ABSENT, empty, found).astype(np.int8)}
        self.keys = keys
        self.values, self.exact, self.value_at = values or {}, exact, value_at
        self.some_true = np.zeros(len(empty), dtype=bool)  # steps where some key holds
        for found in keys.values():
            self.some_true |= found == TRUE
        self.repeat = timedelta(minutes=rule.repeat_interval_minutes)
        self.duration = timedelta(minutes=rule.condition.duration_minutes)
        change = self.change = np.zeros(len(empty), dtype=bool)  # some key's class changes
        for found in [*keys.values(), empty]:
            change[1:] |= found[1:] != found[:-1]
        heads = np.r_[np.flatnonzero(change), len(empty)]
        # per step, the next step where some key's class changes
        self.run_end = heads[np.searchsorted(heads, np.arange(len(empty)), side="right")]

    def value(self, key: str, i: int) -> float | None:
        """The value key `key`'s check gives at step `i` (None: none): `values`, or where
        those are within rounding of it, `value_at`'s exact one."""
        found = self.values.get(key)
        if found is None or found[i] != found[i]:
            return None
        return self.value_at(key, i) if self.value_at is not None else float(found[i])

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

    def busy(self) -> np.ndarray:
        """Steps the engine may have to decide: not quiet, and some key unsure or some
        key's class changing there (a run of steps holding or giving no data as before is
        steady while the instances are as `steady` asks)."""
        unsure = self.change.copy()
        for found in self.keys.values():
            unsure |= found == UNSURE
        return ~self.quiet() & unsure

    def decisions(self) -> int:
        """About how many times a replay key by key asks the engine (`backtest_runs`): at
        each change of a key's class and each step where it is unsure."""
        count = 0
        for found in self.keys.values():
            count += int((found[1:] != found[:-1]).sum()) + int((found == UNSURE).sum())
        return count

    def steady(self, i: int, known: Mapping[str, Known], at: datetime) -> bool:
        """Whether the engine's decision at step `i` (at `at`) changes no instance's status
        and notifies nobody (`evaluate_keys`: present keys, absent known keys, the key
        ""). A key whose check certainly holds while its instance fires without a repeat
        due is steady too: `hold_run` then moves its instance as the engine would."""
        present = False
        for key, found in self.keys.items():
            c = int(found[i])
            present |= c != ABSENT
            if not self._keeps(c, known.get(key), at):
                return False
        for key, before in known.items():
            if key not in self.keys and key != "" and not self._keeps(ABSENT, before, at):
                return False
        if self.grouped and (not present or "" in known):
            c = FALSE if present else int(self.empty[i])  # data is back, or no series at all
            return self._keeps(c, known.get(""), at)
        return True

    def steady_until(self, i: int, known: Mapping[str, Known], steps: Sequence[datetime]) -> int:
        """After `steady` at step `i`: the first step after it that may not be steady (each
        key's class changes, or a firing instance's repeat notification is due)."""
        end = int(self.run_end[i])
        if self.some_true[i]:
            for key, found in self.keys.items():
                state = known[key].state if found[i] == TRUE else None
                if state is not None and state.status == AlertStatus.FIRING:
                    assert state.last_notified_at is not None  # steady: notified
                    due = state.last_notified_at + self.repeat
                    end = min(end, bisect.bisect_left(steps, due, i + 1, end))
                elif state is not None and state.status == AlertStatus.PENDING:
                    assert state.pending_since is not None  # steady: pending since then
                    due = state.pending_since + self.duration  # it fires there
                    end = min(end, bisect.bisect_left(steps, due, i + 1, end))
        return end

    def hold_run(
        self, i: int, end: int, known: dict[str, Known], steps: Sequence[datetime],
        severity: str, keys: Iterable[str] | None = None,
    ) -> Iterator[tuple[str, list[list[Any]]]]:  # fmt: skip
        """Move the instances of `keys` (default: every key whose check certainly holds at
        step `i`) as the engine moves a firing instance whose condition still holds at each
        of the steps [i, end) (`engine._still_holding`: triggered again, with that step's
        value), yielding each key and its values at those steps (the chart's points)."""
        if keys is None:
            keys = [key for key, found in self.keys.items() if found[i] == TRUE]
        for key in keys:
            before = known[key]
            values = self.values.get(key)  # none: a threshold's chart is its rollups
            got = [] if values is None else values[i:end].tolist()
            last = self.value(key, end - 1) if got else None
            state = before.state
            if state.status == AlertStatus.PENDING:  # waiting out its duration: the value
                after = with_changes(state, trigger_value=last)
            else:
                after = with_changes(
                    state,
                    last_triggered_at=steps[end - 1],
                    trigger_count=state.trigger_count + end - i,
                    trigger_value=last,
                )
            known[key] = Known(after, severity, before.dimensions)
            yield key, [[steps[i + k], v] for k, v in enumerate(got)]

    def _keeps(self, found: int, before: Known | None, at: datetime) -> bool:
        return self.keeps(found, before.state if before is not None else _NONE, at)

    def keeps(self, found: int, state: AlertState, at: datetime) -> bool:
        """Whether a check giving `found` at `at` leaves this instance's status as it is and
        notifies nobody (True: see `_holding`)."""
        if found == ABSENT or found == FALSE:
            return state.status not in ACTIVE
        if found == TRUE:
            return self._holding(state, at)
        return found == NO_DATA and no_data_keeps(self.rule, state)

    def _holding(self, state: AlertState, at: datetime) -> bool:
        """Whether a check that holds at `at` leaves this instance's status as it is and
        notifies nobody (`engine._still_holding`, `engine._notification`): firing and
        notified less than `repeat_interval_minutes` ago, acknowledged, or pending for less
        than `duration_minutes` (it only takes the step's value then)."""
        if state.no_data_since is not None:
            return False
        if state.status == AlertStatus.ACKNOWLEDGED:
            return True
        if state.status == AlertStatus.PENDING:  # it fires once its duration has passed
            return state.pending_since is not None and at - state.pending_since < self.duration
        return (
            state.status == AlertStatus.FIRING
            and state.last_notified_at is not None
            and at - state.last_notified_at < self.repeat
        )

    def needed(
        self, i: int, known: Mapping[str, Known], at: datetime
    ) -> tuple[list[str] | None, bool, list[str]]:
        """The keys of a grouped rule to evaluate at step `i` (None: every key present):
        those present less the keys certain to stay as they are, namely those whose check
        certainly gives False and whose instance is not active (the engine keeps them as
        they are: left out, such a key is absent, which keeps an inactive instance too),
        and those whose check certainly holds while their instance fires with no repeat
        due (`hold_run` moves them). Also whether a False one was left out (a cycle hears False
        from it) and the held keys. Every key is kept if all could go (the rule would then
        see no series at all)."""
        if not self.grouped:
            return None, False, []
        out, held, present = [], [], 0
        for key, found in self.keys.items():
            c = found[i]
            if c == ABSENT:
                continue
            present += 1
            before = known.get(key)
            if c == TRUE and before is not None and self._holding(before.state, at):
                held.append(key)
            elif c != FALSE or (before and before.state.status in ACTIVE):
                out.append(key)
        if not out:
            return None, False, []
        return out, len(out) + len(held) < present, held

    def holds(self, i: int) -> bool | None:
        """What a cycle tells a composite at a steady step (True, False or None)."""
        found = [int(f[i]) for f in self.keys.values() if f[i] != ABSENT]
        found = found or [int(self.empty[i])]
        return True if TRUE in found else False if FALSE in found else None


_NONE = AlertState()


class StepSeries(Protocol):
    """Per step, the series a cycle would have read, by alert key (`only`: just these
    keys, each built only when asked)."""

    def __call__(self, at: datetime, only: Collection[str] | None = None) -> series_mod.Keyed: ...


Source = tuple[StepSeries, Classes]


def compact(x: np.ndarray, typecode: str) -> array[Any]:
    """A step array as `array.array` (typecode b, i, q or d): read item by item as fast as
    a list, 8 bytes (or fewer) an item, and not walked by the cyclic collector (Python lists
    of 518,400 steps per key took 0.8 GB for a threshold's sums, and 50 ms a pass)."""
    dtype = {"b": np.int8, "i": np.int32, "q": np.int64, "d": np.float64}[typecode]
    return array(typecode, np.ascontiguousarray(x, dtype=dtype).tobytes())


def _groups_by_key(rule: Rule, fk: series_mod.FetchKey, groups: Collection[tuple]) -> dict:
    """Alert key -> the group of the read that gives its series (`series.for_rule`)."""
    keyed: Any = series_mod.for_rule(rule, fk, {g: g for g in groups})
    return {key: g for key, (_dims, g) in keyed.items()}


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _step_index(steps: list[datetime]) -> Callable[[datetime], int]:
    """`at -> its position in steps` (evenly spaced)."""
    first, every = steps[0], (steps[1] - steps[0] if len(steps) > 1 else timedelta(minutes=1))

    def index(at: datetime) -> int:
        return (at - first) // every

    return index


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


def _breach(rule: Rule, values: np.ndarray, limits: list[float]) -> np.ndarray:
    """Per value: the comparison holds for every one of the limits."""
    compare = OPERATORS[rule.condition.operator]
    held = np.ones(len(values), dtype=bool)
    for limit in limits:
        held &= np.asarray(compare(values, limit), dtype=bool)
    return held


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
    classes, values = {}, {}
    for key, (_dims, (lo, hi)) in keyed.items():
        n = values[key] = (hi - lo).astype(np.float64)
        found = np.where(
            _clear(rule, n, limits), FALSE, np.where(_breach(rule, n, limits), TRUE, UNSURE)
        )
        classes[key] = np.where(n == 0, ABSENT, found).astype(np.int8)
    index = _step_index(steps)
    group_of = _groups_by_key(rule, fk, events)

    def at_step(at: datetime, only: Collection[str] | None = None) -> series_mod.Keyed:
        i = index(at)
        grouped: series_mod.Grouped = {}
        for k in events if only is None else (group_of[key] for key in only):
            lo, hi = spans[k][0][i], spans[k][1][i]
            if hi > lo:
                grouped[k] = _buckets(events[k][lo:hi], at, int(at_us[i]))
        return series_mod.for_rule(rule, fk, grouped)

    return at_step, Classes(rule, classes, np.full(len(steps), zero, dtype=np.int8), values)


_ONE_US = timedelta(microseconds=1)


# ---------------------------------------------------------------- anomaly
_SUMMED = ("avg", "sum", "count")
EXACT = (*_SUMMED, "min", "max")  # computed here from the minutes' count/sum/min/max
PERCENTILES = ("p50", "p95", "p99")  # … and from the minutes' histograms: between them,
# every aggregation an anomaly rule on a metric can have (`signals.METRIC_AGGREGATIONS`)
_WEEK_S, _HOUR_S = WEEK.total_seconds(), HOUR.total_seconds()


def _partial_values(b: Bounds, agg: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """For one group's 1-minute rollups: a function giving, per step, the value of the minutes
    starting in [hour, end) as `metrics_query.query_metric` computes it (NaN: no minute), for
    an aggregation in EXACT. Built once per group, asked once per week back."""
    if agg in _SUMMED:  # sums run from each hour's first minute, in order, as SQL adds them
        heads = np.flatnonzero(np.r_[True, np.diff(np.floor(b.m / _HOUR_S)) != 0])
        total, count = np.empty(len(b.m)), np.empty(len(b.m))
        for a, z in zip(heads.tolist(), [*heads[1:].tolist(), len(b.m)], strict=True):
            total[a:z], count[a:z] = np.cumsum(b.total[a:z]), np.cumsum(b.n[a:z])
        run = {"sum": total, "count": count, "avg": total / np.where(count == 0, np.nan, count)}
        running = run[agg]

        def summed(end_s: np.ndarray, hour_s: np.ndarray) -> np.ndarray:
            lo = np.searchsorted(b.m, hour_s, "left")
            hi = np.searchsorted(b.m, end_s, "left")
            value = np.full(len(end_s), np.nan)
            some = hi > lo
            value[some] = running[hi[some] - 1]
            return value

        return summed
    pick = np.minimum if agg == "min" else np.maximum
    table = _sparse(b.lo if agg == "min" else b.hi, pick)

    def extreme(end_s: np.ndarray, hour_s: np.ndarray) -> np.ndarray:
        lo = np.searchsorted(b.m, hour_s, "left")
        hi = np.searchsorted(b.m, end_s, "left")
        return np.asarray(_range(table, lo, hi, pick, np.nan))

    return extreme


def _read_histograms(
    conn: Connection, fk: series_mod.FetchKey, start: datetime, end: datetime
) -> dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per group of `fk.dims`: its 1-minute rollups' histogram buckets in [start, end], one
    entry per (minute, key): minute starts (epoch s), keys and counts (a NULL count is 1, as
    `metrics_query` merges them), each column one bytea of big-endian numbers per group."""
    dims = list(fk.dims)
    sql, params = minutes_sql(
        fk, start, end,
        columns="hist_keys, hist_counts",
        aggregates=["string_agg(float8send(date_part('epoch', r.bucket)), ''::bytea)",
                    "string_agg(int8send(u.k::bigint), ''::bytea)",
                    "string_agg(int8send(coalesce(u.c, 1)), ''::bytea)"],
        unnest=", unnest(r.hist_keys, r.hist_counts) AS u(k, c)",
        per_series=False,
    )  # fmt: skip
    out = {}
    for row in conn.execute(text(sql), params):
        m, k, c = row[len(dims) :]
        if m:
            out[tuple(row[: len(dims)])] = (
                np.frombuffer(m, dtype=">f8").astype(np.float64),
                np.frombuffer(k, dtype=">i8").astype(np.int64),
                np.frombuffer(c, dtype=">i8").astype(np.int64),
            )
    return out


def minute_rows(
    conn: Connection, fk: series_mod.FetchKey, minutes: Mapping[tuple, Bounds],
    start: datetime, end: datetime,
) -> dict[tuple, tuple[np.ndarray, np.ndarray]] | None:  # fmt: skip
    """Per group of `fk.dims`: its minutes in [start, end] with a value (epoch s, sorted) and
    that value as `metrics_query.query_metric` gives a 1-minute interval's: from the rollup
    rows `minutes` already read (sums, counts, averages, extremes), or for a percentile from
    the minutes' histograms, read once (`histogram.grouped_quantiles`: rank q·(n − 1) on
    the running count of a minute's buckets sorted by key). None for last values."""
    agg = fk.aggregation
    if agg in EXACT:
        out = {}
        for g, b in minutes.items():
            x = b.rollup(agg)
            assert x is not None
            keep = np.isfinite(x)
            out[g] = (b.m[keep], x[keep])
        return out
    if agg not in PERCENTILES:
        return None
    q = int(agg[1:]) / 100
    found = {}
    for g, (m, k, c) in _read_histograms(conn, fk, start, end).items():
        order = np.lexsort((k, m))
        m, k, c = m[order], k[order], c[order]
        running = np.cumsum(c)
        heads = np.flatnonzero(np.r_[True, m[1:] != m[:-1]])
        total = running[np.r_[heads[1:], len(m)] - 1].astype(np.float64)
        before = np.r_[0.0, total[:-1]]
        rank = np.floor(q * (total - before - 1))  # as `grouped_quantiles`
        at = np.searchsorted(running, before + rank, side="right")
        found[g] = (m[heads], bucket_values(k[at]))
    return found


def _hour_quantiles(
    m: np.ndarray, k: np.ndarray, c: np.ndarray, q: float
) -> tuple[np.ndarray, np.ndarray]:
    """From one group's histogram entries (minute, key, count): the hours that have any
    (epoch s, sorted) and per hour, for its first e = 1..60 minutes, the quantile q of
    their merged histogram (NaN: no entry yet), as `histogram.grouped_quantiles` answers
    for those minutes (rank q·(n − 1) on the running count of the buckets sorted by key)."""
    hour = np.floor(m / _HOUR_S) * _HOUR_S
    offset = ((m - hour) // 60).astype(np.int64)
    order = np.lexsort((k, hour))
    hour, k, c, offset = hour[order], k[order], c[order], offset[order]
    # one row per (hour, key), one column per minute of the hour: counts, then running
    new = np.r_[True, (hour[1:] != hour[:-1]) | (k[1:] != k[:-1])]
    pair = np.cumsum(new) - 1
    pairs = int(pair[-1]) + 1
    # a column per minute of the hour (contiguous: each prefix is searched on its own)
    flat = np.bincount(offset * pairs + pair, weights=c, minlength=60 * pairs)
    counts = flat.astype(np.int64).reshape(60, pairs)
    np.cumsum(counts, axis=0, out=counts)  # the minutes up to each: a prefix of the hour
    running = np.cumsum(counts, axis=1)  # over every (hour, key) row, per prefix
    pair_hour, pair_key = hour[new], k[new]
    hours, first = np.unique(pair_hour, return_index=True)
    last = np.r_[first[1:], len(pair_hour)] - 1
    before = np.where(first[None, :] > 0, running[:, np.maximum(first - 1, 0)], 0)
    n = running[:, last] - before  # per prefix and hour: the points its histogram holds
    target = before + np.floor(q * (n - 1))
    out = np.full((len(hours), 60), np.nan)
    for e in range(60):
        some = n[e] > 0
        at = np.searchsorted(running[e], target[e, some], side="right")
        out[some, e] = bucket_values(pair_key[at])
    return hours, out


Tables = tuple[datetime, datetime, dict[tuple, tuple[np.ndarray, np.ndarray]]]


def _histogram_partials(
    conn: Connection, fk: series_mod.FetchKey, end_s: np.ndarray, hour_s: np.ndarray,
    weeks: int, since: datetime, until: datetime, cache: dict[Any, Any] | None = None,
) -> dict[tuple, list[np.ndarray]]:  # fmt: skip
    """Per group, per week back (0: the current hour so far), per step: the quantile of the
    minutes [hour, end) as `query_metric` merges them (an hour's interval, the cycle's
    `_hours` read), from the minutes' histograms read once (every
    step's partial hour is a prefix of its hour: `_hour_quantiles`). `cache`: the tables
    of [since, until] kept for another replay of the same backtest over a part of it."""
    q = int(fk.aggregation[1:]) / 100
    held: Tables | None = None if cache is None else cache.get(("hours", fk))
    if held is None or not held[0] <= since <= until <= held[1]:
        tables = {
            g: _hour_quantiles(m, k, c, q)
            for g, (m, k, c) in _read_histograms(conn, fk, since, until).items()
        }
        held = (since, until, tables)
        if cache is not None:
            cache[("hours", fk)] = held
    out = {}
    for g, (hours, table) in held[2].items():
        per_week = []
        for back in range(weeks + 1):
            h = hour_s - back * _WEEK_S
            e = np.round((end_s - hour_s) / 60).astype(np.int64)  # whole minutes so far
            row = np.minimum(np.searchsorted(hours, h), len(hours) - 1)
            found = (hours[row] == h) & (e > 0)
            value = np.full(len(h), np.nan)
            value[found] = table[row[found], e[found] - 1]
            per_week.append(value)
        out[g] = per_week
    return out


def _bands(cond: Any, base: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per step (columns of `base`, the past weeks' values, NaN where none), as
    `engine._anomaly` decides with `engine.robust_z`: the current values whose z-score
    certainly does not breach (between the first two, with room for rounding), those whose
    z-score certainly breaches (outside the same band widened by that room: the third says
    how far; NaN bounds: unsure, a flat baseline), and whether there are `min_baseline`
    values."""
    count = (~np.isnan(base)).sum(axis=0)
    enough = count >= cond.min_baseline
    with warnings.catch_warnings():  # columns without any value are NaN, and said so
        warnings.simplefilter("ignore", RuntimeWarning)
        median = _median(base, count)
        deviation = np.abs(base - median)
        mad = _median(deviation, count)
        mean = np.nanmean(deviation, axis=0)
    scale = np.where(mad > 0, 1.4826 * mad, 1.2533 * mean)
    sure = enough & (scale > 0) & np.isfinite(scale)
    reach = cond.z_threshold * scale
    room = 1e-9 * (np.abs(median) + reach)
    lo = np.full(len(count), -np.inf) if cond.direction == "above" else median - reach + room
    hi = np.full(len(count), np.inf) if cond.direction == "below" else median + reach - room
    return np.where(sure, lo, np.nan), np.where(sure, hi, np.nan), 2 * room, enough


def _median(values: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per column, the median of its `count` values that are not NaN (NaN: none), as
    `statistics.median` takes it: the middle value, or the mean of the middle two
    (`np.nanmedian`'s result, several times faster on a few rows)."""
    ordered = np.sort(values, axis=0)  # NaN last
    lo = np.take_along_axis(ordered, np.maximum(count - 1, 0)[None, :] // 2, axis=0)[0]
    hi = np.take_along_axis(ordered, (count // 2)[None, :], axis=0)[0] if len(values) else lo
    return np.where(count > 0, (lo + hi) / 2, np.nan)


def _flat(
    cond: Any, base: np.ndarray, value: np.ndarray, extra: float, found: np.ndarray
) -> np.ndarray:
    """Where the past weeks' values are all alike (`engine.robust_z`: no spread, so a
    z-score of 0 for the same value and ±inf for any other), what the check certainly
    gives: False for the same value (when computed exactly) or one on the other side,
    True for one on the rule's side, farther than rounding can move it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # steps without any past value
        top, bottom = np.nanmax(base, axis=0), np.nanmin(base, axis=0)
    flat = top == bottom  # NaN (no values) compares unequal
    off = value - top
    room = extra + 1e-9 * np.abs(top)
    with np.errstate(invalid="ignore"):
        up, down = off > room, off < -room
    side = {"above": up, "below": down}.get(cond.direction, up | down)
    other = (down if cond.direction == "above" else up) if cond.direction != "both" else False
    same = (off == 0) & (extra == 0)
    decided = np.where(side, TRUE, np.where(same | other, FALSE, UNSURE))
    return np.where(flat, decided, found)


def _breaches(value: np.ndarray, lo: np.ndarray, hi: np.ndarray, room: np.ndarray) -> np.ndarray:
    """Per step: the value is certainly outside the band (`_bands`), beyond its room."""
    with np.errstate(invalid="ignore"):
        return (value < lo - room) | (value > hi + room)


def anomaly_source(
    conn: Connection, rule: Rule, fk: series_mod.FetchKey, steps: list[datetime],
    cache: dict[Any, Any] | None = None,
) -> Source:  # fmt: skip
    """An anomaly rule on a metric: per step the series a cycle's `_hours` read gives (the
    current hour so far and the same minutes of that hour in each past week; in an hour's
    first `HOUR_GRACE`, the whole hour before each of those too) and what each key's check
    certainly gives. Count/sum/min/max/avg come from the minutes' rollups in numpy,
    percentiles from their histograms (`cache`: see `_histogram_partials`)."""
    cond, agg, weeks = rule.condition, fk.aggregation, rule.condition.weeks
    first_hour, last_hour = floor_to(steps[0], HOUR), floor_to(steps[-1], HOUR)
    at_s = _step_us(steps) / 1e6
    hour_s = np.floor(at_s / _HOUR_S) * _HOUR_S
    grace = (at_s - hour_s) < HOUR_GRACE.total_seconds()
    # the hour so far: its whole minutes (`engine.MINUTE_SETTLED`), none before the hour
    end_s = np.maximum(np.floor((at_s - MINUTE_SETTLED.total_seconds()) / 60.0) * 60.0, hour_s)
    partials: dict[tuple, list[np.ndarray]]
    if agg in EXACT:
        since = first_hour - weeks * WEEK
        minutes = read_bounds(conn, fk, since, steps[-1], extremes=agg not in _SUMMED)
        partials = {}
        for g, b in minutes.items():
            partial = _partial_values(b, agg)
            partials[g] = [
                partial(end_s - k * _WEEK_S, hour_s - k * _WEEK_S) for k in range(weeks + 1)
            ]
    else:  # a stored metric's rule aggregates no other way (`signals.METRIC_AGGREGATIONS`)
        assert agg in PERCENTILES, agg
        since = first_hour - weeks * WEEK
        partials = _histogram_partials(conn, fk, end_s, hour_s, weeks, since, steps[-1], cache)
    # whole hours: the hour before each step's hour, in every week (an hour's first minutes)
    reader = series_mod.SeriesReader(conn, steps[-1])
    whole = reader._rollups(fk, TimeRange(first_hour - weeks * WEEK - HOUR, last_hour))
    hours = np.unique(hour_s)
    pos = np.searchsorted(hours, hour_s)
    nothing = [np.full(len(steps), np.nan)] * (weeks + 1)
    per_group: dict[tuple, Any] = {}
    for g in set(partials) | set(whole):
        by_hour = {(h - _EPOCH).total_seconds(): v for h, v in whole.get(g, {}).items()}
        part = partials.get(g, nothing)
        ended = [  # per step, week back k's whole hour before the step's hour
            np.array([by_hour.get(h - _HOUR_S - k * _WEEK_S, np.nan) for h in hours.tolist()])[pos]
            for k in range(weeks + 1)
        ]
        current = ~np.isnan(part[0])
        fallback = ~current & grace & ~np.isnan(ended[0])
        value = np.where(fallback, ended[0], part[0])
        base = np.array([np.where(fallback, ended[k], part[k]) for k in range(1, weeks + 1)])
        lo_band, hi_band, room, enough = _bands(cond, base.reshape(weeks, len(steps)))
        with np.errstate(invalid="ignore"):
            fine = (value >= lo_band) & (value <= hi_band)
        sure = np.where(
            fine, FALSE, np.where(_breaches(value, lo_band, hi_band, room), TRUE, UNSURE)
        )
        sure = _flat(cond, base.reshape(weeks, len(steps)), value, 0.0, sure)
        checked = current | fallback
        found = np.where(~checked | ~enough, NO_DATA, sure)
        had = np.zeros(len(steps), dtype=bool)
        for k in range(weeks + 1):
            had |= ~np.isnan(part[k]) | (grace & ~np.isnan(ended[k]))
        found = np.where(~checked & ~had, ABSENT, found).astype(np.int8)
        # oldest week first, as `_hours` reads them: a row per step
        per_group[g] = (np.array(part[::-1]).T.copy(), np.array(ended[::-1]).T.copy(), found, value)
    keyed: Any = series_mod.for_rule(rule, fk, per_group)
    classes = {key: found for key, (_dims, (_part, _ended, found, _value)) in keyed.items()}
    checked_values = {key: v for key, (_dims, (_part, _ended, _found, v)) in keyed.items()}
    index = _step_index(steps)
    stamps: dict[float, list[tuple[datetime, datetime]]] = {}

    def at_step(at: datetime, only: Collection[str] | None = None) -> series_mod.Keyed:
        """The points `_hours` reads at `at`: per week back, oldest first, the whole hour
        before (an hour's first minutes) and the hour's whole minutes before `at`."""
        i = index(at)
        hour, before = float(hour_s[i]), bool(grace[i])
        starts = stamps.get(hour)
        if starts is None:  # (hour before, hour) of each week back, built once per hour
            stamps.clear()
            starts = stamps[hour] = [
                (_EPOCH + timedelta(seconds=x - _HOUR_S), _EPOCH + timedelta(seconds=x))
                for x in (hour - k * _WEEK_S for k in range(weeks, -1, -1))
            ]
        out: series_mod.Keyed = {}
        for key in keyed if only is None else only:
            dims, (part, ended, _found, _value) = keyed[key]
            points = []
            values = part[i].tolist()
            wholes = ended[i].tolist() if before else None
            for j, (hour_before, start) in enumerate(starts):
                if wholes is not None and (x := wholes[j]) == x:  # not NaN
                    points.append(Point(hour_before, x))
                if (x := values[j]) == x:
                    points.append(Point(start, x))
            if points:
                out[key] = (dims, points)
        return out

    empty = np.full(len(steps), NO_DATA, dtype=np.int8)
    return at_step, Classes(rule, classes, empty, checked_values, exact=True)
