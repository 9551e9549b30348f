"""OTLP histograms and exponential histograms as mergeable log-bucket histograms.

The metric rollups keep a log-bucket histogram per series and minute (`histogram.py`:
relative error at most 1 %); an OTLP histogram data point carries its own buckets. Each
OTLP bucket's count is spread over the log buckets its value range overlaps, in proportion
to the overlap (linear interpolation inside a bucket, as Prometheus' `histogram_quantile`
does), with integer counts whose running total is rounded (so a bucket's count is kept
exactly and a single value lands in the middle of its bucket). Hence the error of a
quantile read from these rows: the true value lies in the OTLP bucket that holds the rank
(explicit bounds: that bucket's width; exponential: a relative error of base - 1, with
base = 2^(2^-scale)), plus the log buckets' 1 %.

- explicit bounds b0 < … < bn-1 and counts c0 … cn: bucket i covers (b(i-1), b(i)]; the
  open ends are cut at the point's min and max when it has them, else the first bucket is
  (0, b0] (when b0 > 0) and the last one sits on b(n-1), as Prometheus reads them;
- exponential: positive bucket `offset + i` covers (base^index, base^(index+1)], negative
  buckets mirror it, `zero_count` goes to the zero bucket;
- every range is also cut at the point's min and max when present.

Cumulative points become deltas per series (`delta`): bucket by bucket against the previous
point of the series; a new start time, a smaller count or a bucket that went down is a
restart (the point itself is the delta); an exponential histogram whose scale went down
(the SDK rescales as its range grows) has the previous buckets merged down to the new scale
first; bounds that changed, or a scale that went up, only set a new baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from monitoring_core.histogram import BIAS, GAMMA, LN_GAMMA, MIN_MAGNITUDE, bucket_key, bucket_value

__all__ = [
    "OtlpHistogram",
    "delta",
    "from_point",
    "from_state",
    "log_buckets",
    "to_state",
]

_MAX_INDEX = math.floor(math.log(1.7e308) / LN_GAMMA)
_MIN_INDEX = math.ceil(math.log(MIN_MAGNITUDE) / LN_GAMMA)


@dataclass(frozen=True)
class OtlpHistogram:
    """One data point's buckets. `bounds` set: explicit (`counts` has len(bounds) + 1);
    else exponential (`scale`, `zero`, `pos`/`neg` as (offset, counts))."""

    count: int
    sum: float | None
    min: float | None
    max: float | None
    bounds: tuple[float, ...] | None = None
    counts: tuple[int, ...] = ()
    scale: int = 0
    zero: int = 0
    pos: tuple[int, tuple[int, ...]] = (0, ())
    neg: tuple[int, tuple[int, ...]] = (0, ())

    @property
    def exponential(self) -> bool:
        return self.bounds is None

    def bucket_total(self) -> int:
        if self.bounds is not None:
            return sum(self.counts)
        return self.zero + sum(self.pos[1]) + sum(self.neg[1])


def _optional(point: Any, name: str) -> float | None:
    return float(getattr(point, name)) if point.HasField(name) else None


def from_point(point: Any, exponential: bool) -> OtlpHistogram | str:
    """The point's buckets, or why they cannot be used (counts not adding up, bad bounds)."""
    count, total = int(point.count), _optional(point, "sum")
    low, high = _optional(point, "min"), _optional(point, "max")
    if exponential:
        hist = OtlpHistogram(
            count,
            total,
            low,
            high,
            scale=int(point.scale),
            zero=int(point.zero_count),
            pos=(int(point.positive.offset), tuple(map(int, point.positive.bucket_counts))),
            neg=(int(point.negative.offset), tuple(map(int, point.negative.bucket_counts))),
        )
        if not -10 <= hist.scale <= 20:
            return f"scale {hist.scale} is outside -10..20"
    else:
        bounds = tuple(map(float, point.explicit_bounds))
        counts = tuple(map(int, point.bucket_counts))
        if not counts:  # a histogram without buckets: count and sum only
            counts, bounds = (int(point.count),), ()
        if len(counts) != len(bounds) + 1:
            return "bucket_counts must have one more entry than explicit_bounds"
        if any(not math.isfinite(b) for b in bounds) or any(
            a >= b for a, b in zip(bounds, bounds[1:], strict=False)
        ):
            return "explicit_bounds must be finite and increasing"
        hist = OtlpHistogram(count, total, low, high, bounds=bounds, counts=counts)
    if hist.bucket_total() != hist.count:
        return "the bucket counts do not add up to count"
    return hist


