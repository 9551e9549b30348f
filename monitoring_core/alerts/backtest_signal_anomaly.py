"""Anomaly rules on windowed signals at every step of a backtest, the events read once.

A cycle at `now` reads the signal's events of the hour before `now` and of the same hour 1
to `weeks` weeks before (`SignalReader._intervals`), and computes the rule's aggregation
over each of those hours (`signals_read._windowed`): the current value, stamped `now`, and
one baseline value per past week, which `engine._anomaly` compares by robust z-score.
Reading and computing that at each of 518,400 steps is out of reach, and the backtest used
to step such a rule at most 2,000 times over its range.

Here the family's events of the whole range are read once, and each key's value over every
step's hour, and over the same hour of each past week, is computed for all steps at once:
counts exactly; sums and averages from running sums (their rounding allowed for); extremes
from sparse tables; percentiles as numpy computes them, from the two order statistics
around the virtual index (a wavelet matrix of the values' ranks) and numpy's own linear
interpolation. `backtest_kinds._bands` then tells per step whether the z-score certainly
breaches, certainly does not, or may (decided by the engine on the series the cycle reads,
built from the same events). With the default 14 days of API timings a four-week baseline
mostly finds too few past weeks, live and here alike ("too little history").
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from monitoring_core.alerts import series as series_mod
from monitoring_core.alerts.backtest_kinds import (
    Classes,
    Source,
    _bands,
    _breaches,
    _flat,
    _groups_by_key,
    _step_us,
)
from monitoring_core.alerts.backtest_quiet import (
    ABSENT,
    FALSE,
    NO_DATA,
    TRUE,
    UNSURE,
    _cumulative_slack,
    _range,
    _sparse,
)
from monitoring_core.alerts.engine import Point
from monitoring_core.alerts.rules import Rule
from monitoring_core.alerts.signals_read import _windowed as windowed_values
from monitoring_core.wavelet import Wavelet, percentiles

__all__ = ["signal_anomaly_source"]

WEEK = timedelta(days=7)
_WEEK_S = WEEK.total_seconds()


def _values(
    agg: str, v: np.ndarray, lo: np.ndarray, hi: np.ndarray, ranked: list[Any]
) -> tuple[np.ndarray, float]:
    """Per window [lo, hi): the aggregation `signals_read._windowed` computes (NaN where
    the window is empty, but a count's 0), and how far from it a sum or average may be."""
    n = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        if agg == "count":
            return n.astype(np.float64), 0.0
        if agg in ("sum", "avg"):
            total = np.concatenate(([0.0], np.cumsum(v)))
            sums, slack = total[hi] - total[lo], _cumulative_slack(v)
            sums = np.where(n > 0, sums, np.nan)
            return (sums / np.maximum(n, 1), slack) if agg == "avg" else (sums, slack)
        if agg in ("min", "max"):
            pick = np.minimum if agg == "min" else np.maximum
            return _range(_sparse(v, pick), lo, hi, pick, np.nan), 0.0
    if not ranked:
        distinct, codes = np.unique(v, return_inverse=True)
        ranked += [distinct, Wavelet(codes.astype(np.int64))]
    return percentiles(int(agg[1:]) / 100, ranked[0], ranked[1], lo, hi), 0.0


def signal_anomaly_source(
    rule: Rule, fk: series_mod.FetchKey, steps: list[datetime],
    groups: dict[tuple, tuple[np.ndarray, np.ndarray]], gone: np.ndarray,
) -> Source:  # fmt: skip
    """An anomaly rule on a windowed signal: per step the series a cycle reads (the hour's
    value and the same hour's in each past week, from the events of those hours) and what
    each key's check certainly gives. `groups`: the family's events per group of the rule's
    dimensions (sorted times, values) from `steps[0] − weeks − 1 h` on; `gone`: steps before
    the family's oldest kept event, taken as clear (not replayed)."""
    cond, sk = rule.condition, series_mod.signal_key(fk)
    weeks, hour = cond.weeks, sk.window.total_seconds()
    at = _step_us(steps) / 1e6
    counting = sk.aggregation == "count"
    per_group: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
    for g, (t, v) in groups.items():
        cuts = [
            (np.searchsorted(t, at - k * _WEEK_S - hour, "right"),
             np.searchsorted(t, at - k * _WEEK_S, "right"))
            for k in range(weeks + 1)
        ]  # fmt: skip
        sizes = [hi - lo for lo, hi in cuts]
        present = np.any([n > 0 for n in sizes], axis=0)  # in the cycle's read
        points = [present if counting else n > 0 for n in sizes]  # a point per stamp
        enough_points = np.sum(points[1:], axis=0) >= cond.min_baseline
        found = np.where(present, NO_DATA, ABSENT).astype(np.int8)
        value = np.full(len(steps), np.nan)
        # the values only where they decide: a current point and enough past weeks
        at_ = np.flatnonzero(points[0] & enough_points)
        ranked: list[Any] = []
        values, slack = [], 0.0
        for lo, hi in cuts:
            x, rounding = _values(sk.aggregation, v, lo[at_], hi[at_], ranked)
            n = hi[at_] - lo[at_]
            few = (n < cond.min_count) & ((n > 0) | counting)
            values.append(np.where(few, np.inf, x))  # inf: a point, NaN (too few events)
            slack = max(slack, rounding)
        if len(at_):
            now, base = values[0], np.array(values[1:]).reshape(weeks, len(at_))
            odd = np.isinf(now) | np.isinf(base).any(axis=0)  # fewer than min_count
            base = np.where(np.isinf(base), 0.0, base)
            lo_band, hi_band, room, _enough = _bands(cond, base)
            extra = slack * (2 + 3 * cond.z_threshold)  # sums: the rounding of both sides'
            with np.errstate(invalid="ignore"):
                fine = (now >= lo_band + extra) & (now <= hi_band - extra)
            breach = _breaches(now, lo_band, hi_band, room + extra)
            sure = np.where(fine, FALSE, np.where(breach, TRUE, UNSURE))
            sure = _flat(cond, base, now, extra, sure)
            found[at_] = np.where(odd, UNSURE, sure)
            value[at_] = np.where(np.isinf(now), np.nan, now)
        per_group[g] = (found, value)
    moved: Any = per_group  # classes in place of points: for_rule only moves them
    keyed: Any = series_mod.for_rule(rule, fk, moved)
    classes = {key: found for key, (_dims, (found, _value)) in keyed.items()}
    checked = {key: value for key, (_dims, (_found, value)) in keyed.items()}
    group_of = _groups_by_key(rule, fk, groups)

    def at_step(at: datetime, only: Collection[str] | None = None) -> series_mod.Keyed:
        """The events of the hour before `at` and of the same hour in past weeks, oldest
        first, as a cycle reads them, and the values `signals_read` computes from them."""
        stamps = [at - k * WEEK for k in range(weeks, -1, -1)]
        seconds = np.array([s.timestamp() for s in stamps])
        grouped: dict[tuple, Sequence[Point]] = {}
        for g in groups if only is None else (group_of[key] for key in only):
            t, v = groups[g]
            cuts = list(  # each hour's events, all weeks in two searches
                zip(
                    np.searchsorted(t, seconds - hour, "right").tolist(),
                    np.searchsorted(t, seconds, "right").tolist(),
                    strict=True,
                )
            )
            if not any(b > a for a, b in cuts):
                continue
            part_t = np.concatenate([t[a:b] for a, b in cuts])
            part_v = np.concatenate([v[a:b] for a, b in cuts])
            points = windowed_values(part_t, part_v, stamps, seconds, sk)
            if points:
                grouped[g] = points
        return series_mod.for_rule(rule, fk, grouped)

    empty = np.where(gone, FALSE, NO_DATA).astype(np.int8)
    return at_step, Classes(rule, classes, empty, checked)
