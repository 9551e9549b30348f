"""The p95 regression signal (`api.p95_regression`) at every step of a backtest, read once.

A cycle at `now` asks `performance.queries.regression_flags`: per endpoint, the p95 of the
1-minute API rollups with a bucket in [now − 1 h, now), over the p95 of the same windows 1
to `weeks` weeks earlier merged, listed when both sides have at least 20 requests and the
ratio is finite (`signals_read.SignalReader._flags`); a group's value is the largest ratio
of its endpoints. Asking that query at each of 518,400 steps would take hours, and the
backtest used to ask it at 96 moments of the range and carry each answer forward (90 days:
one answer a day).

Here each endpoint's rollup rows of the range are read once. The windows a step sees
change only on whole minutes (every step in (M, M + 1 min] sees the buckets M − 59 … M),
so the flags are computed once per minute of the range:
- requests and histogram counts of each window from running sums;
- each p95 as a weighted order statistic of a run (the current hour) or a union of runs
  (the past weeks) of the endpoint's histogram keys in time order, answered for every
  minute at once by a wavelet matrix over the keys' bits (one vectorised pass per bit);
- the rank exactly as `histogram.grouped_quantiles` computes it inside that query: the
  target `before + q · (n − 1)`, `before` the counts of the groups that sort before it
  (method, endpoint, period in the database's order), so every ratio is the cycle's to the
  bit (`tests/test_backtest_regression.py` compares them with the query at every step).

What each key's check then gives is known at every step (absent, False or True; unsure
only where the wedding season's threshold differs from the rule's, which the engine
decides), so the replay evaluates only the steps where that changes (`backtest_kinds.
Classes`). What the replay cannot know here is what `regression_flags` could not know
either: a minute's rollup still being written when a live cycle read it.
"""

# SQL here is this module's own constants; every value is a bound parameter.

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

from monitoring_core.alerts import series as series_mod
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
from monitoring_core.alerts.signals import service_of
from monitoring_core.alerts.wavelet import Wavelet
from monitoring_core.histogram import bucket_values

