"""A busy rule's replay key by key: the engine asked only where one instance may change.

The step-by-step replay (`backtest._replay`) evaluates every step where some key's class
(`backtest_kinds.Classes`) changes, for every key that may change there. A rule that flaps
(a rate of change within the noise, an anomaly rule with a low z) changes class at most
steps, so that loop ends up evaluating tens of thousands of steps with all their keys.

Alert keys are independent in a cycle (`engine.evaluate_keys` decides each on its own
series; the key "" of a grouped rule, "no series at all", depends only on whether any key is
present), so here each key is replayed on its own: its instance is decided by the engine
(`engine.evaluate` on the series the cycle would have read, or the "data is back" transition
of the key "") at the first step of each run of one class, and inside a run only where the
instance may change:
- True while pending: where its duration has passed; while firing: where a repeat
  notification falls due (between those the engine only counts it as triggered again with
  the step's value, which is done here as `Classes.hold_run` does);
- False, no data, absent: not again while the instance keeps its status
  (`Classes._keeps`); an absent active instance where `expire_minutes` have passed since it
  last triggered;
- unsure, or a class that does not keep the instance as it is (a firing instance not yet
  past its `recovery_value`, `no_data: alerting`): every step.
Events are those `_replay` records (a status change or a notification), ordered by time and
key. Used when a rule is busier than `backtest.BUSY_LIMIT` steps and its source can build
any step's series for any key (`StepSeries`), in place of stepping coarsely.

Where a source's `Classes.exact` says its values are those the engine's check takes from the
series it builds (an anomaly rule on a metric: the current point), a step whose check
certainly holds or not is decided by `engine.transition` on that value, without building the
series (`test_backtest_runs.py` checks every such step against `engine.evaluate`).
"""

from __future__ import annotations

import bisect
import gc
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from monitoring_core.alerts.backtest_kinds import ABSENT, FALSE, TRUE, Classes, StepSeries, compact
from monitoring_core.alerts.engine import (
    ACTIVE,
    AlertState,
    Check,
    Decision,
    effective_severity,
    effective_threshold,
    evaluate,
    transition,
    with_changes,
)
from monitoring_core.alerts.rules import Rule
from monitoring_core.enums import AlertStatus

__all__ = ["event", "replay_by_key"]

_BACK = Check(False, None, None, "data is back")


def _notified(decision: Decision, at: datetime) -> AlertState:
    """The instance as the cycle stores it (`backtest._after`)."""
    if decision.notify in ("firing", "repeat", "no_data"):
        return with_changes(decision.state, last_notified_at=at)
    return decision.state


class _Key:
    """One alert key's classes over the steps, and how to ask the engine at a step."""

    def __init__(
        self, key: str, found: np.ndarray, decide: Callable[[int, AlertState], Decision]
    ) -> None:
        self.key, self.found, self.decide = key, compact(found, "b"), decide
        change = np.flatnonzero(found[1:] != found[:-1]) + 1
        self.heads = compact(np.r_[change, len(found)], "q")  # each run's next step


def _replay_key(
    rule: Rule, classes: Classes, one: _Key, steps: Sequence[datetime], tz: ZoneInfo
) -> Iterator[tuple[int, Decision]]:
    """The engine's decisions for one key that change its instance or notify, with their
    step; `classes.values` give the value a held instance takes between them."""
    expire = timedelta(minutes=rule.condition.expire_minutes)
    found, heads, decide = one.found, one.heads, one.decide  # locals: the loop is hot
    keeps, holding, run_after = classes.keeps, classes._holding, bisect.bisect_right
    state, n, i = AlertState(), len(steps), 0
    while i < n:
        c, end = found[i], heads[run_after(heads, i)]
        if c != TRUE and keeps(c, state, steps[i]):
            i = end  # False, no data or absent while its status stays as it is
            continue
        decision = decide(i, state)
        if decision.changed or decision.notify:
            if decision.state.status is not None:
                yield i, decision
        state = _notified(decision, steps[i])
        nxt = i + 1
        if nxt >= end:
            i = nxt
            continue
        if c == TRUE and holding(state, steps[nxt]):
            # held until its duration passes, or a repeat falls due: moved as the engine
            # moves it (`engine._still_holding`)
            if state.status == AlertStatus.PENDING:
                assert state.pending_since is not None
                due = state.pending_since + classes.duration
            elif state.status == AlertStatus.FIRING:
                assert state.last_notified_at is not None
                due = state.last_notified_at + classes.repeat
            else:  # acknowledged: held for the run
                due = steps[end - 1] + timedelta(microseconds=1)
            j = bisect.bisect_left(steps, due, nxt, end)
            if j > nxt:
                value = classes.value(one.key, j - 1)
                if state.status == AlertStatus.PENDING:
                    state = with_changes(state, trigger_value=value)
                else:
                    state = with_changes(
                        state,
                        last_triggered_at=steps[j - 1],
                        trigger_count=state.trigger_count + j - nxt,
                        trigger_value=value,
                    )
            i = j
        elif c == ABSENT and state.status in ACTIVE:
            last = state.last_triggered_at or state.pending_since
            i = end if last is None else bisect.bisect_left(steps, last + expire, nxt, end)
        elif c != TRUE and keeps(c, state, steps[nxt]):
            i = end  # False, no data or absent while its status stays as it is
        else:
            i = nxt  # unsure, or a class that moves the instance: the engine, step by step


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while a key is replayed: its states and decisions
    hold no cycles, and the collector's passes over the events kept so far (a flapping rule
    has 100,000 of them) took a third of the replay's time (bench/backtest.py)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def event(at: datetime, alert_key: str, decision: Decision) -> dict[str, Any]:
    """A decision that changed an instance or notified, as the backtest answers it; statuses
    as plain strings (an enum member is tracked by the cyclic collector, and so then is
    each of a flapping rule's 200,000 events: a 70 ms pass when the replay ends)."""
    before, after = decision.from_status, decision.state.status
    return {
        "time": at,
        "alert_key": alert_key,
        "from_status": None if before is None else str(before),
        "to_status": None if after is None else str(after),
        "notify": decision.notify,
        "value": decision.check.value,
        "threshold": decision.check.threshold,
    }


