"""PromQL functions over range vectors (`rate`, `*_over_time` …) and instant vectors.

Semantics follow Prometheus 2.42 (`promql/functions.go`): a range's window is closed at both
ends, [t - range, t]; `rate`/`increase`/`delta` extrapolate towards the window's edges
(`extrapolatedRate`: not past half an average sample interval beyond the first/last sample,
and for counters not below zero), counter resets add the value before the drop; every
function drops the metric name except `last_over_time`. Everything is computed for all
evaluation steps at once: per series, two binary searches give each step's window.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from monitoring_core.prometheus.promql.model import (
    ExecutionError,
    Matrix,
    Raw,
    Scalar,
    Series,
    Unsupported,
    Vector,
    drop_name,
)

__all__ = [
    "RANGE_FUNCTIONS",
    "SIMPLE_FUNCTIONS",
    "check_holt_winters",
    "prom_quantile",
    "range_function",
]


def _windows(raw: Raw, matrix: Matrix) -> tuple[np.ndarray, np.ndarray]:
    lo = np.searchsorted(raw.t, matrix.eval_ms - matrix.range_ms, side="left")
    hi = np.searchsorted(raw.t, matrix.eval_ms, side="right")
    return lo, hi


def _corrections(v: np.ndarray) -> np.ndarray | None:
    """Cumulative counter-reset corrections: at i, the sum of values just before each drop
    up to i; None when the series never drops (most counters: nothing to add)."""
    drops = v[1:] < v[:-1]
    if not drops.any():
        return None
    return np.cumsum(np.concatenate(([0.0], np.where(drops, v[:-1], 0.0))))


def _extrapolate(
    t: np.ndarray,
    v: np.ndarray,
    corr: np.ndarray | None,
    lo: np.ndarray,
    hi: np.ndarray,
    matrix: Matrix,
    *,
    counter: bool,
    per_second: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Prometheus 2.42 `extrapolatedRate` for the windows [lo, hi) of one series' samples
    (t, v), one per step, ending at `matrix.eval_ms`."""
    n = hi - lo
    ok = n >= 2
    first = np.minimum(lo, len(t) - 1)
    last = np.maximum(hi - 1, 0)
    fv, lv = v[first], v[last]
    ft, lt = t[first].astype(np.float64), t[last].astype(np.float64)
    result = lv - fv
    if corr is not None:
        result = result + (corr[last] - corr[first])
    ends = matrix.eval_ms.astype(np.float64)
    to_start = (ft - (ends - matrix.range_ms)) / 1000.0
    to_end = (ends - lt) / 1000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        sampled = (lt - ft) / 1000.0
        average = sampled / np.maximum(n - 1, 1)
        if counter:
            to_zero = sampled * (fv / result)
            shorter = (result > 0) & (fv >= 0) & (to_zero < to_start)
            to_start = np.where(shorter, to_zero, to_start)
        threshold = average * 1.1
        interval = sampled + np.where(to_start < threshold, to_start, average / 2)
        interval += np.where(to_end < threshold, to_end, average / 2)
        result = result * (interval / sampled)
        if per_second:
            result = result / (matrix.range_ms / 1000.0)
    return result, ok


