"""The differential test's moves shared by the backtest tests of signal, regression and
anomaly rules: save rules, run committed live cycles, replay, compare."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, text, update

from monitoring_core.alerts import series as series_mod
from monitoring_core.alerts.backtest import backtest, every_step, live_cadence, steps_of
from monitoring_core.alerts.backtest_quiet import FALSE, TRUE, Bounds, read_bounds
from monitoring_core.alerts.engine import check_condition
from monitoring_core.alerts.rules import Rule, rule_from_row
from monitoring_core.alerts.store import get_rule
from monitoring_core.partitions import ensure_partitions
from monitoring_core.rollups import run_rollups
from monitoring_core.schema import alert_rules
from tests.alerting_support import channel, threshold_rule
from tests.rollup_fixtures import add_points, add_series
from tests.test_backtest_live import TZ, ordered
from tests.test_backtest_live_kinds import _live, _told

MIN = timedelta(minutes=1)


def add_latency(
    engine: Engine,
    first: datetime,
    now: datetime,
    regions: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    """`latency` points per region (seconds after `first`, values), rolled up at `now`."""
    with engine.begin() as conn:
        ensure_partitions(conn, start=first, end=now, tables=("metric_points",))
        for region, (at, values) in regions.items():
            points = [(first + timedelta(seconds=float(t)), float(v))
                      for t, v in zip(at.tolist(), values.tolist(), strict=True)]  # fmt: skip
            add_points(conn, add_series(conn, "latency", {"region": region}), points,
                       ingested_at=first)  # fmt: skip
    run_rollups(engine, now, safety_lag=timedelta(0))


def spied(monkeypatch: Any, module: Any, name: str) -> list[Any]:
    """What each call of `module.name` returned (the real function, recorded)."""
    results: list[Any] = []
    real = getattr(module, name)

    def recorded(*args: Any, **kwargs: Any) -> Any:
        results.append(real(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(module, name, recorded)
    return results


def drop_raw_before(engine: Engine, moment: datetime) -> None:
    """Retention took the raw points before `moment` (their rollups stay)."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM metric_points WHERE time < :t"), {"t": moment})


def minute_rule(
    conn: Connection, rule_id: int, start: datetime, end: datetime
) -> tuple[Rule, series_mod.FetchKey, list[datetime], dict[tuple, Bounds]]:
    """A saved metric rule, its read's key, the steps of [start, end] every 15 s and the
    1-minute rollups a backtest reads for them."""
    rule = rule_from_row(get_rule(conn, rule_id=rule_id))
    fk = series_mod.fetch_key(rule)
    assert fk is not None
    steps = steps_of(start, end, rule, timedelta(seconds=15))
    reach = series_mod.lookback(rule) + 2 * MIN
    return rule, fk, steps, read_bounds(conn, fk, steps[0] - reach, steps[-1])


def engine_agrees(
    rule: Rule, at: datetime, series: Any, codes: dict[str, Any], i: int, value: Any
) -> int:
    """At step `i` (`at`): wherever a key's class is False or True, the engine's own check on
    the series built for it gives that outcome and the value `value(key, i)`; how many such
    keys."""
    checked = 0
    for key, found in codes.items():
        if found[i] not in (FALSE, TRUE):
            continue
        check = check_condition(rule, series[key][1], at, tz=TZ)
        assert check.holds == (found[i] == TRUE), (rule.id, key, at)
        assert check.value == value(key, i), (rule.id, key, at)
        checked += 1
    return checked


def silent_six_minutes(at: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Without the points of minutes 52 to 58: a region's instances are absent, then back."""
    keep = (at < 52 * 60) | (at >= 58 * 60)
    return at[keep], values[keep]


def saved_rules(
    engine: Engine, start: datetime, rules: dict[str, dict[str, Any]], repeat_minutes: int
) -> dict[str, int]:
    """The rules saved (a webhook nobody answers), as having seen data before `start`."""
    with engine.begin() as conn:
        hook = channel(conn, "json://127.0.0.1:9/never-delivered")
        ids = {name: threshold_rule(conn, start, alert_name=name, cfg=cfg,
                                    notification_channels=[hook],
                                    repeat_interval_minutes=repeat_minutes)
               for name, cfg in rules.items()}  # fmt: skip
        conn.execute(update(alert_rules).values(data_seen_at=start - MIN))
    return ids


def replayed_as_live(
    engine: Engine, ids: dict[str, int], start: datetime, end: datetime,
    step: timedelta | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[int, list]]:  # fmt: skip
    """Committed live cycles every `step` (None: 15 s) over [start, end], then each rule's
    backtest of the range at `step` (None: its default, the live cadence): the same
    status changes and notifications, and the same events with nothing skipped. Returns
    each rule's replay and the live status changes per rule id."""
    changes, notified = _live(engine, ids, start, end, step or timedelta(seconds=15))
    replays = {}
    with engine.connect() as conn:
        for name, rule_id in ids.items():
            rule = rule_from_row(get_rule(conn, rule_id=rule_id))
            assert every_step(rule), name
            replay = backtest(conn, rule, start=start, end=end, tz=TZ, step=step)
            every = backtest(conn, rule, start=start, end=end, tz=TZ, step=step, skip_quiet=False)
            cadence = 15 if live_cadence(rule) else 60  # raw points, events; else rollups
            assert step is not None or replay["step_seconds"] == cadence, name
            assert step is not None or not replay["coarse"], name
            assert ordered(replay["events"]) == ordered(every["events"]), name
            replayed, sent = _told(replay)
            assert replayed == changes[rule_id], name
            assert sent == notified[rule_id], name
            replays[name] = {**replay, "every_step_evaluated": every["evaluated_steps"]}
    return replays, changes
