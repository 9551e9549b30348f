"""The alert state machine: `evaluate(rule, series, state, now) -> Decision`, pure.

A condition is checked against a series (points newest last) to give `holds`: True, False or
None (no data). The transition from the instance's current state follows Prometheus: the
condition must hold for `duration_minutes` (pending) before firing; one false evaluation
resolves (or, with `recovery_value`, one evaluation past that value). Whether to notify is
decided here too; silences are applied by the caller, which also stamps `last_notified_at`
only when a notification is really written, so a firing alert silenced until now notifies on
the first evaluation after the silence ends.

No data (Grafana's choices, `condition_config.no_data_state`): `no_data` (default) is its own
state, stamped with when the data stopped and notified once; `ok` resolves; `alerting` treats
it as a breach; `keep_last` keeps the state as it was. A rule that has not seen data since it
was created, enabled or changed, or since evaluation (re)started, records no data without
notifying: its data has not arrived (the caller decides `seen_data`).

`evaluate_keys` decides all keys of one rule evaluation (live cycle and backtest alike). The
live cycle's raw reads come as `Points` views of one `Columns` block per read: a threshold
rule then checks every key's window at once in numpy; keys clear of the threshold whose
instance is not active are `quiet` (nothing moves), keys still firing with a certain breach
are decided from the arrays with the per-key path's own values, and every other key goes
through `evaluate` one by one (tests/test_alerts_vectorised.py compares both paths).
"""

from __future__ import annotations

import bisect
import functools
import math
import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np

from monitoring_core.alerts.rules import OPERATORS, Condition, Rule, compare
from monitoring_core.alerts.signals import counts_zero, is_windowed
from monitoring_core.enums import AlertStatus
from monitoring_core.wedding_calendar import (
    is_peak_season,
    is_wedding_day,
    raise_severity,
    saturday_levels,
    season_adjusted_threshold,
    season_strictness,
)

__all__ = [
    "ACTIVE",
    "AlertState",
    "Check",
    "self_alert_state",
    "Decision",
    "Point",
    "check_condition",
    "data_stopped_at",
    "effective_severity",
    "effective_threshold",
    "evaluate",
    "evaluate_keys",
    "Columns",
    "Evaluated",
    "Points",
    "KeyDecision",
    "Known",
    "robust_z",
    "transition",
    "with_changes",
]

S = AlertStatus
ACTIVE = frozenset({S.PENDING, S.FIRING, S.ACKNOWLEDGED, S.SUPPRESSED, S.NO_DATA})
WEEK = timedelta(days=7)
_HALF_HOUR = timedelta(minutes=30)
# An hour's first minutes have no rolled-up minute of that hour yet (rollups run every 15 s,
# 15 s behind, held up to `rollups.MAX_HOLD` behind an open transaction): an anomaly rule on
# hourly rollups then checks the hour just ended against the same hour of past weeks
# (`series.SeriesReader._hours` reads it), instead of finding no current value and
# notifying "no data" at every hour's start.
HOUR_GRACE = timedelta(minutes=10)
# An anomaly rule's hour so far is its minutes that ended at least this long ago: the rollups
# (every 15 s, 15 s behind) hold them whole by then, and the same minutes of past weeks are
# whole. Counting the current minute's first seconds against whole minutes made every count
# or sum look low.
MINUTE_SETTLED = timedelta(seconds=45)


class Point(NamedTuple):
    """One value of a series (a tuple: a cycle builds a few hundred thousand of them)."""

    time: datetime
    value: float


