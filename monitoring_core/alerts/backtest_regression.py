"""The p95 regression signal (`api.p95_regression`) at every step of a backtest, read once.

A cycle at `now` asks `performance.queries.regression_flags`: per endpoint, the p95 of the
1-minute API rollups with a bucket in [now − 1 h, now), over the p95 of the same windows 1
to `weeks` weeks earlier merged, listed when both sides have at least 20 requests and the
ratio is finite (`signals_read.SignalReader._flags`); a group's value is the largest ratio
of its endpoints. Asking that query at each of 518,400 steps would take hours, and the
backtest used to ask it at 96 moments of the range and carry each answer forward (90 days:
one answer a day).

Here the flags of every minute of the range are computed at once from the API rollups read
once (`performance.regression_steps`): the windows a step sees change only on whole minutes
(every step in (M, M + 1 min] sees the buckets M − 59 … M), bit for bit what the query
gives.

What each key's check then gives is known at every step (absent, False or True; unsure
only where the wedding season's threshold differs from the rule's, which the engine
decides), so the replay evaluates only the steps where that changes (`backtest_kinds.
Classes`). What the replay cannot know here is what `regression_flags` could not know
either: a minute's rollup still being written when a live cycle read it.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection

from monitoring_core.alerts import series as series_mod
from monitoring_core.alerts.backtest_change import _change_series, _Point
from monitoring_core.alerts.backtest_kinds import (
    Classes,
    Source,
    _breach,
    _clear,
    _groups_by_key,
    _step_index,
    _step_us,
)
from monitoring_core.alerts.backtest_quiet import ABSENT, FALSE, NO_DATA, TRUE, UNSURE
from monitoring_core.alerts.engine import Point
from monitoring_core.alerts.rules import Rule
from monitoring_core.alerts.signals_read import group_ratios

__all__ = ["regression_change_source", "regression_rule_source", "regression_source"]


def regression_change_source(
    conn: Connection, rule: Rule, fk: series_mod.FetchKey, steps: list[datetime],
    limits: list[float],
) -> Source:  # fmt: skip
    """A rate of change rule on `api.p95_regression`: a cycle at `now` reads each group's
    value at `now − window` and at `now` (`SignalReader.stamps`), each stamped so; the
    engine compares the newest point at or before each moment
    (`backtest_change._change_series`: the same change, bit for bit, at every step)."""
    at = _step_us(steps) / 1e6
    before = at - rule.condition.window_minutes * 60.0
    both = group_ratios(conn, np.concatenate([before, at]), fk.dims, rule.condition.weeks)
    per_group = {}
    for g, ratio in both.items():
        then, now = ratio[: len(at)], ratio[len(at) :]
        listed_now, listed_then = ~np.isnan(now), ~np.isnan(then)
        current, previous = _Point(len(at)), _Point(len(at))
        # the newest point at or before `now`: the one at `now`, else the one before
        current.found = listed_now | listed_then
        current.value = np.where(listed_now, now, then)
        current.stamp = np.where(listed_now, at, np.where(listed_then, before, np.nan))
        previous.found, previous.value = listed_then, then
        previous.stamp = np.where(listed_then, before, np.nan)
        per_group[g] = (current, previous)
    pick, codes, values = _change_series(rule, fk, per_group, steps, limits)
    empty = np.full(len(steps), NO_DATA, dtype=np.int8)
    return pick, Classes(rule, codes, empty, values, exact=True)


def regression_source(
    conn: Connection, rule: Rule, fk: series_mod.FetchKey, steps: list[datetime],
    limits: list[float],
) -> Source:  # fmt: skip
    """A threshold rule on `api.p95_regression`: per step the series a cycle's read gives
    (each group's largest listed ratio, stamped with the step) and what each key's check
    certainly gives."""
    per_group = group_ratios(conn, _step_us(steps) / 1e6, fk.dims, rule.condition.weeks)
    moved: Any = per_group  # values in place of points: for_rule only moves them
    keyed: Any = series_mod.for_rule(rule, fk, moved)
    classes, values = {}, {}
    for key, (_dims, v) in keyed.items():
        values[key] = v
        found = np.where(
            _clear(rule, v, limits), FALSE, np.where(_breach(rule, v, limits), TRUE, UNSURE)
        )
        classes[key] = np.where(np.isnan(v), ABSENT, found).astype(np.int8)
    index = _step_index(steps)
    group_of = _groups_by_key(rule, fk, per_group)

    def at_step(at: datetime, only: Collection[str] | None = None) -> series_mod.Keyed:
        i = index(at)
        grouped: series_mod.Grouped = {}
        for g in per_group if only is None else (group_of[key] for key in only):
            x = float(per_group[g][i])
            if x == x:  # listed at this step
                grouped[g] = [Point(at, x)]
        return series_mod.for_rule(rule, fk, grouped)

    return at_step, Classes(rule, classes, np.full(len(steps), NO_DATA, dtype=np.int8), values)


def regression_rule_source(
    conn: Connection, rule: Rule, fk: series_mod.FetchKey, steps: list[datetime],
    limits: list[float],
) -> Source:  # fmt: skip
    """The source of a threshold or rate of change rule on `api.p95_regression`."""
    if rule.condition.type == "rate_of_change":
        return regression_change_source(conn, rule, fk, steps, limits)
    return regression_source(conn, rule, fk, steps, limits)
