"""A firing instance whose check certainly holds is moved without asking the engine
(`backtest_kinds.Classes.hold_run`): it must end as the engine's own transitions leave it,
step by step, and the run must stop where a repeat notification is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from monitoring_core.alerts.backtest_kinds import FALSE, TRUE, UNSURE, Classes
from monitoring_core.alerts.engine import AlertState, Check, Known, transition
from monitoring_core.alerts.rules import Rule, rule_from_row
from monitoring_core.enums import AlertStatus

TZ = ZoneInfo("Europe/London")
T0 = datetime(2026, 6, 6, 9, 0, tzinfo=UTC)  # a Saturday: the escalated severity
MIN = timedelta(minutes=1)


def _rule(**extra: object) -> Rule:
    cfg = {"type": "anomaly", "metric": "orders", "group_by": ["region"]}
    row = {"id": 1, "alert_name": "orders", "severity_level": "high", "condition_config": cfg,
           "repeat_interval_minutes": 20, "weekend_escalation": True, **extra}  # fmt: skip
    return rule_from_row(row)


def test_a_held_run_leaves_the_instance_as_the_engine_would_and_stops_at_a_repeat() -> None:
    rule = _rule()
    steps = [T0 + i * MIN for i in range(60)]
    codes = np.array([UNSURE] + [TRUE] * 49 + [FALSE] * 10, dtype=np.int8)
    values = np.linspace(100.0, 159.0, 60)
    classes = Classes(rule, {"region=a": codes}, np.full(60, FALSE, np.int8),
                      {"region=a": values})  # fmt: skip
    fired = AlertState(status=AlertStatus.FIRING, first_triggered_at=T0, last_triggered_at=T0,
                       trigger_count=1, last_notified_at=T0, trigger_value=100.0)  # fmt: skip
    known = {"region=a": Known(fired, "critical", {"region": "a"})}
    # the engine, step by step, from the same instance
    state = fired
    for at, value in zip(steps[1:20], values[1:20], strict=True):
        decision = transition(rule, state, Check(True, float(value), 3.0, "z"), at,
                              severity="critical")  # fmt: skip
        assert not decision.changed and decision.notify is None
        state = decision.state
    assert classes.steady(1, known, steps[1])
    end = classes.steady_until(1, known, steps)
    assert end == 20  # 09:20: a repeat is due, which the engine must decide
    run = dict(classes.hold_run(1, end, known, steps, "critical"))
    assert known["region=a"].state == state
    assert run["region=a"] == [
        [at, float(v)] for at, v in zip(steps[1:20], values[1:20], strict=True)
    ]
    assert classes.holds(5) is True
    # the repeat step is not steady; a resolved or pending instance never is
    assert not classes.steady(20, known, steps[20])
    for status in (AlertStatus.PENDING, AlertStatus.RESOLVED):
        other = {"region=a": Known(AlertState(status=status), "critical", {"region": "a"})}
        assert not classes.steady(5, other, steps[5])
    # a grouped step with the key held is left out of the engine's keys
    wanted, left_out, held = classes.needed(5, known, steps[5])
    assert (wanted, left_out, held) == (None, False, [])  # nothing else to evaluate


def test_the_class_changes_end_a_run() -> None:
    rule = _rule()
    steps = [T0 + i * MIN for i in range(10)]
    a = np.array([TRUE] * 4 + [UNSURE] + [TRUE] * 5, dtype=np.int8)
    b = np.array([FALSE] * 3 + [TRUE] * 7, dtype=np.int8)
    classes = Classes(rule, {"region=a": a, "region=b": b}, np.full(10, FALSE, np.int8))
    fired = AlertState(status=AlertStatus.FIRING, last_triggered_at=T0, trigger_count=1,
                       last_notified_at=T0)  # fmt: skip
    known = {"region=a": Known(fired, "high", {"region": "a"})}
    assert classes.steady(0, known, steps[0])
    assert classes.steady_until(0, known, steps) == 3  # b's class changes at 3
    wanted, left_out, held = classes.needed(3, known, steps[3])
    assert (wanted, left_out, held) == (["region=b"], False, ["region=a"])


def test_a_pending_instance_is_held_until_its_duration_passes_as_the_engine_holds_it() -> None:
    rule = _rule(condition_config={"type": "anomaly", "metric": "orders",
                                   "group_by": ["region"], "duration_minutes": 5})  # fmt: skip
    steps = [T0 + i * MIN for i in range(12)]
    values = np.linspace(200.0, 211.0, 12)
    classes = Classes(rule, {"region=a": np.full(12, TRUE, np.int8)}, np.full(12, FALSE, np.int8),
                      {"region=a": values})  # fmt: skip
    pending = AlertState(status=AlertStatus.PENDING, pending_since=T0, first_triggered_at=T0,
                         last_triggered_at=T0, trigger_count=1, trigger_value=200.0)  # fmt: skip
    known = {"region=a": Known(pending, "critical", {"region": "a"})}
    state = pending
    for at, value in zip(steps[1:5], values[1:5], strict=True):
        decision = transition(rule, state, Check(True, float(value), 3.0, "z"), at,
                              severity="critical")  # fmt: skip
        assert decision.state.status == AlertStatus.PENDING and decision.notify is None
        state = decision.state
    assert classes.steady(1, known, steps[1])
    assert classes.steady_until(1, known, steps) == 5  # 09:05: due, the engine fires it
    dict(classes.hold_run(1, 5, known, steps, "critical"))
    assert known["region=a"].state == state  # only the value moved
    assert not classes.steady(5, known, steps[5])
    fired = transition(rule, state, Check(True, float(values[5]), 3.0, "z"), steps[5],
                       severity="critical")  # fmt: skip
    assert fired.state.status == AlertStatus.FIRING and fired.notify == "firing"