# ------------------------------------------------------------------ spreading
def _spread_positive(a: float, b: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` values spread evenly over (a, b], 0 <= a < b: (keys, counts)."""
    lo_i = (
        math.ceil(math.log(max(a, MIN_MAGNITUDE)) / LN_GAMMA) if a > MIN_MAGNITUDE else _MIN_INDEX
    )
    hi_i = (
        min(math.ceil(math.log(b) / LN_GAMMA), _MAX_INDEX) if b > MIN_MAGNITUDE else _MIN_INDEX - 1
    )
    index = np.arange(lo_i, hi_i + 1, dtype=np.int64)
    upper = np.power(GAMMA, index.astype(np.float64))
    lower = upper / GAMMA
    weights = np.clip(np.minimum(upper, b) - np.maximum(lower, max(a, MIN_MAGNITUDE)), 0.0, None)
    keys = BIAS + index
    if a < MIN_MAGNITUDE:  # the part below the smallest magnitude: the zero bucket
        weights = np.concatenate(([min(b, MIN_MAGNITUDE) - a], weights))
        keys = np.concatenate(([0], keys))
    return keys, _rounded(weights, count)


def _rounded(weights: np.ndarray, count: int) -> np.ndarray:
    total = float(weights.sum())
    if total <= 0.0:
        out = np.zeros(len(weights), dtype=np.int64)
        out[-1] = count
        return out
    running = np.floor(np.cumsum(weights) * (count / total) + 0.5).astype(np.int64)
    running[-1] = count
    return np.diff(running, prepend=0)


def _spread(lo: float, hi: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` values spread evenly over the value range (lo, hi] (a point when lo >= hi)."""
    if hi <= lo:
        return np.array([bucket_key(hi)]), np.array([count])
    if lo >= 0.0:
        return _spread_positive(lo, hi, count)
    if hi <= 0.0:
        keys, counts = _spread_positive(-hi, -lo, count)
        return -keys, counts
    below = int(math.floor(count * (-lo) / (hi - lo) + 0.5))
    k1, c1 = _spread_positive(0.0, -lo, below)
    k2, c2 = _spread_positive(0.0, hi, count - below)
    return np.concatenate((-k1, k2)), np.concatenate((c1, c2))


def _clamp(lo: float, hi: float, hist: OtlpHistogram) -> tuple[float, float]:
    if hist.min is not None and math.isfinite(hist.min):
        lo = min(max(lo, hist.min), hi)
    if hist.max is not None and math.isfinite(hist.max):
        hi = max(min(hi, hist.max), lo)
    return lo, hi


def _ranges(hist: OtlpHistogram) -> list[tuple[float, float, int]]:
    """(lo, hi, count) of every non-empty OTLP bucket, cut at min and max."""
    out: list[tuple[float, float, int]] = []
    if hist.bounds is not None:
        bounds, n = hist.bounds, len(hist.bounds)
        for i, count in enumerate(hist.counts):
            if not count:
                continue
            lo = bounds[i - 1] if i > 0 else -math.inf
            hi = bounds[i] if i < n else math.inf
            lo, hi = _clamp(lo, hi, hist)
            if math.isinf(hi):  # no max: the last finite bound (without bounds, the mean)
                hi = bounds[-1] if n else _mean(hist)
            if math.isinf(lo):  # no min: (0, b0] when b0 > 0, else a point on the bound
                lo = 0.0 if n and bounds[0] > 0 else hi
            out.append((min(lo, hi), hi, count))
        return out
    base = 2.0 ** (2.0**-hist.scale)
    if hist.zero:
        out.append((0.0, 0.0, hist.zero))
    for sign, (offset, counts) in ((1.0, hist.pos), (-1.0, hist.neg)):
        for i, count in enumerate(counts):
            if not count:
                continue
            index = offset + i
            low = _power(base, index)
            high = _power(base, index + 1)
            lo, hi = (low, high) if sign > 0 else (-high, -low)
            out.append((*_clamp(lo, hi, hist), count))
    return out


def _mean(hist: OtlpHistogram) -> float:
    return hist.sum / hist.count if hist.sum is not None and hist.count else 0.0


def _power(base: float, index: int) -> float:
    try:
        return min(base**index, 1.7e308)
    except OverflowError:
        return 1.7e308


def log_buckets(hist: OtlpHistogram) -> tuple[list[int], list[int]]:
    """The histogram in `histogram.py` form: keys ascending, counts (all positive)."""
    parts = [_spread(lo, hi, count) for lo, hi, count in _ranges(hist)]
    if not parts:
        return [], []
    keys = np.concatenate([k for k, _ in parts])
    counts = np.concatenate([c for _, c in parts])
    unique, inverse = np.unique(keys, return_inverse=True)
    totals = np.bincount(inverse, weights=counts).astype(np.int64)
    keep = totals > 0
    return unique[keep].tolist(), totals[keep].tolist()


def estimated_sum(keys: list[int], counts: list[int]) -> float:
    return float(sum(bucket_value(k) * c for k, c in zip(keys, counts, strict=True)))


# ------------------------------------------------------------------ cumulative -> delta
def _downscale(side: tuple[int, tuple[int, ...]], by: int) -> tuple[int, tuple[int, ...]]:
    """Exponential buckets merged `by` scales down (index -> index >> by)."""
    offset, counts = side
    if not counts or by <= 0:
        return side
    merged: dict[int, int] = {}
    for i, count in enumerate(counts):
        index = (offset + i) >> by
        merged[index] = merged.get(index, 0) + count
    first = min(merged)
    return first, tuple(merged.get(first + j, 0) for j in range(max(merged) - first + 1))


def _minus(
    new: tuple[int, tuple[int, ...]], old: tuple[int, tuple[int, ...]]
) -> tuple[int, tuple[int, ...]] | None:
    """Bucket-wise new - old (aligned by index); None when a bucket went down."""
    values = {new[0] + i: c for i, c in enumerate(new[1])}
    for i, count in enumerate(old[1]):
        index = old[0] + i
        values[index] = values.get(index, 0) - count
    if not values:
        return new
    if any(v < 0 for v in values.values()):
        return None
    first = min(values)
    return first, tuple(values.get(first + j, 0) for j in range(max(values) - first + 1))


def delta(new: OtlpHistogram, old: OtlpHistogram) -> OtlpHistogram | None:
    """`new` - `old` for two cumulative points with the same start time: the point itself
    after a restart (a count or bucket that went down), None when the two cannot be
    compared (bounds changed, scale went up: the new point only sets a baseline)."""
    if new.count < old.count:
        return new
    change = None if new.sum is None or old.sum is None else new.sum - old.sum
    if new.bounds is not None:
        if old.bounds != new.bounds:
            return None
        counts = tuple(a - b for a, b in zip(new.counts, old.counts, strict=True))
        if any(c < 0 for c in counts):
            return new
        return replace(new, count=new.count - old.count, sum=change, counts=counts)
    if old.bounds is not None or new.scale > old.scale:
        return None
    by = old.scale - new.scale
    pos = _minus(new.pos, _downscale(old.pos, by))
    neg = _minus(new.neg, _downscale(old.neg, by))
    if pos is None or neg is None or new.zero < old.zero:
        return new
    return replace(
        new, count=new.count - old.count, sum=change, zero=new.zero - old.zero, pos=pos, neg=neg
    )


def to_state(hist: OtlpHistogram) -> dict[str, Any]:
    """The point as JSON for `otlp_cumulative.buckets`."""
    state: dict[str, Any] = {"n": hist.count, "s": hist.sum}
    if hist.bounds is not None:
        state.update(b=list(hist.bounds), c=list(hist.counts))
    else:
        state.update(
            x=hist.scale, z=hist.zero, p=[hist.pos[0], list(hist.pos[1])],
            m=[hist.neg[0], list(hist.neg[1])],
        )  # fmt: skip
    return state


def from_state(state: dict[str, Any]) -> OtlpHistogram:
    count, total = int(state["n"]), state.get("s")
    if "b" in state:
        return OtlpHistogram(count, total, None, None, tuple(state["b"]), tuple(state["c"]))
    return OtlpHistogram(
        count,
        total,
        None,
        None,
        scale=int(state["x"]),
        zero=int(state["z"]),
        pos=(int(state["p"][0]), tuple(state["p"][1])),
        neg=(int(state["m"][0]), tuple(state["m"][1])),
    )