class Columns:
    """The series of one shared read in arrays (the live cycle's raw-point reads): series `i`
    is rows `starts[i]:starts[i + 1]`, oldest first; row `r` is stamped `stamps[numbers[r]]`
    (`t[r]`: the same instant in µs since the epoch) with value `v[r]`. `memo` keeps the
    window aggregates `evaluate_keys` computed for every series at once, per cycle."""

    __slots__ = ("stamps", "numbers", "t", "v", "starts", "memo")

    def __init__(
        self,
        stamps: Sequence[datetime],
        numbers: np.ndarray,
        t: np.ndarray,
        v: np.ndarray,
        starts: np.ndarray,
    ) -> None:
        self.stamps, self.numbers, self.t, self.v = stamps, numbers, t, v
        self.starts = starts
        self.memo: dict[Any, Any] = {}

    def series(self) -> list[Points]:
        """One view per series."""
        bounds = self.starts.tolist()
        return [Points(self, i, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


class Points(Sequence[Point]):
    """One series of a `Columns` block as a sequence of points, built only when read
    (most keys of a cycle are decided from the arrays and never need them)."""

    __slots__ = ("block", "number", "lo", "hi", "_list")

    def __init__(self, block: Columns, number: int, lo: int, hi: int) -> None:
        self.block, self.number, self.lo, self.hi = block, number, lo, hi
        self._list: list[Point] | None = None

    def points(self) -> list[Point]:
        if self._list is None:
            b, lo, hi = self.block, self.lo, self.hi
            times = map(b.stamps.__getitem__, b.numbers[lo:hi].tolist())
            self._list = list(map(Point._make, zip(times, b.v[lo:hi].tolist(), strict=True)))
        return self._list

    def newest_us(self) -> int:
        """The newest point's time in µs since the epoch (a series is never empty)."""
        return int(self.block.t[self.hi - 1])

    def __len__(self) -> int:
        return self.hi - self.lo

    def __getitem__(self, index: Any) -> Any:
        return self.points()[index]

    def __iter__(self) -> Iterator[Point]:
        return iter(self.points())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Points):
            other = other.points()
        return self.points() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Points({self.points()!r})"


@dataclass(frozen=True)
class AlertState:
    """The mutable fields of one alert instance; `status=None` means no instance yet."""

    status: str | None = None
    pending_since: datetime | None = None
    first_triggered_at: datetime | None = None
    last_triggered_at: datetime | None = None
    trigger_count: int = 0
    resolved_at: datetime | None = None
    acknowledged_at: datetime | None = None
    suppressed_until: datetime | None = None
    last_notified_at: datetime | None = None
    trigger_value: float | None = None
    no_data_since: datetime | None = None  # when the data stopped; set only in no_data


@dataclass(frozen=True)
class Check:
    holds: bool | None
    value: float | None = None
    threshold: float | None = None
    message: str = ""


@dataclass(frozen=True)
class Decision:
    state: AlertState
    check: Check
    severity: str
    from_status: str | None = None  # set (with `state.status`) when the status changed
    notify: str | None = None  # firing|repeat|resolved|no_data

    @property
    def changed(self) -> bool:
        return self.from_status != self.state.status


# ---------------------------------------------------------------- calendar adjustments
def effective_severity(rule: Rule, now: datetime, tz: ZoneInfo) -> str:
    """Saturday raises rules marked `weekend_escalation` (one level unless the calendar `tz`
    says otherwise)."""
    if rule.weekend_escalation and is_wedding_day(now, tz):
        return raise_severity(rule.severity, saturday_levels(tz))
    return rule.severity


def effective_threshold(rule: Rule, now: datetime, tz: ZoneInfo) -> float:
    """The calendar's peak months (default May–October) make thresholds of
    `wedding_season_adjustment` rules stricter (default 20 %)."""
    cond = rule.condition
    if rule.wedding_season_adjustment and is_peak_season(now, tz):
        return season_adjusted_threshold(cond.value, cond.operator, season_strictness(tz))
    return cond.value


# ---------------------------------------------------------------- conditions
_TIME = attrgetter("time")


def _upto(series: Sequence[Point], moment: datetime) -> int:
    """How many points are at or before `moment` (`series` is oldest first)."""
    if series and series[-1].time <= moment:
        return len(series)  # the usual case: nothing newer than now
    return bisect.bisect_right(series, moment, key=_TIME)


def _window(series: Sequence[Point], now: datetime, minutes: float) -> list[Point]:
    """Points in (now − minutes, now]: two binary searches."""
    lo = bisect.bisect_right(series, now - timedelta(minutes=minutes), key=_TIME)
    return list(series[lo : _upto(series, now)])


def _reduce(aggregation: str, values: list[float]) -> float:
    """Combine per-interval values of the window (percentiles: the worst interval's)."""
    if aggregation in ("sum", "count"):
        return math.fsum(values)
    if aggregation == "min":
        return min(values)
    if aggregation == "avg":
        return math.fsum(values) / len(values)
    return max(values)  # max, and p50/p95/p99 conservatively


def _threshold(cond: Condition, series: Sequence[Point], now: datetime, limit: float) -> Check:
    points = _window(series, now, cond.window_minutes)
    if is_windowed(cond.metric):  # each value already covers the window: the newest counts
        points = points[-1:]
        if not points and counts_zero(cond.metric):  # nothing counted: a count of zero
            points = [Point(now, 0.0)]
    if not points:
        return Check(None, None, limit, f"no data in the last {cond.window_minutes:g} min")
    if math.isnan(points[-1].value):  # a windowed signal with fewer events than min_count
        return Check(False, None, limit, f"fewer than {cond.min_count} events in the window")
    value = _reduce(cond.aggregation, [p.value for p in points])
    holds = compare(cond.operator, value, limit)
    return Check(holds, value, limit, f"{cond.aggregation} {value:g} vs {limit:g}")


def _pattern(cond: Condition, series: Sequence[Point], now: datetime, limit: float) -> Check:
    # Counts of matching events: no events is a count of zero, not missing data.
    count = math.fsum(p.value for p in _window(series, now, cond.window_minutes))
    holds = compare(cond.operator, count, limit)
    return Check(holds, count, limit, f"{count:g} matching events in {cond.window_minutes:g} min")


def _absence(cond: Condition, series: Sequence[Point], now: datetime) -> Check:
    seen = _upto(series, now)
    if not seen:
        return Check(True, None, cond.window_minutes, "no data at all")
    silent = (now - series[seen - 1].time).total_seconds() / 60
    holds = silent >= cond.window_minutes
    return Check(holds, silent, cond.window_minutes, f"last data {silent:.1f} min ago")


def _median(values: Sequence[float]) -> float:
    """`statistics.median` (the middle value, or the mean of the middle two), without its
    generic conversions: a third of an anomaly check's time."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def robust_z(value: float, baseline: Sequence[float]) -> float:
    """(value − median) / (1.4826 · MAD); falls back to the mean absolute deviation, and
    to ±inf when the baseline is perfectly flat and the value differs."""
    median = _median(baseline)
    mad = _median([abs(b - median) for b in baseline])
    scale = 1.4826 * mad or 1.2533 * statistics.fmean(abs(b - median) for b in baseline)
    if scale == 0:
        return 0.0 if value == median else math.copysign(math.inf, value - median)
    return (value - median) / scale


@functools.cache
def _current_reach(window_minutes: float) -> timedelta:
    """How old an anomaly rule's current point may be: an hour (or its window) and
    HOUR_GRACE."""
    return timedelta(minutes=max(window_minutes, 60)) + HOUR_GRACE


@functools.cache
def _weeks_back(weeks: int) -> list[tuple[timedelta, timedelta]]:
    """Per week back, how far before the current point its half-hour either side starts
    and ends."""
    return [(k * WEEK + _HALF_HOUR, k * WEEK - _HALF_HOUR) for k in range(1, weeks + 1)]


def _anomaly(cond: Condition, series: Sequence[Point], now: datetime) -> Check:
    # Anomaly series are hourly, stamped with the hour's start: the current hour's point is at
    # most an hour old, however short `window_minutes` is; in an hour's first HOUR_GRACE, with
    # no point of the current hour yet, the hour just ended is the current value.
    upto = _upto(series, now)  # the newest point within the last hour and HOUR_GRACE
    if not upto or series[upto - 1].time <= now - _current_reach(cond.window_minutes):
        return Check(None, None, cond.z_threshold, "no current value")
    current = series[upto - 1]
    baseline: list[float] = []
    for early, late in _weeks_back(cond.weeks):  # sorted: binary search, not a scan per week
        lo = bisect.bisect_right(series, current.time - early, key=_TIME)
        hi = bisect.bisect_left(series, current.time - late, lo, key=_TIME)
        baseline.extend([p.value for p in series[lo:hi]])
    if len(baseline) < cond.min_baseline:
        return Check(None, current.value, cond.z_threshold, "too little history for a baseline")
    z = robust_z(current.value, baseline)
    if cond.direction == "above":
        holds = z > cond.z_threshold
    elif cond.direction == "below":
        holds = z < -cond.z_threshold
    else:
        holds = abs(z) > cond.z_threshold
    return Check(
        holds,
        current.value,
        cond.z_threshold,
        f"z={z:.2f} vs the same part of the hour in past weeks",
    )


def _at_or_before(series: Sequence[Point], moment: datetime) -> Point | None:
    index = _upto(series, moment)
    return series[index - 1] if index else None


def _rate_of_change(cond: Condition, series: Sequence[Point], now: datetime, limit: float) -> Check:
    current = _at_or_before(series, now)
    previous = _at_or_before(series, now - timedelta(minutes=cond.window_minutes))
    if current is None or previous is None or current.time == previous.time:
        return Check(None, None, limit, "not enough points to compare")
    change = current.value - previous.value
    if cond.change_mode == "percent":
        if previous.value == 0:
            change = 0.0 if change == 0 else math.copysign(math.inf, change)
        else:
            change = 100 * change / abs(previous.value)
    holds = compare(cond.operator, change, limit)
    return Check(holds, change, limit, f"change {change:g} over {cond.window_minutes:g} min")


def _composite(cond: Condition, children: Mapping[int, bool | None]) -> Check:
    """Kleene logic: a child with no data makes the result unknown unless others decide it."""
    values = [children.get(rule_id) for rule_id in cond.rules]
    decisive = cond.logic == "or"  # OR is decided by one True, AND by one False
    if decisive in values:
        holds: bool | None = decisive
    elif None in values:
        holds = None
    else:
        holds = not decisive
    return Check(holds, float(sum(v is True for v in values)), float(len(values)), cond.logic)


def check_condition(
    rule: Rule,
    series: Sequence[Point],
    now: datetime,
    *,
    tz: ZoneInfo,
    children: Mapping[int, bool | None] | None = None,
) -> Check:
    """Whether the rule's condition holds now for this series (None: no data)."""
    cond = rule.condition
    limit = effective_threshold(rule, now, tz)
    if cond.type == "threshold":
        return _threshold(cond, series, now, limit)
    if cond.type == "pattern":
        return _pattern(cond, series, now, limit)
    if cond.type == "absence":
        return _absence(cond, series, now)
    if cond.type == "anomaly":
        return _anomaly(cond, series, now)
    if cond.type == "rate_of_change":
        return _rate_of_change(cond, series, now, limit)
    return _composite(cond, children or {})


# ---------------------------------------------------------------- transitions
# Statuses as module constants (an enum member read from its class costs ~10x a global's;
# the transition runs for every alert key of every cycle).
_PENDING, _FIRING, _ACKNOWLEDGED = S.PENDING, S.FIRING, S.ACKNOWLEDGED
_SUPPRESSED, _RESOLVED, _EXPIRED, _NO_DATA = S.SUPPRESSED, S.RESOLVED, S.EXPIRED, S.NO_DATA
_HOLDING = (_FIRING, _ACKNOWLEDGED, _SUPPRESSED)
_new_state = object.__new__


def with_changes(state: AlertState, **changes: Any) -> AlertState:
    """`dataclasses.replace` for AlertState, without its per-field checks (a third of a
    transition's time): a copy of the instance's fields with `changes` applied."""
    fields = state.__dict__.copy()
    fields.update(changes)
    new = _new_state(AlertState)
    new.__dict__.update(fields)
    return new


def _fire(state: AlertState, check: Check, now: datetime) -> AlertState:
    return with_changes(
        state,
        status=_FIRING,
        first_triggered_at=now,
        last_triggered_at=now,
        trigger_count=1,
        resolved_at=None,
        acknowledged_at=None,
        suppressed_until=None,
        last_notified_at=None,
        trigger_value=check.value,
    )


def _start(rule: Rule, state: AlertState, check: Check, now: datetime) -> AlertState:
    if rule.condition.duration_minutes <= 0:
        return _fire(state, check, now)
    return with_changes(state, status=_PENDING, pending_since=now, trigger_value=check.value)


def _still_holding(rule: Rule, state: AlertState, check: Check, now: datetime) -> AlertState:
    status = state.status
    if status == _PENDING:
        due = state.pending_since is None or now - state.pending_since >= timedelta(
            minutes=rule.condition.duration_minutes
        )
        return _fire(state, check, now) if due else with_changes(state, trigger_value=check.value)
    if status == _SUPPRESSED and (state.suppressed_until is None or state.suppressed_until <= now):
        status = _FIRING  # a manual suppression ran out while the condition still holds
    if status in _HOLDING:
        return with_changes(
            state,
            status=status,
            last_triggered_at=now,
            trigger_count=state.trigger_count + 1,
            trigger_value=check.value,
        )
    return _start(rule, state, check, now)  # none, resolved, expired, no_data


def _recovered(rule: Rule, check: Check) -> bool:
    """Hysteresis: with `recovery_value`, the value must also be past it to resolve."""
    cond = rule.condition
    if cond.recovery_value is None or check.value is None:
        return True
    return not compare(cond.operator, check.value, cond.recovery_value)


def _cleared(rule: Rule, state: AlertState, check: Check, now: datetime) -> AlertState:
    if state.status in _HOLDING and not _recovered(rule, check):
        return with_changes(state, trigger_value=check.value)
    if state.status in ACTIVE:
        return with_changes(state, status=_RESOLVED, resolved_at=now, pending_since=None)
    return state


def _notification(rule: Rule, before: AlertState, after: AlertState, now: datetime) -> str | None:
    if after.status == _RESOLVED and before.status != _RESOLVED:
        return "resolved" if before.last_notified_at is not None else None
    if after.status == _EXPIRED and before.status != _EXPIRED:
        return "resolved" if before.last_notified_at is not None else None
    if after.status == _NO_DATA and before.status != _NO_DATA:
        return "no_data"
    if after.status != _FIRING:
        return None
    if after.last_notified_at is None:
        return "firing"
    if now - after.last_notified_at >= timedelta(minutes=rule.repeat_interval_minutes):
        return "repeat"
    return None


def data_stopped_at(rule: Rule, series: Sequence[Point], now: datetime) -> datetime:
    """When the data stopped: the newest point at or before `now`, else the start of the
    window the check found empty (the data stopped at least that long ago). An anomaly
    rule's series holds past weeks' hours too, which say nothing of when the data stopped:
    it found no point for the current hour (in its first HOUR_GRACE, nor for the hour
    before), so the data stopped before that hour (the cycle then dates it by the newest
    stored point)."""
    if rule.condition.type == "anomaly":
        hour = now.replace(minute=0, second=0, microsecond=0)
        return hour if now - hour >= HOUR_GRACE else hour - timedelta(hours=1)
    last = _at_or_before(series, now)
    return last.time if last else now - timedelta(minutes=rule.condition.window_minutes)


def _no_data(
    rule: Rule, state: AlertState, check: Check, now: datetime, stopped: datetime
) -> AlertState:
    """Grafana's choices (`no_data_state`): NoData (default), OK, Alerting, KeepLast."""
    mode = rule.condition.no_data
    if mode == "ok":
        return _cleared(rule, state, check, now)
    if mode == "alerting":
        return _still_holding(rule, state, check, now)
    if mode == "keep_last" or state.status == _NO_DATA:
        return state
    return with_changes(
        state, status=_NO_DATA, pending_since=None, trigger_value=None, no_data_since=stopped
    )


def transition(
    rule: Rule,
    state: AlertState,
    check: Check | None,
    now: datetime,
    *,
    severity: str,
    seen_data: bool = True,
    stopped: datetime | None = None,
) -> Decision:
    """The next state; `check=None` means this group's key was absent from the results.

    `seen_data=False` (the rule has not seen a point since it was created, enabled or
    changed, or since evaluation started): no data is recorded but not notified.
    `stopped` is when the data stopped (`data_stopped_at`; default `now`).
    """
    if check is None:  # an absent key keeps its state quietly until it expires
        after = _expire(rule, state, now)
        notify = _notification(rule, state, after, now) if after.status == _EXPIRED else None
        absent = Check(None, None, None, "series absent")
        return Decision(after, absent, severity, from_status=state.status, notify=notify)
    if check.holds is True:
        after = _still_holding(rule, state, check, now)
    elif check.holds is False:
        after = _cleared(rule, state, check, now)
    else:
        after = _no_data(rule, state, check, now, stopped or now)
    if after.status != _NO_DATA and after.no_data_since is not None:
        after = with_changes(after, no_data_since=None)
    notify = _notification(rule, state, after, now)
    if notify == "no_data" and not seen_data:
        notify = None
    return Decision(after, check, severity, from_status=state.status, notify=notify)


def _expire(rule: Rule, state: AlertState, now: datetime) -> AlertState:
    """A grouped key that stopped reporting expires after `expire_minutes`."""
    last = state.last_triggered_at or state.pending_since
    if state.status not in ACTIVE or last is None:
        return state
    if now - last < timedelta(minutes=rule.condition.expire_minutes):
        return state
    return with_changes(state, status=_EXPIRED, resolved_at=now, pending_since=None)


def evaluate(
    rule: Rule,
    series: Sequence[Point] | None,
    state: AlertState,
    now: datetime,
    *,
    tz: ZoneInfo,
    children: Mapping[int, bool | None] | None = None,
    seen_data: bool = True,
) -> Decision:
    """Check the condition and move the instance's state; `series=None`: key absent.

    `seen_data`: whether the rule has seen data lately (see `transition`); the backtest and
    the rule test replay history, where it has."""
    severity = effective_severity(rule, now, tz)
    if series is None and rule.condition.type != "composite":
        return transition(rule, state, None, now, severity=severity)
    check = check_condition(rule, series or (), now, tz=tz, children=children)
    stopped = data_stopped_at(rule, series or (), now) if check.holds is None else None
    return transition(
        rule, state, check, now, severity=severity, seen_data=seen_data, stopped=stopped
    )


class Known(NamedTuple):
    """What an evaluation knows of an alert key from before: its stored instance."""

    state: AlertState
    severity: str
    dimensions: Mapping[str, Any]


class KeyDecision(NamedTuple):
    key: str
    dimensions: Mapping[str, Any]
    decision: Decision
    present: bool  # the key had series in this evaluation (else: absent or data back)


class Evaluated:
    """What `evaluate_keys` decided. Iterating gives every key's KeyDecision (the backtest
    reads them all); the live cycle reads `moved` (the keys decided one by one) and `quiet`:
    keys found clear of their threshold from arrays, without an active instance — the
    engine's decision for them is to keep the state as it is, with nothing to notify and
    nothing for the caller to store (most keys, most cycles). Iterating decides a quiet key
    one by one after all, so what it yields is exactly the per-key path's decision."""

    __slots__ = ("moved", "quiet", "_again")

    def __init__(
        self,
        moved: list[KeyDecision],
        quiet: list[tuple[str, Mapping[str, Any], Sequence[Point], Known | None]],
        again: Any,
    ) -> None:
        self.moved, self.quiet, self._again = moved, quiet, again

    def __iter__(self) -> Iterator[KeyDecision]:
        yield from self.moved
        for item in self.quiet:
            yield self._again(*item)

    def __len__(self) -> int:
        return len(self.moved) + len(self.quiet)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_KIND = {"sum": "sum", "count": "sum", "avg": "avg", "min": "min"}  # else max (`_reduce`)
_STILL = (_FIRING, _ACKNOWLEDGED)  # holding states a certain breach only counts on


def _epoch_us(moment: datetime) -> int:
    return (moment - _EPOCH) // _US


def _window_values(block: Columns, lo: int, hi: int, kind: str) -> tuple[np.ndarray, ...]:
    """Every series' `_reduce` over its points in (lo, hi] (µs) at once: (values, a bound on
    their rounding error, the window's first row, its number of rows); values NaN where the
    window is empty or holds a non-finite value (those keys are decided one by one). Kept on
    the block: rules sharing a read share the work."""
    memo = (lo, hi, kind)
    if memo in block.memo:
        return block.memo[memo]
    heads = block.starts[:-1]
    inside = (block.t > lo) & (block.t <= hi)
    finite = np.isfinite(block.v)
    count = np.add.reduceat(inside.astype(np.int64), heads)
    bad = np.add.reduceat((inside & ~finite).astype(np.int64), heads) > 0
    used = inside & finite
    if kind in ("sum", "avg"):
        x = np.where(used, block.v, 0.0)
        values, slack = np.add.reduceat(x, heads), np.add.reduceat(np.abs(x), heads)
        if kind == "avg":
            values, slack = values / np.maximum(count, 1), slack / np.maximum(count, 1)
    elif kind == "min":
        values = np.minimum.reduceat(np.where(used, block.v, np.inf), heads)
        slack = np.abs(values)
    else:
        values = np.maximum.reduceat(np.where(used, block.v, -np.inf), heads)
        slack = np.abs(values)
    values[(count == 0) | bad] = np.nan
    first = heads + np.add.reduceat((block.t <= lo).astype(np.int64), heads)
    block.memo[memo] = values, slack, first, count
    return values, slack, first, count


def _series_numbers(
    keyed: Mapping[str, tuple[Mapping[str, Any], Sequence[Point]]],
) -> tuple[Columns, np.ndarray] | None:
    """The block every series of `keyed` is a view of, and their numbers in it (None: not
    all views of one block, or a block with an empty series, which reduceat cannot take).
    Kept on the block with `keyed` itself (the rules cutting a read alike share one)."""
    first = next(iter(keyed.values()))[1]
    if type(first) is not Points:
        return None
    block = first.block
    held = block.memo.get(("numbers", id(keyed)))
    if held is not None and held[0] is keyed:  # holding `keyed` keeps its id its own
        return block, held[1]
    if "whole" not in block.memo:
        starts = block.starts
        block.memo["whole"] = bool(len(block.t)) and not bool((starts[1:] <= starts[:-1]).any())
    if not block.memo["whole"]:
        return None
    numbers = []
    for _dims, points in keyed.values():
        if type(points) is not Points or points.block is not block:
            return None
        numbers.append(points.number)
    index = np.asarray(numbers, dtype=np.int64)
    block.memo["numbers", id(keyed)] = keyed, index
    return block, index


def _threshold_from_arrays(
    rule: Rule, keyed: Mapping[str, tuple[Mapping[str, Any], Sequence[Point]]], now: datetime,
    limit: float,
) -> tuple[list[int], list[int], list[int]] | None:  # fmt: skip
    """Per key of `keyed` (in order): 1 if its threshold check certainly gives False, 2 if
    certainly True, 0 if unsure, computed from the arrays of one `Columns` block; and the
    first row and row count of each key's window (None: not all keys are views of one
    block, or not a plain threshold rule). A value within rounding distance of the limit
    (1e-9 of the values' magnitude) is not certain: the per-key path decides it exactly."""
    cond = rule.condition
    if cond.type != "threshold" or is_windowed(cond.metric) or not keyed:
        return None
    found = _series_numbers(keyed)
    if found is None:
        return None
    block, index = found
    hi = _epoch_us(now)
    lo = _epoch_us(now - timedelta(minutes=cond.window_minutes))
    kind = _KIND.get(cond.aggregation, "max")
    memo = ("keys", id(keyed), lo, hi, kind)  # rules cutting a read alike, one window
    held = block.memo.get(memo)
    if held is None or held[0] is not keyed:
        values, slack, first, count = _window_values(block, lo, hi, kind)
        x = values[index]
        held = (keyed, x, np.isnan(x), 1e-9 * slack[index], first[index].tolist(),
                count[index].tolist())  # fmt: skip
        block.memo[memo] = held  # holding `keyed` keeps its id its own
    _keyed, x, unknown, slack, firsts, counts = held
    with np.errstate(invalid="ignore"):
        holds = OPERATORS[cond.operator](x, limit)
        sure = ~unknown & (np.abs(x - limit) > slack + 1e-9 * abs(limit))
    codes = np.where(sure, np.where(holds, 2, 1), 0)
    return codes.tolist(), firsts, counts


def _still_firing(
    rule: Rule,
    key: str,
    dims: Mapping[str, Any],
    block: Columns,
    rows: tuple[int, int],
    state: AlertState,
    now: datetime,
    limit: float,
    severity: str,
) -> KeyDecision:
    """The per-key path's decision for a key still firing (or acknowledged) whose threshold
    certainly holds (`_threshold`, then `_still_holding`), its value computed as `_reduce`
    does from the window's rows (`rows`: first row, count)."""
    agg = rule.condition.aggregation
    lo, n = rows
    window = block.v[lo : lo + n].tolist()
    value = _reduce(agg, window)
    check = Check(True, value, limit, f"{agg} {value:g} vs {limit:g}")
    after = with_changes(
        state,
        last_triggered_at=now,
        trigger_count=state.trigger_count + 1,
        trigger_value=value,
    )
    notify = _notification(rule, state, after, now)
    decision = Decision(after, check, severity, from_status=state.status, notify=notify)
    return KeyDecision(key, dims, decision, True)


def evaluate_keys(
    rule: Rule,
    keyed: Mapping[str, tuple[Mapping[str, Any], Sequence[Point]]],
    known: Mapping[str, Known],
    now: datetime,
    *,
    tz: ZoneInfo,
    children: Mapping[int, bool | None] | None = None,
    seen_data: bool = True,
) -> Evaluated:
    """One evaluation of a rule over all of its alert keys: the live cycle and the backtest
    both go through here, so they decide alike.

    `keyed`: this evaluation's series per alert key (key -> (dimensions, points)); `known`:
    the keys with an instance. A rule without group_by has the one key ""; a grouped rule
    that found no series at all evaluates the key "" on no data (and that instance clears
    when series come back); a known key missing from `keyed` is absent (it expires after
    `expire_minutes`).

    A threshold rule whose series are views of one `Columns` block (the live cycle's raw
    reads) is checked for all keys at once in numpy; a key clear of its threshold whose
    instance is not active (none, resolved or expired, same severity) keeps its state and is
    listed in `quiet`; every other key is decided one by one (`evaluate`)."""
    grouped = bool(rule.condition.group_by)
    if not grouped or not keyed:
        keyed = {"": keyed.get("", ({}, []))} if not grouped else {"": ({}, [])}

    def again(
        key: str, dims: Mapping[str, Any], points: Sequence[Point], before: Known | None
    ) -> KeyDecision:
        state = before.state if before is not None else AlertState()
        if type(points) is Points:
            points = points.points()
        decision = evaluate(rule, points, state, now, tz=tz, children=children, seen_data=seen_data)
        return KeyDecision(key, dims, decision, True)

    moved: list[KeyDecision] = []
    quiet: list[tuple[str, Mapping[str, Any], Sequence[Point], Known | None]] = []
    limit = effective_threshold(rule, now, tz)
    found = _threshold_from_arrays(rule, keyed, now, limit)
    if found is None:
        for key, (dims, points) in keyed.items():
            moved.append(again(key, dims, points, known.get(key)))
    else:
        severity = effective_severity(rule, now, tz)
        codes, firsts, counts = found
        for (key, (dims, points)), code, first, n in zip(
            keyed.items(), codes, firsts, counts, strict=True
        ):
            before = known.get(key)
            if code == 1 and (
                before is None
                or (
                    before.state.status not in ACTIVE
                    and before.state.no_data_since is None
                    and before.severity == severity
                )
            ):
                quiet.append((key, dims, points, before))
            elif (
                code == 2
                and before is not None
                and before.state.status in _STILL
                and before.state.no_data_since is None
            ):
                block = points.block  # type: ignore[attr-defined]
                state = before.state
                moved.append(
                    _still_firing(rule, key, dims, block, (first, n), state, now, limit, severity)
                )
            else:
                moved.append(again(key, dims, points, before))
    for key, before in known.items():
        if key in keyed:
            continue
        if key == "" and grouped:  # the "no data at all" instance: data came back
            check = Check(False, None, None, "data is back")
            decision = transition(rule, before.state, check, now, severity=before.severity)
        else:
            decision = evaluate(rule, None, before.state, now, tz=tz)
        moved.append(KeyDecision(key, before.dimensions, decision, False))
    return Evaluated(moved, quiet, again)


def self_alert_state(firing: bool, previous: Mapping[str, Any] | None, now: datetime) -> AlertState:
    """The state of a built-in alert the system raises itself (a failing channel or job):
    firing and notified at `now`, or resolved at `now` keeping when it first fired."""
    if firing:
        return AlertState(
            status="firing",
            first_triggered_at=now,
            last_triggered_at=now,
            trigger_count=1,
            last_notified_at=now,
        )
    first = previous["first_triggered_at"] if previous else None
    return AlertState(status="resolved", resolved_at=now, first_triggered_at=first)