def _threshold(rule: Rule, at: datetime, tz: ZoneInfo) -> float:
    """The threshold `engine.check_condition` reports for a check at `at` that found a value
    (an anomaly rule's z, else the calendar's threshold)."""
    if rule.condition.type == "anomaly":
        return rule.condition.z_threshold
    return effective_threshold(rule, at, tz)


def replay_by_key(
    rule: Rule, classes: Classes, pick: StepSeries, steps: list[datetime], tz: ZoneInfo
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """The events `backtest._replay` finds, key by key (module docstring); the chart's
    series from `classes.values`; how many evaluations the engine made."""
    grouped, asked = classes.grouped, [0]
    present = np.zeros(len(steps), dtype=bool)
    for found in classes.keys.values():
        present |= found != ABSENT

    # the calendar's threshold and severity, per step only where the rule follows it
    fixed_limit = None if rule.wedding_season_adjustment else _threshold(rule, steps[0], tz)
    fixed_severity = None if rule.weekend_escalation else rule.severity

    def deciding(key: str) -> Callable[[int, AlertState], Decision]:
        found_of, values = classes.keys.get(key), classes.values.get(key)
        exact = classes.exact and found_of is not None and values is not None
        codes = compact(found_of, "b") if exact and found_of is not None else []
        checked = compact(values, "d") if exact and values is not None else []
        refine = classes.value_at

        def decide(i: int, state: AlertState) -> Decision:
            asked[0] += 1
            at = steps[i]
            if exact:  # the check's outcome and value known: the engine's transition
                c, value = codes[i], checked[i]
                if (c == TRUE or c == FALSE) and value == value:
                    if refine is not None:  # within rounding of it: the engine's value
                        value = refine(key, i)
                    limit = _threshold(rule, at, tz) if fixed_limit is None else fixed_limit
                    severity = fixed_severity or effective_severity(rule, at, tz)
                    check = Check(c == TRUE, value, limit)
                    return transition(rule, state, check, at, severity=severity)
            if grouped and key == "":  # no series at all, or "data is back"
                if present[i]:
                    severity = effective_severity(rule, at, tz)
                    return transition(rule, state, _BACK, at, severity=severity)
                return evaluate(rule, [], state, at, tz=tz)
            # a rule without group_by: every series the source has is its key's
            found = (pick(at, [key]) if grouped else pick(at)).get(key)
            if found is None:
                return evaluate(rule, None if grouped else [], state, at, tz=tz)
            return evaluate(rule, found[1], state, at, tz=tz)

        return decide

    keys = [_Key(k, f, deciding(k)) for k, f in classes.keys.items()]
    if grouped:  # the key "": its class where no key is present, False where some are
        nothing = np.where(present, FALSE, classes.empty).astype(np.int8)
        keys.append(_Key("", nothing, deciding("")))
    found_events, order = [], array("q")  # events, and their step and key as one number
    with _collector_paused():
        for n, one in enumerate(keys):
            for i, d in _replay_key(rule, classes, one, steps, tz):
                found_events.append(event(steps[i], one.key, d))
                order.append(i * len(keys) + n)
        # by step, then key (as `backtest._replay` records them)
        events = [found_events[k] for k in np.argsort(order, kind="stable").tolist()]
        del found_events  # (not walked again when the collector resumes)
        chart = _chart(classes, steps)  # (paused too: a pass over the events costs more)
    return events, chart, asked[0]


DISPLAY_POINTS = 1_500


def _chart(classes: Classes, steps: list[datetime]) -> list[dict[str, Any]]:
    """Per key its values where its check gave one, thinned to DISPLAY_POINTS (`_thinned`)."""
    out = []
    for key, values in classes.values.items():
        found = classes.keys.get(key)
        keep = ~np.isnan(values)
        if found is not None:
            keep &= found != ABSENT
        index = _thinned(np.flatnonzero(keep), values)
        out.append({"alert_key": key, "points": [[steps[k], float(values[k])] for k in index]})
    return out or [{"alert_key": "", "points": []}]


def _thinned(index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """At most DISPLAY_POINTS of `index`: per run of consecutive ones, its lowest and highest
    value (a breach of a few minutes in 90 days stays on the chart, as Grafana's min/max
    downsampling keeps it; every n-th point used to drop it)."""
    every = -(-len(index) // (DISPLAY_POINTS // 2))
    if every <= 1:
        return index
    v = values[index]
    rows = -(-len(v) // every)
    flat = np.full(rows * every, np.nan)
    flat[: len(v)] = v
    table = flat.reshape(rows, every)
    start = np.arange(rows) * every
    picked = np.r_[start + np.nanargmin(table, axis=1), start + np.nanargmax(table, axis=1)]
    return index[np.unique(picked)]
