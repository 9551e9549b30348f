"""Testing a rule against stored history: replay the engine over a past range, send nothing.

Answers "when would it have fired?" for the rule editor and `POST …/alerts/{id}/test`.

The replay is the live cycle run at each step with a frozen clock: the same per-rule code
(`engine.evaluate_keys`: present, absent and "no data at all" keys, each instance's state
carried from step to step, notification stamps as the cycle writes them) over the series
the cycle would have read at that moment:
- a metric window up to `series.RAW_MAX`: the raw points of the step's span, bucketed by the
  cycle's own `SeriesReader` (raw points read in blocks of RAW_BLOCK of steps); a longer one:
  the 1-minute rollups before the last `series.RAW_TAIL` and the raw tail after it
  (`series.long_window`, the cycle's code); a short window whose raw points are gone
  (kept 14 days by default, the rollups 90) reads the rollups;
- a threshold, rate of change, absence or anomaly rule on a windowed signal (API timings,
  Web Vitals, errors, spans, logs): the family's events read once, each step's values
  computed over the windows a cycle reads at that step as `signals_read` does (a rate of
  change's two windows, an absence rule's 10-second buckets, an anomaly rule's hour and the
  same hour of past weeks: `backtest_signal_anomaly`); steps before the family's retention
  are not replayed;
- a pattern rule: its error events of the range read once, each step's 10-second buckets of
  [step − window, step] built as `errors.queries` counts them (`backtest_kinds`);
- an anomaly rule on a metric: its 1-minute rollups and the past weeks' whole hours read
  once, each step's series as the cycle's `_hours` read gives it (the whole minutes of the
  hour so far and the same minutes of past weeks, summed from the same minute rows in order;
  percentiles merged from the minutes' histograms, read once, each hour's prefixes at once);
- a PromQL rule: its expression as a range query over the steps (PROMQL_CHUNK at a time),
  each returned series' transitions as `promql_rules` decides them in a cycle;
- a composite rule: each child replayed as above at the same steps, telling the composite
  whether it held as a cycle does (a PromQL or disabled child tells it nothing), combined by
  the engine step by step;
- a rate of change rule on a metric's count, sum, average or extremes over a window up to
  `series.RAW_MAX`: each step's two points computed exactly from the raw points and rollups
  read once, each bucket reduced as `raw.bucketed` reduces it (`backtest_change.change_source`);
  of percentiles or last values, or over a longer window: as a threshold rule, its quiet
  steps found from the 1-minute rollups' extremes (`backtest_quiet._change_bounds`; of sums
  and counts over a longer window from the raw points and rollups: `backtest_change`);
- a threshold on a metric's window up to `series.RAW_MAX`: each step's check computed from
  the raw points and rollups read once, per key the window's buckets (or minutes) and the
  one holding the step, reduced as the cycle's read reduces them; extremes, counts and
  percentiles exactly, sums and averages to within rounding and exactly (`math.fsum`, as
  the engine) wherever a decision takes the value (`backtest_window.threshold_source`; for
  up to EXACT_CELLS alert keys × steps, held in memory); over a longer window, or more keys
  × steps: its quiet steps from the 1-minute rollups' bounds (`backtest_quiet`);
- a threshold or rate of change on the p95 regression signal: the Performance page's flags
  as a cycle's `regression_flags` query gives them, computed for every minute of the range
  from the 1-minute API rollups read once (`backtest_regression`; a rate of change's two
  moments, now − window and now, as a cycle reads them);
- other rules (a rule on a metric windowed like a signal, an absence or anomaly rule on the
  regression signal) read their series once for the range and slice it per step.
A rule whose source builds any step's series for any key (signals, patterns, anomalies,
the regression signal, exact rates of change, and metric windows up to `series.RAW_MAX`
whose range's raw points are read at once: `backtest_window.window_source`) is replayed key
by key (`backtest_runs`): alert keys are independent in a cycle, so each instance is decided
by the engine at the first step of each run of one class and inside a run only where it may
change; a flapping rule costs one decision per change of one key.
`tests/test_backtest_live.py`, `tests/test_backtest_live_kinds.py`,
`tests/test_backtest_signals.py`, `tests/test_backtest_signal_anomaly.py`,
`tests/test_backtest_change.py`, `tests/test_backtest_regression.py`,
`tests/test_backtest_runs.py` and `tests/test_backtest_window.py` run the live engine
cycle by cycle (every minute, and every 15 s) and the backtest over the same history, for
raw and rollup windows, signal templates, pattern, anomaly, PromQL and composite rules: the
same status changes and notifications, and the same with nothing skipped.

Steps: every step over any range (up to MAX_EVERY of them) for metric threshold, absence and
rate of change rules (a change of averages, extremes, percentiles or last values), signal
thresholds (the p95 regression too), rates of change, absence and anomaly, pattern,
anomaly on metrics, PromQL and composite rules; by
default the live cycle's 15 s for those that read raw points or events (`live_cadence`:
1-minute steps missed the breaches shorter than a minute, 58 firings of 74 on the bench
data), a minute for rollup windows (a value that changes at most once a minute, but for its
2-minute raw tail), anomaly rules on metrics (the current hour from the 1-minute rollups) and
composites (the children's cost adds up); `backtest(step=)` takes 15, 20 or 30 s or whole
minutes for any rule. Steps that certainly change nothing are skipped: those
`backtest_quiet` or `backtest_kinds` find quiet (every key clear of its threshold, or absent,
while no instance is active: the engine would keep every state and notify nobody), those
where a rule without group_by certainly has no data while its instance keeps no data as it
is, and a PromQL series not returned while its instance is not active. For every kind but
PromQL and composites also those where each key's check certainly holds while its instance
fires with no repeat notification due, or is pending before its duration has passed
(`Classes.steady`: the engine would only count it as triggered again, or take its value,
which `Classes.hold_run` does, a run of such steps at once). Whether a metric key is in a
step's read at all, and has a point inside its window, comes from the raw points
(`backtest_change.raw_presence`: checks every few minutes leave windows without a whole
minute of data, which the minutes' bounds cannot tell); an absence rule is decided from
them outright. A grouped
rule's keys certain to stay as they are are left out of a step's evaluation (nor is their
series built). 90 days every 15 s are 518,400 steps, of which a few thousand are evaluated;
a rule that flaps most of the time asks the engine once per change of one key (on the bench
data a rate of change within the noise, 65,790 firings in 90 days: about 1.5 s; a 1-minute
average threshold within it, 105,464 firings: about 2 s; `bench/README.md`). A metric threshold, absence or rate of change rule replayed step by
step (not key by key: a window longer than `series.RAW_MAX`, raw points too many to read at
once, or more than KEYWISE_LIMIT decisions key by key, KEYWISE_EXACT on exact values) that
is busy (a key unsure, or changing between clear, breaching and no data) at more than
BUSY_LIMIT steps at its default step replays by the minute if at most BUSY_LIMIT of those
are busy, else falls back to MAX_STEPS steps (a minute up to 33 hours, coarser beyond: a
firing shorter than the step can be missed; the answer says so: `coarse`); so does by
default a composite with such a child. Steps are multiples of the step from the epoch, so two backtests with the same step look at the same moments; the live cycle runs every
15 s from when its worker started, so a breach shorter than the backtest's step can fire
live and not here; in an hour's first minutes an anomaly rule checks the hour just ended
until the current hour has a whole minute (`engine.HOUR_GRACE`, `engine.MINUTE_SETTLED`),
live and in the replay alike. What the replay cannot know: silences (a silenced
notification does not stamp `last_notified_at`, so repeats come at other times), points that
arrived late, rollups that lagged, whether a rule had seen data before the range (no data
is notified as if it had), and other rules' reads the cycle shares (a counting signal's
group with events only outside this rule's window is absent here, a count of 0 in a cycle
whose read a longer rule widened; a raw point exactly on a minute boundary is read or not
with the other rules' spans; a pattern rule sharing its read with a longer one counts a
bucket reaching before its window), the order in which the cycle evaluates composites of
composites (a child composite evaluated after its parent tells it nothing there), and
PromQL's raw points that retention removed (its steps there see no data).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from itertools import accumulate, repeat
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Connection

from monitoring_core.alerts import series as series_mod
from monitoring_core.alerts.backtest_change import (
    change_source,
    raw_presence,
    sum_change_classes,
)
from monitoring_core.alerts.backtest_kinds import (
    NO_DATA,
    Classes,
    StepSeries,
    _groups_by_key,
    _step_index,
    anomaly_source,
    no_data_keeps,
    pattern_source,
)
from monitoring_core.alerts.backtest_quiet import (
    FALSE,
    TRUE,
    UNSURE,
    Bounds,
    by_key,
    key_classes,
    quiet_of,
    read_bounds,
    regression,
    signal_classes,
    signal_classes_threshold,
    skips,
)
from monitoring_core.alerts.backtest_regression import regression_rule_source
from monitoring_core.alerts.backtest_runs import event, replay_by_key
from monitoring_core.alerts.backtest_signal_anomaly import signal_anomaly_source
from monitoring_core.alerts.backtest_window import threshold_source, window_source
from monitoring_core.alerts.engine import (
    ACTIVE,
    AlertState,
    Check,
    Decision,
    Known,
    Point,
    effective_severity,
    evaluate_keys,
    transition,
    with_changes,
)
from monitoring_core.alerts.promql_rules import promql_series
from monitoring_core.alerts.raw import RawMetric, read_raw
from monitoring_core.alerts.rules import Rule, RuleInvalid, rule_from_row
from monitoring_core.alerts.signals_read import SignalReader
from monitoring_core.alerts.signals_read import _buckets as signal_buckets
from monitoring_core.alerts.signals_read import _family as sk_family
from monitoring_core.alerts.signals_read import _source as signal_source
from monitoring_core.alerts.signals_read import _windowed as windowed_values
from monitoring_core.alerts.store import RuleNotFound, get_rule
from monitoring_core.prometheus.promql.model import QueryError
from monitoring_core.retention import FOREVER_DAYS, retention_days
from monitoring_core.rollup_read import floor_to
from monitoring_core.timerange import TimeRange
from monitoring_core.wedding_calendar import season_adjusted_threshold, season_strictness

__all__ = ["MAX_STEPS", "RAW_LIMIT", "backtest", "every_step", "live_cadence", "steps_of"]

MAX_STEPS = 2_000
MAX_EVERY = 600_000  # steps of a backtest at most (90 days every 15 s are 518,400)
MAX_NESTING = 3  # composite of composite of …
RAW_LIMIT = 2_000_000  # raw points of a metric read at once for a replay; beyond: rollups
MINUTE, WEEK = timedelta(minutes=1), timedelta(days=7)
MIN_STEP = timedelta(seconds=15)  # the live cycle's interval (flows.alert_cycle)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _step(start: datetime, end: datetime, rule: Rule | None = None) -> timedelta:
    """The live cycle's 15 s for rules that read raw points or events (`live_cadence`), a
    minute for the other rules replayed at every step, else coarser for long ranges (at
    most MAX_STEPS)."""
    span = end - start
    if rule is not None and live_cadence(rule) and span / MIN_STEP <= MAX_EVERY:
        return MIN_STEP
    if rule is not None and every_step(rule) and span / MINUTE <= MAX_EVERY:
        return MINUTE
    minutes = max(1, int((end - start) / timedelta(minutes=1)) // MAX_STEPS + 1)
    return timedelta(minutes=minutes)


def every_step(rule: Rule) -> bool:
    """Whether the rule is replayed at every step of any range (else at most MAX_STEPS):
    metric threshold, absence and rate of change rules and signal
    thresholds, rates of change and absence (`backtest_quiet`, `backtest_regression`), pattern
    rules and anomaly rules on metrics (`backtest_kinds`), PromQL and composite rules."""
    if skips(rule) or rule.condition.type in ("pattern", "promql", "composite"):
        return True
    fk = series_mod.fetch_key(rule)
    if fk is not None and regression(rule, fk):
        return True
    return rule.condition.type == "anomaly" and fk is not None and fk.kind == "hour"


def live_cadence(rule: Rule) -> bool:
    """Whether a backtest of the rule steps at the live cycle's 15 s by default: its value
    can change between two minutes (raw points of a metric window up to `series.RAW_MAX`,
    events of a signal or a pattern, PromQL over raw points), or it changes on whole
    minutes that a cycle sees at its first run after them (the regression flags' hour). Windows from the 1-minute
    rollups with a raw tail, anomaly rules (the current hour from the rollups) and composite
    rules (their children's cost adds up: 5.4 s at 90 days in bench/backtest.py) step by the
    minute, finer on request."""
    if rule.condition.type in ("pattern", "promql"):
        return True
    fk = series_mod.fetch_key(rule)
    if fk is not None and regression(rule, fk):
        return True
    return skips(rule) and fk is not None and (fk.kind == "signal" or not fk.long)


def steps_of(
    start: datetime, end: datetime, rule: Rule | None = None, step: timedelta | None = None
) -> list[datetime]:
    """The moments a backtest of [start, end] evaluates at: multiples of its step since the
    epoch (the same moments for every backtest with that step)."""
    step = step or _step(start, end, rule)
    first = _EPOCH + -((_EPOCH - start) // step) * step  # start rounded up to a step
    count = (end - first) // step + 1  # none when no multiple lies in [start, end]
    if count < 1:
        return []
    return list(accumulate(repeat(step, count - 1), _later, initial=first))  # 518,400: 30 ms


def _later(moment: datetime, step: timedelta) -> datetime:
    return moment + step


def _epoch_s(moment: datetime) -> float:
    """Seconds since the epoch exactly as the points reader computes them (µs / 1e6)."""
    return ((moment - _EPOCH) // _US) / 1e6


def _live_series(
    conn: Connection, rule: Rule, steps: list[datetime], bounds: dict[tuple, Bounds] | None
) -> Callable[[datetime], series_mod.Keyed] | None:
    """Per step, the series the live cycle would have read at that moment (None: the rule
    does not read metric points by the minute).

    A window up to `series.RAW_MAX` is built from the raw points in its span; a longer one
    from the 1-minute rollups before the last `RAW_TAIL` and the raw points since
    (`series.long_window`, as the cycle). The raw points of the whole range are read once
    when there are at most RAW_LIMIT of them, else each step reads its own as a cycle does.
    A short window whose raw points are gone (kept 14 days by default, the rollups 90) is
    read from the rollups, as the cycle does when there are too many raw points. `bounds`:
    the 1-minute rollups `backtest_quiet` read, which give the rollup values of sums,
    counts, averages and extremes without another read."""
    key = series_mod.fetch_key(rule)
    span = series_mod.lookback(rule)
    if key is None or key.kind != "minute":
        return None
    raw_span = series_mod.RAW_TAIL if key.long else span
    raw_at = _raw_source(conn, key.metric, steps, raw_span)
    held: list[Callable[[datetime, datetime], dict[tuple, dict[datetime, float]]]] = []

    def rollups(lo: datetime, hi: datetime) -> dict[tuple, dict[datetime, float]]:
        if not held:  # read when first needed
            simple = bounds is not None and all(
                b.rollup(key.aggregation) is not None for b in bounds.values()
            )
            held.append(
                _from_bounds(bounds, key.aggregation)
                if bounds is not None and simple
                else _rollup_source(conn, key, steps, span)
            )
        return held[0](lo, hi)

    def at_step(at: datetime) -> series_mod.Keyed:
        reader = series_mod.SeriesReader(conn, at, views=True)
        raw = reader.raw_cache[key.metric] = raw_at(at)
        if not key.long and (raw is None or len(raw.t)):
            grouped = reader.fetch(key, span)
        elif not key.long:  # no raw points left: the rollups alone
            grouped = series_mod.long_window(rollups(floor_to(at - span, MINUTE), at), {}, at, at)
        else:
            raw_from = floor_to(at - series_mod.RAW_TAIL, MINUTE)
            tail = reader._raw_points(key, raw, raw_from)
            grouped = series_mod.long_window(
                rollups(floor_to(at - span, MINUTE), at), tail, raw_from, at
            )
        return series_mod.for_rule(rule, key, grouped)

    return at_step


RAW_BLOCK = timedelta(hours=3)  # raw points are read for this many hours of steps at once
RAW_BLOCK_MOST = timedelta(days=2)  # … doubled after each read of few points, up to this


def _raw_source(
    conn: Connection, metric: str, steps: list[datetime], raw_span: timedelta
) -> Callable[[datetime], RawMetric | None]:
    """`at -> what raw.read_raw returns at at` (points in (since, at], since a minute floor).

    Read in blocks of RAW_BLOCK of steps (up to RAW_LIMIT points each; after a block of
    fewer than an eighth of those, twice as long, up to RAW_BLOCK_MOST), when a step of the
    block is first evaluated: a long backtest that skips quiet steps reads only around the
    steps it evaluates. A block over RAW_LIMIT: each of its steps reads its own."""
    block: list[Any] = []  # [first, last, t, v, s, dims] or [first, last, None, ...]
    every = steps[1] - steps[0] if len(steps) > 1 else MINUTE
    length = [max(RAW_BLOCK, 40 * every)]  # coarse steps: several to a read

    def load(at: datetime) -> None:
        last = min(at + length[0], steps[-1])
        since = floor_to(at - raw_span, MINUTE)
        raw = read_raw(conn, {metric: since}, now=last, limit=RAW_LIMIT)[metric]
        if raw is None:
            block[:] = [at, last, None, None, None, None]
            return
        if len(raw.t) < RAW_LIMIT // 8 and length[0] < RAW_BLOCK_MOST:
            length[0] *= 2  # few points (or none: retention): longer reads, fewer of them
        order = np.argsort(raw.t, kind="stable")
        block[:] = [at, last, raw.t[order], raw.v[order], raw.s[order], raw.dims]

    def at_step(at: datetime) -> RawMetric | None:
        if not block or not block[0] <= at <= block[1]:
            load(at)
        _first, _last, t, v, s, dims = block
        if t is None:  # too many for one read: this step reads its own, as a cycle does
            wanted = {metric: floor_to(at - raw_span, MINUTE)}
            return read_raw(conn, wanted, now=at, limit=series_mod.RAW_LIMIT)[metric]
        lo = int(np.searchsorted(t, _epoch_s(floor_to(at - raw_span, MINUTE)), side="right"))
        hi = int(np.searchsorted(t, _epoch_s(at), side="right"))
        if hi - lo > series_mod.RAW_LIMIT:  # the cycle's read gives up: rollups
            return None
        return RawMetric(dims, t[lo:hi], v[lo:hi], s[lo:hi])

    return at_step


Rollups = Callable[[datetime, datetime], dict[tuple, dict[datetime, float]]]


def _rollup_source(
    conn: Connection, key: series_mod.FetchKey, steps: list[datetime], span: timedelta
) -> Rollups:
    """`(lo, hi) -> the 1-minute rollups in [lo, hi) per group` (what the cycle's
    `query_metric` over (now − span, now] gives at a step `hi`), read through `query_metric`
    for RAW_BLOCK of steps at once when first asked."""
    block: list[Any] = []  # [first step, last step, groups]

    def between(lo: datetime, hi: datetime) -> dict[tuple, dict[datetime, float]]:
        if not block or not block[0] <= hi <= block[1]:
            every = steps[1] - steps[0] if len(steps) > 1 else MINUTE
            last = min(hi + max(RAW_BLOCK, 40 * every), steps[-1])
            read = series_mod.SeriesReader(conn, last)._rollups(key, TimeRange(hi - span, last))
            groups = {
                values: (sorted(buckets), [buckets[b] for b in sorted(buckets)])
                for values, buckets in read.items()
            }
            block[:] = [hi, last, groups]
        out = {}
        for values, (times, xs) in block[2].items():
            a, b = bisect.bisect_left(times, lo), bisect.bisect_left(times, hi)
            if b > a:
                out[values] = dict(zip(times[a:b], xs[a:b], strict=True))
        return out

    return between


def _from_bounds(bounds: dict[tuple, Bounds], aggregation: str) -> Rollups:
    """`_rollup_source` from the rollup rows `backtest_quiet` already read (same formulas as
    `query_metric`: sum(sum) / sum(count), min(min), …)."""
    groups = {}
    for values, b in bounds.items():
        x = b.rollup(aggregation)
        assert x is not None
        keep = np.isfinite(x)
        groups[values] = (b.m[keep], x[keep].tolist())
    stamps: dict[float, datetime] = {}  # minute -> its datetime, made when first used

    def stamp(t: float) -> datetime:
        found = stamps.get(t)
        if found is None:
            found = stamps[t] = _EPOCH + timedelta(seconds=t)
        return found

    def between(lo: datetime, hi: datetime) -> dict[tuple, dict[datetime, float]]:
        lo_s, hi_s = lo.timestamp(), hi.timestamp()
        out = {}
        for values, (m, xs) in groups.items():
            a, b = int(np.searchsorted(m, lo_s, "left")), int(np.searchsorted(m, hi_s, "left"))
            if b > a:
                out[values] = dict(zip(map(stamp, m[a:b].tolist()), xs[a:b], strict=True))
        return out

    return between


def _sliced(
    keyed: series_mod.Keyed, steps: list[datetime], reach: timedelta
) -> Iterator[series_mod.Keyed]:
    """Per step, each key's points within `reach` before it; a key without any is absent
    (as a cycle's read leaves out a group with no points)."""
    windows = {k: (dims, _windows(points, steps, reach)) for k, (dims, points) in keyed.items()}
    for _at in steps:
        out: series_mod.Keyed = {}
        for k, (dims, it) in windows.items():
            window = next(it)
            if window:
                out[k] = (dims, window)
        yield out


def _windows(
    points: Sequence[Point], steps: list[datetime], reach: timedelta
) -> Iterator[Sequence[Point]]:
    """Per step, the points the engine's lookback could use at that moment."""
    lo = hi = 0
    for at in steps:
        while hi < len(points) and points[hi].time <= at:
            hi += 1
        while lo < hi and points[lo].time <= at - reach:
            lo += 1
        yield points[lo:hi]


def _keyed(conn: Connection, rule: Rule, steps: list[datetime]) -> series_mod.Keyed:
    key = series_mod.fetch_key(rule)
    assert key is not None
    start, end = steps[0], steps[-1]
    span = (end - start) + series_mod.lookback(rule)
    step = steps[1] - steps[0] if len(steps) > 1 else _step(start, end)
    grouped = series_mod.fetch(conn, key, span=span, now=end, step=step)
    return series_mod.for_rule(rule, key, grouped) or {"": ({}, [])}


def _held(
    conn: Connection,
    rule: Rule,
    steps: list[datetime],
    tz: ZoneInfo,
    depth: int = 0,
    *,
    skip: bool = True,
) -> list[bool | None]:
    """Per step, whether the rule's condition held for any of its keys, as a cycle tells a
    composite rule about its children: the child's own replay (`_replay`, every step; a step
    it skips as quiet held False, as idle gave no data). A PromQL child tells a cycle
    nothing (None), as does a disabled one (the cycle does not evaluate it)."""
    if rule.condition.type == "composite":
        return _composite_replay(conn, rule, steps, tz, depth + 1, skip=skip)[0]
    if rule.condition.type in ("promql", "external"):
        return [None] * len(steps)
    holds: list[bool | None] = []
    _replay(conn, rule, steps, tz, skip=skip, holds=holds)
    return holds


def _child(conn: Connection, child_id: int) -> Rule | None:
    """A composite's child by id (None: disabled, which a cycle does not evaluate)."""
    try:
        row = get_rule(conn, rule_id=child_id)
    except RuleNotFound:
        raise ValueError(f"no alert rule with id {child_id}") from None
    return rule_from_row(row) if row.get("is_enabled", True) else None


def _children_every_step(conn: Connection, rule: Rule, depth: int = 1) -> bool:
    """Whether every (enabled) descendant of a composite is replayed at every step cheaply
    (`every_step`); else the composite steps as they do (a rate of change child evaluated at
    each of 129,600 minutes takes a minute)."""
    if depth > MAX_NESTING:
        raise ValueError(f"composite rules nest deeper than {MAX_NESTING} levels")
    for child_id in rule.condition.rules:
        child = _child(conn, child_id)
        if child is None or child.condition.type in ("promql", "external"):
            continue
        if child.condition.type == "composite":
            if not _children_every_step(conn, child, depth + 1):
                return False
        elif not every_step(child):
            return False
    return True


_KLEENE = {True: 1, False: 0, None: -1}


def _composite_replay(
    conn: Connection,
    rule: Rule,
    steps: list[datetime],
    tz: ZoneInfo,
    depth: int,
    *,
    skip: bool = True,
) -> tuple[list[bool | None], list[dict[str, Any]], list[int], int]:
    """A composite rule's check at each step (its children's replays combined in Kleene
    logic, as `engine._composite` does), its events, the number of children holding per
    step and how many steps the engine evaluated: a step whose check gives False while the
    instance is not active, or no data that `no_data_keeps`, changes nothing and is
    skipped."""
    if depth > MAX_NESTING:
        raise ValueError(f"composite rules nest deeper than {MAX_NESTING} levels")
    children = {}
    for child_id in rule.condition.rules:
        child = _child(conn, child_id)
        held = (
            _held(conn, child, steps, tz, depth, skip=skip)
            if child is not None
            else [None] * len(steps)
        )
        children[child_id] = held
    codes = np.array([[_KLEENE[h] for h in held] for held in children.values()], dtype=np.int8)
    decisive = 1 if rule.condition.logic == "or" else 0
    check = np.where(
        (codes == decisive).any(axis=0),
        decisive,
        np.where((codes == -1).any(axis=0), -1, 1 - decisive),
    )
    holds: list[bool | None] = [{1: True, 0: False}.get(c) for c in check.tolist()]
    known: dict[str, Known] = {}
    events: list[dict[str, Any]] = []
    evaluated = 0
    for i, at in enumerate(steps):
        state = _state(known)
        if skip and holds[i] is False and state.status not in ACTIVE:
            continue
        if skip and holds[i] is None and no_data_keeps(rule, state):
            continue
        evaluated += 1
        told = {c: h[i] for c, h in children.items()}
        for key, dims, decision, _present in evaluate_keys(
            rule, {}, known, at, tz=tz, children=told
        ):
            if decision.state.status is not None:
                known[key] = Known(_after(decision, at), decision.severity, dims)
            if decision.changed or decision.notify:
                events.append(event(at, key, decision))
    counts = (codes == 1).sum(axis=0).tolist()
    return holds, events, counts, evaluated


def _after(decision: Decision, at: datetime) -> AlertState:
    if decision.notify in ("firing", "repeat", "no_data"):
        return with_changes(decision.state, last_notified_at=at)
    return decision.state


def _promql_replay(
    conn: Connection, rule: Rule, steps: list[datetime], tz: ZoneInfo, *, skip: bool = True
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """A PromQL rule over history: its expression as a range query at the backtest's steps,
    then per returned series the transitions a cycle at each step would have made (a step
    where a series is not returned and its instance is not active changes nothing: a cycle
    decides nothing for it). Also returns at how many steps some series was decided."""
    found = _promql_found(conn, rule.condition.expr, steps)
    events, series = [], []
    evaluated = np.zeros(len(steps), dtype=bool)
    for key, (_labels, values, present) in found.items():
        state = AlertState()
        for i, at in enumerate(steps):
            held = bool(present[i])
            if skip and not held and state.status not in ACTIVE:  # a cycle decides nothing
                continue
            evaluated[i] = True
            message = f"{rule.condition.expr} {'returned' if held else 'returned nothing'}"
            check = Check(held, float(values[i]) if held else None, None, message)
            decision = transition(rule, state, check, at, severity=effective_severity(rule, at, tz))
            state = _after(decision, at)
            if decision.changed or decision.notify:
                events.append(event(at, key, decision))
        returned = np.flatnonzero(present)  # thinned for the chart (the alert page draws it)
        returned = returned[:: max(1, -(-len(returned) // DISPLAY_POINTS))]
        points = [[steps[i], float(values[i])] for i in returned.tolist()]
        series.append({"alert_key": key, "points": points})
    events.sort(key=lambda e: e["time"])
    return events, series, int(evaluated.sum())


PROMQL_CHUNK = 50_000  # steps per range query (each step is evaluated on its own)


def _promql_found(
    conn: Connection, expr: str, steps: list[datetime]
) -> dict[str, tuple[dict[str, str], np.ndarray, np.ndarray]]:
    """`promql_series` over the steps, PROMQL_CHUNK at a time (518,400 steps of 15 s in one
    range query load more samples than the engine allows)."""
    parts: dict[str, tuple[dict[str, str], np.ndarray, np.ndarray]] = {}
    for first in range(0, len(steps), PROMQL_CHUNK):
        chunk = steps[first : first + PROMQL_CHUNK]
        try:
            found = promql_series(conn, expr, chunk)
        except QueryError as exc:
            raise RuleInvalid([{"field": "condition_config.expr", "message": str(exc)}]) from None
        for key, (labels, values, present) in found.items():
            if key not in parts:
                parts[key] = (labels, np.zeros(len(steps)), np.zeros(len(steps), dtype=bool))
            parts[key][1][first : first + len(chunk)] = values
            parts[key][2][first : first + len(chunk)] = present
    return parts


class _TooBusy(Exception):
    """More steps to evaluate than BUSY_LIMIT after skipping the quiet ones; `by_minute`: how
    many of those are on whole minutes (the busy steps of a replay by the minute)."""

    def __init__(self, by_minute: int) -> None:
        super().__init__(by_minute)
        self.by_minute = by_minute


BUSY_LIMIT = 5_000  # about a second of evaluations
# how often a replay key by key may ask the engine (`Classes.decisions`) for a rule with a
# busy limit: ~25 µs a decision on a series built for it, ~7 µs on an exact value
# (bench/backtest.py); beyond, such a rule steps as busy rules do
KEYWISE_LIMIT, KEYWISE_EXACT = 50_000, 250_000
# alert keys × steps a metric rule's check is computed for at every step (a value and a
# class each, ~9 bytes: ~225 MB; 43 keys over 90 days every 15 s); beyond, its quiet steps
# come from the minutes' bounds as before
EXACT_CELLS = 25_000_000


def _busy_limit(rule: Rule) -> int:
    """How many busy steps a replay at the default step may have (0: any number): a limit
    for the rules replayed step by step on the cycle's own reads (a metric's threshold,
    absence, or a rate of change `change_source` cannot compute); a rule whose source
    builds any step's series is replayed key by key whatever its business."""
    return BUSY_LIMIT if skips(rule) else 0


def _replay(
    conn: Connection,
    rule: Rule,
    steps: list[datetime],
    tz: ZoneInfo,
    *,
    skip: bool = True,
    busy_limit: int = 0,
    holds: list[bool | None] | None = None,
    cache: dict[Any, Any] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """The live cycle's decisions for this rule at each step (see the module docstring);
    series: per alert key the value the engine compared at each step, or (read from the
    rollups) the points of the range.

    A step `backtest_quiet` finds quiet is skipped while no instance is active (`skip`);
    the engine's decision there would keep every state and notify nobody. Also returns how
    many steps were evaluated. More than `busy_limit` (when not 0) steps not quiet: _TooBusy
    (the caller steps as for other rules: a rule breaching most of a long range). `holds`:
    filled with whether the condition held for any key at each step, as a cycle tells a
    composite rule about its children. `cache`: reads a second replay of the same
    backtest can reuse (an anomaly rule's percentile tables)."""
    grouped = None
    fk = series_mod.fetch_key(rule)
    skippable = skips(rule)
    if skippable and fk is not None and fk.kind == "minute":
        reach = series_mod.lookback(rule) + 2 * MINUTE
        grouped = read_bounds(conn, fk, steps[0] - reach, steps[-1])
    at_step = _live_series(conn, rule, steps, grouped)
    exact = None  # each step's check computed exactly (or its value within rounding)
    bounds = by_key(rule, grouped) if grouped is not None else {}
    cells = len(bounds) * len(steps)
    if grouped is not None and cells <= EXACT_CELLS and rule.condition.type == "rate_of_change":
        exact = _exact_change(conn, rule, grouped, steps, tz)
    elif grouped is not None and fk is not None and cells <= EXACT_CELLS:
        if rule.condition.type == "threshold":
            exact = threshold_source(conn, rule, fk, grouped, steps, _limits(rule, tz))
    series: list[dict[str, Any]] | None = None
    quiet: list[bool] | None = None
    classes: Classes | None = None
    pick: StepSeries | None = None  # a kind's series, built for the keys asked only
    if skippable and fk is not None and fk.kind == "signal":
        pick, classes = _signal_source(conn, rule, fk, steps, _limits(rule, tz), cache)
        at_step = pick
        quiet = classes.quiet().tolist()
    elif fk is not None and (fk.kind in ("pattern", "hour") or regression(rule, fk)):
        if fk.kind == "pattern":
            source = pattern_source(conn, rule, fk, steps, _limits(rule, tz))
        elif fk.kind == "hour":
            source = anomaly_source(conn, rule, fk, steps, cache)
        else:
            source = regression_rule_source(conn, rule, fk, steps, _limits(rule, tz))
        pick, classes = source
        at_step = pick
        quiet = classes.quiet().tolist()
    elif at_step is None:
        keyed = _keyed(conn, rule, steps)
        sliced = _sliced(keyed, steps, series_mod.lookback(rule))
        at_step = lambda _at: next(sliced)  # noqa: E731 (every step, in order)
        series = [
            {"alert_key": k, "points": [[p.time, p.value] for p in pts if p.time >= steps[0]]}
            for k, (_d, pts) in keyed.items()
        ]
    elif exact is not None:  # a rate of change or threshold on a metric, computed per step
        pick, classes = exact
        if skip:  # (every step evaluated: on the cycle's own reads, as a reference)
            at_step = pick
        quiet = classes.quiet().tolist()
    elif grouped is not None:
        kind = rule.condition.type
        presence = None
        if kind in ("threshold", "absence") and fk is not None:
            found = raw_presence(conn, rule, fk, grouped, steps)
            if found is not None:
                moved: Any = found  # presence in place of points: for_rule only moves them
                keyed_presence: Any = series_mod.for_rule(rule, fk, moved)
                presence = {k: p for k, (_dims, p) in keyed_presence.items()}
        summed = rule.condition.aggregation in ("count", "sum")
        codes = (
            _sum_change(conn, rule, grouped, steps, _limits(rule, tz))
            if kind == "rate_of_change" and summed
            else key_classes(rule, bounds, steps, _limits(rule, tz), presence)
        )
        if kind == "threshold":
            series = _bounds_series(rule, bounds, steps)
        if kind == "absence" and presence is None:
            quiet = quiet_of(codes, len(steps)).tolist()
        else:  # a key (or none: the key "" without data) gives no data, as in a cycle;
            # an absence rule finds no data at all a breach
            empty = np.full(len(steps), TRUE if kind == "absence" else NO_DATA, dtype=np.int8)
            classes = Classes(rule, codes, empty)
            quiet = classes.quiet().tolist()
            if fk is not None:  # any step's series: replayed key by key
                pick = window_source(conn, rule, fk, grouped, steps)
    if not skip:
        quiet, classes = None, None
    if pick is not None and classes is not None and holds is None:
        # a source that builds any step's series for any key: replayed key by key, unless
        # that asks the engine too often for a rule with a busy limit (then as below)
        limit = KEYWISE_EXACT if classes.exact else KEYWISE_LIMIT
        if not busy_limit or classes.decisions() <= limit:
            return replay_by_key(rule, classes, pick, steps, tz)
    if quiet is not None and busy_limit:
        # steps the engine decides: not quiet, and some key unsure or changing its class
        busy = classes.busy() if classes is not None else ~np.asarray(quiet, dtype=bool)
        if int(busy.sum()) > busy_limit:
            whole = (_epoch_s(steps[0]) + _seconds_of(steps) * np.arange(len(steps))) % 60 == 0
            raise _TooBusy(int((busy & whole).sum()))
    known: dict[str, Known] = {}
    active: set[str] = set()
    events: list[dict[str, Any]] = []
    values: dict[str, list[list[Any]]] = {}
    evaluated = 0
    classed = set(classes.keys) if classes is not None else set()  # keys with a class
    # the next step at or after each that is not quiet: runs of quiet steps are jumped over
    after = _next_busy(quiet) if quiet is not None else None
    i = -1
    while i + 1 < len(steps):
        i += 1
        at = steps[i]
        if after is not None and quiet is not None and quiet[i] and not active:
            j = after[i]
            if holds is not None:
                holds.extend([False] * (j - i))  # every key present held False
            i = j - 1
            continue
        if classes is not None and classes.steady(i, known, at):
            # each key as before (False, no data), or still firing (moved as the engine
            # would), up to the step where a key's class changes or a repeat is due
            j = classes.steady_until(i, known, steps)
            if classes.some_true[i]:
                severity = effective_severity(rule, steps[j - 1], tz)
                for key, points in classes.hold_run(i, j, known, steps, severity):
                    values.setdefault(key, []).extend(points)
            if holds is not None:
                holds.extend([classes.holds(i)] * (j - i))
            i = j - 1
            continue
        evaluated += 1
        results: list[bool | None] = []
        held: list[str] = []
        if classes is None:
            keyed = at_step(at)
        else:  # keys certain to stay as they are: not evaluated (nor their series built)
            wanted, left_out, held = classes.needed(i, known, at)
            if wanted is None:
                keyed = at_step(at)
            elif pick is not None:
                keyed = pick(at, wanted)
            else:  # the cycle's read: less the keys left out (a key without class stays)
                out = classed.difference(wanted)
                keyed = {k: v for k, v in at_step(at).items() if k not in out}
            if left_out:
                results.append(False)
            if held:
                severity = effective_severity(rule, at, tz)
                for key, points in classes.hold_run(i, i + 1, known, steps, severity, held):
                    values.setdefault(key, []).extend(points)
                results.append(True)
        view = known
        if classes is not None and classes.grouped:  # inactive keys out of the read stay so
            view = {
                k: v
                for k, v in known.items()
                if k in keyed or k == "" or (k in active and k not in held)
            }
        for key, dims, decision, present in evaluate_keys(rule, keyed, view, at, tz=tz):
            if present:
                results.append(decision.check.holds)
            if present and decision.check.value is not None:
                values.setdefault(key, []).append([at, decision.check.value])
            status = decision.state.status
            if status is None:  # a quiet key the cycle would not store
                continue
            known[key] = Known(_after(decision, at), decision.severity, dims)
            if status in ACTIVE:
                active.add(key)
            else:
                active.discard(key)
            if decision.changed or decision.notify:
                events.append(event(at, key, decision))
        if holds is not None:
            holds.append(True if True in results else (False if False in results else None))
    if series is None:  # thinned for the chart, as the rollups' series are
        series = [
            {"alert_key": k, "points": pts[:: max(1, -(-len(pts) // DISPLAY_POINTS))]}
            for k, pts in values.items()
        ] or [{"alert_key": "", "points": []}]
    return events, series, evaluated


def _sum_change(
    conn: Connection, rule: Rule, grouped: dict[tuple, Bounds], steps: list[datetime],
    limits: list[float],
) -> dict[str, np.ndarray]:  # fmt: skip
    """A rate of change of sums or counts: per key what its check gives at each step
    (`backtest_change`), by the rule's alert keys; every key unsure (each step decided by
    the engine, or the busy fallback) when the range's raw points cannot be read at once."""
    fk = series_mod.fetch_key(rule)
    assert fk is not None
    found = sum_change_classes(conn, rule, fk, grouped, steps, limits)
    if found is None:
        return {k: np.full(len(steps), UNSURE, dtype=np.int8) for k in by_key(rule, grouped)}
    moved: Any = found  # classes in place of points: for_rule only moves them
    keyed: Any = series_mod.for_rule(rule, fk, moved)
    return {k: c for k, (_dims, c) in keyed.items()}


def _exact_change(
    conn: Connection, rule: Rule, grouped: dict[tuple, Bounds], steps: list[datetime],
    tz: ZoneInfo,
) -> tuple[StepSeries, Classes] | None:  # fmt: skip
    """A rate of change on a metric: each step's two points and the change's class computed
    exactly (`backtest_change.change_source`); None where that source cannot."""
    fk = series_mod.fetch_key(rule)
    assert fk is not None
    found = change_source(conn, rule, fk, grouped, steps, _limits(rule, tz))
    if found is None:
        return None
    pick, codes, values = found
    empty = np.full(len(steps), NO_DATA, dtype=np.int8)
    return pick, Classes(rule, codes, empty, values, exact=True)


def _next_busy(quiet: list[bool]) -> list[int]:
    """Per step, the first step at or after it that is not quiet (len(quiet): none)."""
    busy = np.flatnonzero(~np.asarray(quiet, dtype=bool))
    index = np.searchsorted(busy, np.arange(len(quiet)), side="left")
    return np.append(busy, len(quiet))[index].tolist()


def _state(known: dict[str, Known]) -> AlertState:
    """The instance of a rule without group_by (its one key "")."""
    found = known.get("")
    return found.state if found is not None else AlertState()


def _seconds_of(steps: list[datetime]) -> float:
    return (steps[1] - steps[0]).total_seconds() if len(steps) > 1 else 60.0


def _busy_replay(
    conn: Connection, rule: Rule, start: datetime, end: datetime, tz: ZoneInfo,
    step: timedelta, by_minute: int, cache: dict[Any, Any],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int, timedelta]:  # fmt: skip
    """A rule busy at more than BUSY_LIMIT of its default steps: at 1-minute steps if those
    are few enough (`by_minute`: a rule busy 1,500 minutes is 6,000 steps of 15 s), else at
    most MAX_STEPS steps, every one evaluated (no bounds tell quiet ones apart when most are
    busy)."""
    if step < MINUTE and by_minute <= BUSY_LIMIT and (end - start) / MINUTE <= MAX_EVERY:
        return (*_replay(conn, rule, steps_of(start, end, step=MINUTE), tz, cache=cache), MINUTE)
    step = _step(start, end)
    every = steps_of(start, end, step=step)
    return (*_replay(conn, rule, every, tz, skip=False, cache=cache), step)


def _signal_source(
    conn: Connection, rule: Rule, fk: series_mod.FetchKey, steps: list[datetime],
    limits: list[float], cache: dict[Any, Any] | None = None,
) -> tuple[StepSeries, Classes]:  # fmt: skip
    """A threshold, rate of change, absence or anomaly rule on a windowed signal: the
    family's events of the range read once; what each key's check certainly gives at each
    step (`backtest_quiet.signal_classes_threshold`, `backtest_quiet.signal_classes`,
    `backtest_signal_anomaly`); and per evaluated step the series `signals_read`
    computes from the events a cycle evaluating this rule reads then (a threshold's window,
    a rate of change's two windows, an absence rule's 10-second buckets of its window; a
    group without events there is absent from the cycle's read). `cache`: the events, for
    a second replay of the same backtest (a busy rule's, by the minute)."""
    cond = rule.condition
    sk = series_mod.signal_key(fk)
    width = sk.window.total_seconds()
    reach = sk.window  # what a cycle reads before a step
    if cond.type == "rate_of_change":
        reach = 2 * sk.window
    elif cond.type == "anomaly":
        reach = cond.weeks * WEEK + sk.window
    held = (cache or {}).get(("signal", sk))
    if held is not None and held[0] <= steps[0] - reach and steps[-1] <= held[1]:
        groups, first = held[2], held[3]
    else:
        reader = SignalReader(conn, steps[-1])
        frame = reader._read(signal_source(sk), [(steps[0] - reach, steps[-1])])
        groups = reader._groups(sk, frame)
        first = min((float(t.min()) for t in frame.times if len(t)), default=math.inf)
        if cache is not None:
            cache[("signal", sk)] = (steps[0] - reach, steps[-1], groups, first)
    every = (steps[1] - steps[0]).total_seconds() if len(steps) > 1 else 60.0
    at = _epoch_s(steps[0]) + every * np.arange(len(steps))
    # Steps whose read reaches past the family's retention (14 days by default) and before
    # its oldest kept event are not replayed: the rows are gone, and a replay there would
    # only say "no data" (a real gap in newer data is replayed as the cycle saw it)
    days = retention_days(conn).get(_RETAINED.get(sk_family(sk), ""), FOREVER_DAYS)
    kept = _epoch_s(steps[-1] - timedelta(days=days)) + reach.total_seconds()
    gone = (at < kept) & (at < first)
    exact: dict[tuple, np.ndarray] = {}  # a percentile's or extreme's value at each step
    if cond.type == "threshold":
        by_group, empty = signal_classes_threshold(rule, groups, at, limits, exact)
        moved: Any = by_group  # classes in place of points: for_rule only moves them
        keyed: Any = series_mod.for_rule(rule, fk, moved)
        empty[gone] = FALSE
        classes = Classes(rule, {k: c for k, (_dims, c) in keyed.items()}, empty)
    elif cond.type == "anomaly":
        return signal_anomaly_source(rule, fk, steps, groups, at < first)
    else:
        codes: Any = signal_classes(rule, groups, at, limits, reach.total_seconds())
        by_key: Any = {k: c for k, (_dims, c) in series_mod.for_rule(rule, fk, codes).items()}
        empty = np.full(len(steps), TRUE if cond.type == "absence" else NO_DATA, dtype=np.int8)
        empty[gone] = FALSE
        classes = Classes(rule, by_key, empty)
    group_of = _groups_by_key(rule, fk, groups)
    span = reach.total_seconds()
    index = _step_index(steps)

    def series_at(at: datetime, only: Collection[str] | None = None) -> series_mod.Keyed:
        moment, now = at, _epoch_s(at)
        grouped: dict[tuple, Sequence[Point]] = {}
        for values in groups if only is None else (group_of[key] for key in only):
            t, v = groups[values]
            lo = int(np.searchsorted(t, now - span, side="right"))
            hi = int(np.searchsorted(t, now, side="right"))
            if hi == lo:
                continue
            if cond.type == "absence":
                points = signal_buckets(t[lo:hi], moment)
            elif cond.type == "rate_of_change":
                stamps = np.array([now - width, now])
                points = windowed_values(
                    t[lo:hi], v[lo:hi], [moment - sk.window, moment], stamps, sk
                )
            elif values in exact:  # computed already, as `_windowed` computes it
                points = [Point(moment, float(exact[values][index(moment)]))]
            else:
                points = windowed_values(t[lo:hi], v[lo:hi], [moment], np.array([now]), sk)
            if points:
                grouped[values] = points
        return series_mod.for_rule(rule, fk, grouped)

    return series_at, classes


# the table each signal family's events come from (retention's names)
_RETAINED = {"api": "api_timings", "vitals": "web_vitals", "errors": "error_events",
             "spans": "spans", "logs": "log_records"}  # fmt: skip


def _limits(rule: Rule, tz: ZoneInfo) -> list[float]:
    """Every threshold the calendar can make of the rule's value (its peak-season one too)."""
    cond = rule.condition
    limits = [cond.value]
    if rule.wedding_season_adjustment:
        limits.append(season_adjusted_threshold(cond.value, cond.operator, season_strictness(tz)))
    return limits


DISPLAY_POINTS = 1_500


def _bounds_series(
    rule: Rule, bounds: dict[str, Bounds], steps: list[datetime]
) -> list[dict[str, Any]]:
    """For the chart: per key the 1-minute rollups of the rule's aggregation in the range
    (percentiles and last: the minute's largest value), thinned to DISPLAY_POINTS."""
    agg = rule.condition.aggregation
    first = steps[0].timestamp()
    out = []
    for key, b in bounds.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            value = {"avg": b.total / b.n, "sum": b.total, "count": b.n, "min": b.lo}.get(agg, b.hi)
        keep = b.m >= first
        m, x = b.m[keep], value[keep]
        every = max(1, -(-len(m) // DISPLAY_POINTS))
        points = [
            [_EPOCH + timedelta(seconds=t), float(v)]
            for t, v in zip(m[::every].tolist(), x[::every].tolist(), strict=True)
            if v == v
        ]
        out.append({"alert_key": key, "points": points})
    return out or [{"alert_key": "", "points": []}]


def _coarse(rule: Rule, step: timedelta) -> bool:
    """Whether the replay stepped more coarsely than the live cycle would see the rule's
    value change (15 s for raw points and events, else a minute): a breach shorter than
    the step can be missing."""
    return step > (MIN_STEP if live_cadence(rule) else MINUTE)


def backtest(
    conn: Connection,
    rule: Rule,
    *,
    start: datetime,
    end: datetime,
    tz: ZoneInfo,
    skip_quiet: bool = True,
    step: timedelta | None = None,
) -> dict[str, Any]:
    """Transitions the rule would have made in [start, end], per alert key, and its series.

    A composite rule replays its children (read from the database by id) and combines them
    step by step; its series is the number of children holding. `skip_quiet=False`
    evaluates every step (the differential test compares both). `step`: 15, 20 or 30 s or
    whole minutes (default: see the module docstring); the result's `step_seconds` is the
    step used, `coarse` whether it is coarser than the live cycle's view of the rule.
    RuleInvalid (field `step`) for another step or more than MAX_EVERY steps."""
    if rule.condition.type == "external":
        message = "an external rule's alerts come from Prometheus or Grafana: no history to replay"
        raise RuleInvalid([{"field": "condition_config.type", "message": message}])
    if step is not None and not (MIN_STEP <= step and not (MINUTE % step and step % MINUTE)):
        message = (
            f"a step is at least {MIN_STEP.seconds} s and divides a minute or is whole minutes"
        )
        raise RuleInvalid([{"field": "step", "message": message}])
    step_chosen = step is None
    if step is None and rule.condition.type == "composite" and not _children_every_step(conn, rule):
        step = _step(start, end)  # a child stepping coarsely (rate of change): all of them so
    step = step or _step(start, end, rule)
    if (end - start) / step > MAX_EVERY:
        message = f"more than {MAX_EVERY:,} steps: a coarser step or a shorter range"
        raise RuleInvalid([{"field": "step", "message": message}])
    steps = steps_of(start, end, rule, step)
    if not steps:
        return {"step_seconds": step.total_seconds(), "coarse": _coarse(rule, step),
                "evaluated_steps": 0, "fired_count": 0, "fired": [], "events": [],
                "series": []}  # fmt: skip
    events: list[dict[str, Any]] = []
    evaluated = len(steps)
    if rule.condition.type == "promql":
        events, series, evaluated = _promql_replay(conn, rule, steps, tz, skip=skip_quiet)
    elif rule.condition.type == "composite":
        _holds, events, counts, evaluated = _composite_replay(
            conn, rule, steps, tz, depth=1, skip=skip_quiet
        )
        every = max(1, -(-len(steps) // DISPLAY_POINTS))  # thinned for the chart
        points = [[at, float(n)] for at, n in zip(steps[::every], counts[::every], strict=True)]
        series = [{"alert_key": "", "points": points}]
    else:
        limit = _busy_limit(rule) if step_chosen else 0
        cache: dict[Any, Any] = {}
        try:
            events, series, evaluated = _replay(
                conn, rule, steps, tz, skip=skip_quiet, busy_limit=limit, cache=cache
            )
        except _TooBusy as busy:  # busy most of the time: by the minute, else capped steps
            events, series, evaluated, step = _busy_replay(
                conn, rule, start, end, tz, step, busy.by_minute, cache
            )
    fired = [e for e in events if e["notify"] == "firing"]
    return {
        "step_seconds": step.total_seconds(),
        "coarse": _coarse(rule, step),
        "evaluated_steps": evaluated,
        "fired_count": len(fired),
        "fired": fired,
        "events": events,
        "series": series,
    }