__all__ = ["regression_source", "regression_values"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR_S, WEEK_S = 3600.0, 7 * 86400.0
Q = 0.95  # the p95 of `regression_flags` (`percentile_frame(..., (0.95,))`)
MIN_REQUESTS = 20  # `SignalReader._flags`: both sides need this many requests

# per endpoint, in the database's order (as `percentile_frame` orders its groups): each
# rollup row's (minute, requests) and each histogram bucket's (minute, key, count)
_ROWS = """
    SELECT method, endpoint,
           string_agg(float8send(date_part('epoch', bucket)) || int8send(count::bigint), ''::bytea)
    FROM api_rollup_1m WHERE bucket >= :lo AND bucket < :hi
    GROUP BY method, endpoint ORDER BY method, endpoint
"""
_KEYS = """
    SELECT r.method, r.endpoint,
           string_agg(float8send(date_part('epoch', r.bucket)) || int4send(u.k)
                      || int8send(coalesce(u.c, 1)), ''::bytea)
    FROM api_rollup_1m r, unnest(r.hist_keys, r.hist_counts) AS u(k, c)
    WHERE r.bucket >= :lo AND r.bucket < :hi
    GROUP BY r.method, r.endpoint
"""  # unordered: sorted by minute here (ordering inside string_agg took 5 times as long)
_ROW = np.dtype([("m", ">f8"), ("n", ">i8")])
_KEY = np.dtype([("m", ">f8"), ("k", ">i4"), ("c", ">i8")])


def _read(
    conn: Connection, lo: datetime, hi: datetime
) -> list[tuple[tuple[str, str], np.ndarray, np.ndarray]]:
    """Per (method, endpoint) in the database's order: its rows (minute, requests) and its
    histogram buckets (minute, key, count), each sorted by minute."""
    params = {"lo": lo, "hi": hi}
    keys = {
        (str(m), str(e)): _by_minute(np.frombuffer(blob, dtype=_KEY))
        for m, e, blob in conn.execute(text(_KEYS), params)
    }
    empty = np.zeros(0, dtype=_KEY)
    return [
        ((str(m), str(e)), _by_minute(np.frombuffer(blob, dtype=_ROW)), keys.get((m, e), empty))
        for m, e, blob in conn.execute(text(_ROWS), params)
    ]


def _by_minute(records: np.ndarray) -> np.ndarray:
    return records[np.argsort(records["m"], kind="stable")]


def _in_windows(times: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per window end E: the positions [lo, hi) of the sorted `times` in [E − 1 h, E)."""
    return np.searchsorted(times, ends - HOUR_S, "left"), np.searchsorted(times, ends, "left")


def regression_values(
    conn: Connection, ends: np.ndarray, weeks: int
) -> dict[tuple[str, str], np.ndarray]:
    """Per (method, endpoint): the ratio `SignalReader._flags` lists for it when asked at a
    moment whose window ends at each of `ends` (epoch seconds on whole minutes: a moment in
    (E − 1 min, E]), NaN where it lists nothing."""
    if not len(ends):
        return {}
    first, last = float(ends.min()), float(ends.max())
    lo = _EPOCH + timedelta(seconds=first - weeks * WEEK_S - HOUR_S)
    read = _read(conn, lo, _EPOCH + timedelta(seconds=last))
    count = len(ends)
    totals: list[tuple[np.ndarray, np.ndarray]] = []  # per endpoint: (baseline, current) counts
    parts = []
    for name, rows, buckets in read:
        m, c = buckets["m"].astype(np.float64), buckets["c"].astype(np.int64)
        weight = np.concatenate(([0], np.cumsum(c)))
        requests = np.concatenate(([0], np.cumsum(rows["n"].astype(np.int64))))
        row_m = rows["m"].astype(np.float64)
        runs, base_w, base_n = [], np.zeros(count, np.int64), np.zeros(count, np.int64)
        for k in range(weeks + 1):
            a, b = _in_windows(m, ends - k * WEEK_S)
            ra, rb = _in_windows(row_m, ends - k * WEEK_S)
            runs.append((a, b))
            if k == 0:
                cur_w, cur_n = weight[b] - weight[a], requests[rb] - requests[ra]
            else:
                base_w += weight[b] - weight[a]
                base_n += requests[rb] - requests[ra]
        totals.append((base_w, cur_w))
        parts.append((name, buckets["k"].astype(np.int64), c, runs, cur_n, base_n))
    # the groups before each in the query's ORDER BY (method, endpoint, period): every
    # endpoint's baseline, then its current hour; their counts start its rank
    flat = np.array([w for pair in totals for w in pair], dtype=np.float64).reshape(-1, count)
    before = np.cumsum(flat, axis=0) - flat
    out = {}
    for e, (name, keys, c, runs, cur_n, base_n) in enumerate(parts):
        base_w, cur_w = totals[e]
        listed = (cur_w > 0) & (base_w > 0) & (cur_n >= MIN_REQUESTS) & (base_n >= MIN_REQUESTS)
        ratio = np.full(count, np.nan)
        at = np.flatnonzero(listed)
        if len(at):
            low = int(keys.min())
            tree = Wavelet(keys - low, c)
            p95 = []
            for j, (w, picked) in enumerate(((base_w, runs[1:]), (cur_w, runs[:1]))):
                start = before[2 * e + j][at]
                rank = (start + Q * (w[at] - 1).astype(np.float64)) - start
                chosen = [(a[at], b[at]) for a, b in picked]
                p95.append(bucket_values(tree.at_rank(chosen, rank) + low))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio[at] = p95[1] / p95[0]
            ratio[~np.isfinite(ratio)] = np.nan
        out[name] = ratio
    return out


def regression_source(
    conn: Connection, rule: Rule, fk: series_mod.FetchKey, steps: list[datetime],
    limits: list[float],
) -> Source:  # fmt: skip
    """A threshold rule on `api.p95_regression`: per step the series a cycle's read gives
    (each group's largest listed ratio, stamped with the step) and what each key's check
    certainly gives."""
    at_s = _step_us(steps) / 1e6
    ends = np.ceil(at_s / 60.0) * 60.0  # the window's end: a step in (E − 1 min, E]
    grid, where = np.unique(ends, return_inverse=True)
    ratios = regression_values(conn, grid, rule.condition.weeks)
    groups: dict[tuple, np.ndarray] = {}
    for (method, endpoint), ratio in ratios.items():
        labels = {"method": method, "endpoint": endpoint, "service": service_of(endpoint)}
        group = tuple(labels.get(d, "") for d in fk.dims)
        held = groups.get(group)
        # `_ratios`: the largest of the group's listed ratios (from 0.0)
        groups[group] = ratio if held is None else np.fmax(held, ratio)
    per_group = {
        g: np.where(np.isnan(v), np.nan, np.maximum(v, 0.0))[where] for g, v in groups.items()
    }
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