def _instant(raw: Raw, matrix: Matrix, *, rate: bool) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = _windows(raw, matrix)
    ok = (hi - lo) >= 2
    last = np.maximum(hi - 1, 0)
    prev = np.maximum(hi - 2, 0)
    lv, pv = raw.v[last], raw.v[prev]
    result = lv - pv
    if not rate:
        return result, ok
    result = np.where(lv < pv, lv, result)  # a counter reset: the new value is the increase
    dt = (raw.t[last] - raw.t[prev]) / 1000.0
    ok = ok & (dt != 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return result / np.where(dt == 0, 1.0, dt), ok


def _counted(raw: Raw, matrix: Matrix, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = _windows(raw, matrix)
    ok = (hi - lo) >= 1
    cum = np.concatenate(([0], np.cumsum(flags)))
    first = np.minimum(lo, len(raw.t) - 1)
    last = np.maximum(hi - 1, 0)
    return (cum[last + 1] - cum[first + 1]).astype(np.float64), ok


def _resets(raw: Raw, matrix: Matrix) -> tuple[np.ndarray, np.ndarray]:
    flags = np.zeros(len(raw.v))
    flags[1:] = raw.v[1:] < raw.v[:-1]
    return _counted(raw, matrix, flags)


def _changes(raw: Raw, matrix: Matrix) -> tuple[np.ndarray, np.ndarray]:
    flags = np.zeros(len(raw.v))
    a, b = raw.v[1:], raw.v[:-1]
    flags[1:] = (a != b) & ~(np.isnan(a) & np.isnan(b))
    return _counted(raw, matrix, flags)


def prom_quantile(q: float, values: np.ndarray) -> float:
    """Prometheus' `quantile`: linear between the closest ranks, ±Inf outside [0, 1]."""
    if len(values) == 0 or math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = np.sort(values)
    rank = q * (len(ordered) - 1)
    lower = max(0, math.floor(rank))
    upper = min(len(ordered) - 1, lower + 1)
    weight = rank - math.floor(rank)
    return float(ordered[lower] * (1 - weight) + ordered[upper] * weight)


def _kahan_mean(values: np.ndarray) -> float:
    mean, count = 0.0, 0.0
    for value in values.tolist():
        count += 1
        mean += value / count - mean / count
    return mean


_OVER_TIME: dict[str, Callable[[np.ndarray], float]] = {
    "avg_over_time": _kahan_mean,
    "sum_over_time": lambda w: float(sum(w.tolist())),  # sequential, as Prometheus adds
    "min_over_time": lambda w: float(np.nanmin(w)) if not np.all(np.isnan(w)) else math.nan,
    "max_over_time": lambda w: float(np.nanmax(w)) if not np.all(np.isnan(w)) else math.nan,
    "count_over_time": lambda w: float(len(w)),
    "last_over_time": lambda w: float(w[-1]),
    "present_over_time": lambda w: 1.0,
    "stddev_over_time": lambda w: float(np.std(w)),
    "stdvar_over_time": lambda w: float(np.var(w)),
}


def _over_time(
    raw: Raw, matrix: Matrix, reduce: Callable[[np.ndarray], float]
) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = _windows(raw, matrix)
    ok = (hi - lo) >= 1
    out = np.full(len(lo), math.nan)
    for i in np.flatnonzero(ok).tolist():
        out[i] = reduce(raw.v[lo[i] : hi[i]])
    return out, ok


def _blocks(lo: np.ndarray, hi: np.ndarray, cells: int = 2_000_000) -> list[slice]:
    """Runs of steps whose windows, padded to the longest, hold at most `cells` entries."""
    widest = int((hi - lo).max(initial=0)) or 1
    per = max(1, cells // widest)
    return [slice(i, i + per) for i in range(0, len(lo), per)]


def _padded(raw: Raw, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per step (row): the window's sample indexes, left-aligned, and which are real."""
    width = int((hi - lo).max(initial=0))
    index = lo[:, None] + np.arange(width)[None, :]
    inside = index < hi[:, None]
    return np.where(inside, index, 0), inside


def _regression(
    raw: Raw, matrix: Matrix, intercept_ms: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prometheus' `linearRegression` per window: (slope, intercept, ok). The x axis is
    seconds from `intercept_ms` per step, or from each window's first sample (`deriv`)."""
    lo, hi = _windows(raw, matrix)
    n = hi - lo
    ok = n >= 2
    slope = np.full(len(lo), math.nan)
    intercept = np.full(len(lo), math.nan)
    for block in _blocks(lo, hi):
        index, inside = _padded(raw, lo[block], hi[block])
        if not index.shape[1]:
            continue
        t, y = raw.t[index], np.where(inside, raw.v[index], 0.0)
        origin = t[:, 0] if intercept_ms is None else intercept_ms[block]
        x = np.where(inside, (t - origin[:, None]) / 1e3, 0.0)
        count = n[block].astype(np.float64)
        with np.errstate(all="ignore"):
            sum_x, sum_y = x.sum(axis=1), y.sum(axis=1)
            cov = (x * y).sum(axis=1) - sum_x * sum_y / count
            var = (x * x).sum(axis=1) - sum_x * sum_x / count
            b = cov / var
            a = sum_y / count - b * sum_x / count
        first = raw.v[np.minimum(lo[block], len(raw.v) - 1)]
        constant = (np.where(inside, raw.v[index], first[:, None]) == first[:, None]).all(axis=1)
        # all values equal: slope 0 and the value (NaN for an infinite one), as Prometheus
        b = np.where(constant, np.where(np.isinf(first), math.nan, 0.0), b)
        a = np.where(constant, np.where(np.isinf(first), math.nan, first), a)
        slope[block], intercept[block] = b, a
    return slope, intercept, ok


def _holt_winters(
    raw: Raw, matrix: Matrix, smoothing: np.ndarray, trend: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Prometheus 2.42 `funcHoltWinters` (3.x: double_exponential_smoothing) per window, the
    windows of all steps advanced together sample by sample."""
    lo, hi = _windows(raw, matrix)
    n = hi - lo
    ok = n >= 2
    out = np.full(len(lo), math.nan)
    for block in _blocks(lo, hi):
        index, inside = _padded(raw, lo[block], hi[block])
        if index.shape[1] < 2:
            continue
        v = raw.v[index]
        sf, tf = smoothing[block], trend[block]
        s0 = np.zeros(len(v))
        s1 = v[:, 0].copy()
        b = v[:, 1] - v[:, 0]
        with np.errstate(all="ignore"):
            for i in range(1, v.shape[1]):
                live = inside[:, i]
                x = sf * v[:, i]
                if i > 1:  # calcTrendValue: the first step keeps the initial trend
                    b = np.where(live, tf * (s1 - s0) + (1 - tf) * b, b)
                y = (1 - sf) * (s1 + b)
                s0, s1 = np.where(live, s1, s0), np.where(live, x + y, s1)
        out[block] = s1
    return out, ok


def check_holt_winters(smoothing: np.ndarray, trend: np.ndarray) -> None:
    """Prometheus' own errors for factors outside (0, 1) (an execution error)."""
    for value, what, short in ((smoothing, "smoothing", "sf"), (trend, "trend", "tf")):
        bad = value[~((value > 0) & (value < 1))]
        if len(bad):
            raise ExecutionError(
                f"invalid {what} factor. Expected: 0 < {short} < 1, got: {float(bad[0]):f}"
            )


def range_function(
    name: str,
    matrix: Matrix,
    scalar: Scalar | None = None,
    *,
    steps_ms: np.ndarray | None = None,
    second: Scalar | None = None,
) -> Vector:
    """Apply a range-vector function to every series of `matrix`, at every step."""
    out = []
    for raw in matrix.series:
        if name in ("rate", "increase", "delta"):
            lo, hi = _windows(raw, matrix)
            counter = name != "delta"
            corr = _corrections(raw.v) if counter else None
            values, ok = _extrapolate(
                raw.t, raw.v, corr, lo, hi, matrix, counter=counter, per_second=name == "rate"
            )
        elif name in ("irate", "idelta"):
            values, ok = _instant(raw, matrix, rate=name == "irate")
        elif name == "resets":
            values, ok = _resets(raw, matrix)
        elif name == "changes":
            values, ok = _changes(raw, matrix)
        elif name == "quantile_over_time":
            assert scalar is not None
            lo, hi = _windows(raw, matrix)
            ok = (hi - lo) >= 1
            values = np.full(len(lo), math.nan)
            for i in np.flatnonzero(ok).tolist():
                values[i] = prom_quantile(float(scalar.values[i]), raw.v[lo[i] : hi[i]])
        elif name == "deriv":
            values, _, ok = _regression(raw, matrix, None)
        elif name == "predict_linear":
            assert scalar is not None and steps_ms is not None
            slope, intercept, ok = _regression(raw, matrix, steps_ms)
            values = slope * scalar.values + intercept
        elif name in ("holt_winters", "double_exponential_smoothing"):
            assert scalar is not None and second is not None
            values, ok = _holt_winters(raw, matrix, scalar.values, second.values)
        elif name in _OVER_TIME:
            values, ok = _over_time(raw, matrix, _OVER_TIME[name])
        else:
            raise Unsupported(f"function {name}() is not supported")
        labels = raw.labels if name == "last_over_time" else drop_name(raw.labels)
        out.append(Series(labels, values, ok))
    return Vector(out).check_unique()


RANGE_FUNCTIONS = frozenset(
    {
        "rate",
        "increase",
        "delta",
        "irate",
        "idelta",
        "resets",
        "changes",
        "quantile_over_time",
        "deriv",
        "predict_linear",
        "holt_winters",
        "double_exponential_smoothing",
    }
    | set(_OVER_TIME)
)


def _round(values: np.ndarray, to: np.ndarray) -> np.ndarray:
    # Prometheus: math.Floor(v*toNearestInverse+0.5) / toNearestInverse
    inverse = 1.0 / to
    return np.floor(values * inverse + 0.5) / inverse


SIMPLE_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "abs": np.abs,
    "ceil": np.ceil,
    "floor": np.floor,
    "exp": np.exp,
    "ln": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "sqrt": np.sqrt,
    "sgn": np.sign,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "asinh": np.arcsinh,
    "acosh": np.arccosh,
    "atanh": np.arctanh,
    "deg": np.degrees,
    "rad": np.radians,
}


def apply_simple(name: str, vector: Vector) -> Vector:
    function = SIMPLE_FUNCTIONS[name]
    with np.errstate(all="ignore"):
        series = [Series(drop_name(s.labels), function(s.values), s.present) for s in vector.series]
    return Vector(series).check_unique()


def apply_round(vector: Vector, to: Scalar | None) -> Vector:
    nearest = to.values if to is not None else np.ones(1)
    with np.errstate(all="ignore"):
        series = [
            Series(drop_name(s.labels), _round(s.values, nearest), s.present) for s in vector.series
        ]
    return Vector(series).check_unique()


def apply_clamp(vector: Vector, low: np.ndarray | None, high: np.ndarray | None) -> Vector:
    out = []
    for s in vector.series:
        values, present = s.values, s.present
        if low is not None and high is not None:
            present = present & ~(low > high)  # Prometheus returns nothing when min > max
        if low is not None:
            values = np.where(np.isnan(values), values, np.maximum(values, low))
        if high is not None:
            values = np.where(np.isnan(values), values, np.minimum(values, high))
        out.append(Series(drop_name(s.labels), values, present))
    return Vector(out).check_unique()
