"""The Performance page's regression flags at many moments at once, read once.

`performance.queries.regression_flags` answers for one `now`: per endpoint, the p95 of the
1-minute API rollups with a bucket in [now − 1 h, now), over the p95 of the same windows 1
to `weeks` weeks earlier merged, listed (`alerts.signals_read.SignalReader._flags`) when both
sides have at least 20 requests and the ratio is finite. Asking it at each step of a
backtest (518,400 at 90 days) would take hours. Here each endpoint's rollup rows of the
whole range are read once and the flags of every window end computed together (the windows
of every moment in (M − 1 min, M] end at M):
- requests and histogram counts of each window from running sums;
- each p95 as a weighted order statistic of a run (the current hour) or a union of runs (the
  past weeks) of the endpoint's histogram keys in time order, from a wavelet matrix
  (`monitoring_core.wavelet`, one vectorised pass per bit);
- the rank as `histogram.grouped_quantiles` computes it inside that query, q · (n − 1)
  floored, so that every ratio is the query's to the bit
  (`tests/test_backtest_regression.py` compares them at every step).
"""

# SQL here is this module's own constants; every value is a bound parameter.

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import Connection, text

from monitoring_core.histogram import bucket_values
from monitoring_core.wavelet import Wavelet

__all__ = ["regression_values"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR_S, WEEK_S = 3600.0, 7 * 86400.0
WEEK_MINUTES = 7 * 1440
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


def _before(minutes: np.ndarray, base: float, size: int) -> np.ndarray:
    """Per minute x of a grid from `base` (0 … size): how many of the sorted minute stamps
    `minutes` (all in the grid) come before base + x minutes — `np.searchsorted(minutes,
    base + 60 x)` for every minute at once, by counting."""
    index = ((minutes - base) // 60.0).astype(np.int64)
    return np.concatenate(([0], np.cumsum(np.bincount(index, minlength=size))))[: size + 1]


def regression_values(
    conn: Connection, ends: np.ndarray, weeks: int
) -> dict[tuple[str, str], np.ndarray]:
    """Per (method, endpoint): the ratio `SignalReader._flags` lists for it when asked at a
    moment whose window ends at each of `ends` (epoch seconds on whole minutes: a moment in
    (E − 1 min, E]), NaN where it lists nothing."""
    if not len(ends):
        return {}
    first, last = float(ends.min()), float(ends.max())
    base = first - weeks * WEEK_S - HOUR_S  # the grid of minutes every window lies on
    read = _read(conn, _EPOCH + timedelta(seconds=base), _EPOCH + timedelta(seconds=last))
    size = int((last - base) // 60.0)
    end_at = ((ends - base) // 60.0).astype(np.int64)  # each window's end on the grid
    count = len(ends)
    totals: list[tuple[np.ndarray, np.ndarray]] = []  # per endpoint: (baseline, current) counts
    parts = []
    for name, rows, buckets in read:
        m, c = buckets["m"].astype(np.float64), buckets["c"].astype(np.int64)
        weight = np.concatenate(([0], np.cumsum(c)))
        requests = np.concatenate(([0], np.cumsum(rows["n"].astype(np.int64))))
        row_m = rows["m"].astype(np.float64)
        runs, base_w, base_n = [], np.zeros(count, np.int64), np.zeros(count, np.int64)
        keys_before, rows_before = _before(m, base, size), _before(row_m, base, size)
        for k in range(weeks + 1):
            x = end_at - k * (WEEK_MINUTES)  # [x − 60, x): the hour before the end
            a, b = keys_before[x - 60], keys_before[x]
            ra, rb = rows_before[x - 60], rows_before[x]
            runs.append((a, b))
            if k == 0:
                cur_w, cur_n = weight[b] - weight[a], requests[rb] - requests[ra]
            else:
                base_w += weight[b] - weight[a]
                base_n += requests[rb] - requests[ra]
        totals.append((base_w, cur_w))
        parts.append((name, buckets["k"].astype(np.int64), c, runs, cur_n, base_n))
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
            for w, picked in ((base_w, runs[1:]), (cur_w, runs[:1])):
                rank = np.floor(Q * (w[at] - 1).astype(np.float64))
                chosen = [(a[at], b[at]) for a, b in picked]
                p95.append(bucket_values(tree.at_rank(chosen, rank) + low))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio[at] = p95[1] / p95[0]
            ratio[~np.isfinite(ratio)] = np.nan
        out[name] = ratio
    return out
