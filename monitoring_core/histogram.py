"""Mergeable log-bucket histograms (DDSketch-style) with a relative error of at most 1 %.

A positive value v falls in bucket i = ceil(log_gamma(v)) with gamma = (1 + a) / (1 - a),
a = 0.01; the bucket covers (gamma^(i-1), gamma^i] and is represented by
2 * gamma^i / (gamma + 1), which is within a of every value in it (Masson et al., "DDSketch",
VLDB 2019). Keys are shifted so that one signed integer orders every value:

    key 0            |v| < MIN_MAGNITUDE (zero, and denormal noise)
    key  BIAS + i    v > 0
    key -(BIAS + i)  v < 0 (mirror image, so larger magnitudes sort lower)

Histograms are two parallel arrays (keys ascending, counts), stored in the rollup tables as
`hist_keys int[]` and `hist_counts bigint[]` (an empty `hist_counts` in a 1-minute row means
a count of 1 per key, keys possibly repeated: see rollups.py). Merging is adding counts per
key, so minutes merge into hours, endpoints into totals and days into months without losing
the error bound.
`sql_bucket_key` builds the same key inside Postgres, so rollups never load points into Python.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "BIAS",
    "GAMMA",
    "MIN_MAGNITUDE",
    "RELATIVE_ACCURACY",
    "bucket_key",
    "bucket_value",
    "from_values",
    "grouped_quantiles",
    "merge",
    "quantile",
    "quantiles",
    "sql_bucket_key",
    "sql_bucket_value",
]

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
LN_GAMMA = math.log(GAMMA)
MIN_MAGNITUDE = 1e-9
# ceil(log_gamma(1e-9)) is about -1036, so every positive magnitude above MIN_MAGNITUDE maps
# to a key >= 1 and zero keeps key 0. Magnitudes above gamma^_MAX_INDEX (about 1.7e308, the
# top of the double range) share the last bucket, whose representative stays finite.
BIAS = 2000
_MAX_INDEX = math.floor(math.log(sys.float_info.max) / LN_GAMMA)


def _index(magnitude: float) -> int:
    return min(math.ceil(math.log(magnitude) / LN_GAMMA), _MAX_INDEX)


def bucket_key(value: float) -> int:
    """The histogram key of one value (see the module docstring for the key layout)."""
    if math.isnan(value):
        raise ValueError("NaN has no histogram bucket")
    if abs(value) < MIN_MAGNITUDE:
        return 0
    key = BIAS + _index(abs(value))
    return key if value > 0 else -key


def bucket_value(key: int) -> float:
    """The value that represents a bucket: within RELATIVE_ACCURACY of everything in it."""
    if key == 0:
        return 0.0
    magnitude = GAMMA ** (abs(key) - BIAS) * (2.0 / (GAMMA + 1.0))
    return magnitude if key > 0 else -magnitude


def from_values(values: Iterable[float]) -> tuple[list[int], list[int]]:
    """A histogram (keys ascending, counts) of raw values."""
    counts: dict[int, int] = {}
    for value in values:
        key = bucket_key(value)
        counts[key] = counts.get(key, 0) + 1
    keys = sorted(counts)
    return keys, [counts[k] for k in keys]


def merge(*histograms: tuple[Sequence[int], Sequence[int]]) -> tuple[list[int], list[int]]:
    """Add histograms key by key; merge(h(a), h(b)) == h(a + b)."""
    counts: dict[int, int] = {}
    for keys, cnts in histograms:
        for key, count in zip(keys, cnts, strict=True):
            counts[key] = counts.get(key, 0) + int(count)
    keys = sorted(k for k in counts if counts[k])
    return keys, [counts[k] for k in keys]


def quantile(keys: Sequence[int], counts: Sequence[int], q: float) -> float | None:
    """The q-quantile (0..1) of a histogram, or None when it is empty.

    Rank q * (n - 1) counted from zero, as DDSketch does: the value of the first bucket whose
    cumulative count exceeds that rank. Keys need not be sorted.
    """
    return quantiles(keys, counts, (q,))[0]


def quantiles(
    keys: Sequence[int], counts: Sequence[int], qs: Sequence[float]
) -> list[float | None]:
    """Several quantiles in one pass over the sorted buckets."""
    if any(not 0.0 <= q <= 1.0 for q in qs):
        raise ValueError("quantiles must be within [0, 1]")
    pairs = sorted(zip(keys, counts, strict=True))
    total = sum(c for _, c in pairs)
    if total <= 0:
        return [None for _ in qs]
    out: list[float | None] = []
    for q in qs:
        rank = q * (total - 1)
        seen = 0
        for key, count in pairs:
            seen += count
            if seen > rank:
                out.append(bucket_value(key))
                break
    return out


def sql_bucket_key(column: str) -> str:
    """A Postgres expression computing `bucket_key` of a double column (our own names only).

    `column` must be a trusted SQL expression from this code base, never user input. The
    constants are rendered with repr() so Postgres and Python agree to the last digit (a value
    sitting exactly on a bucket boundary may still land one bucket apart: still within 1 %).
    """
    ln_gamma = repr(LN_GAMMA)
    index = f"LEAST(ceil(ln(abs({column})) / {ln_gamma}), {_MAX_INDEX})::int + {BIAS}"
    return (
        f"(CASE WHEN abs({column}) < {MIN_MAGNITUDE!r} THEN 0 "
        f"WHEN {column} > 0 THEN {index} ELSE -({index}) END)"
    )


def sql_bucket_value(key_expr: str) -> str:
    """A Postgres expression turning a key back into its representative value."""
    gamma = repr(GAMMA)
    magnitude = f"(power({gamma}::float8, abs({key_expr}) - {BIAS}) * (2.0 / ({gamma} + 1.0)))"
    return f"(CASE WHEN {key_expr} = 0 THEN 0.0 ELSE sign({key_expr}) * {magnitude} END)"


def bucket_values(keys: np.ndarray) -> np.ndarray:
    """`bucket_value` for an array of keys."""
    keys = np.asarray(keys, dtype=np.int64)
    magnitude = np.power(GAMMA, np.abs(keys) - BIAS) * (2.0 / (GAMMA + 1.0))
    return np.where(keys == 0, 0.0, np.sign(keys) * magnitude)


def grouped_quantiles(
    group_ids: Sequence[int] | np.ndarray,
    keys: Sequence[Sequence[int]],
    counts: Sequence[Sequence[int]],
    n_groups: int,
    qs: Sequence[float],
) -> np.ndarray:
    """Quantiles of many histograms merged per group, vectorised: shape (n_groups, len(qs)).

    Row i (one stored histogram: keys[i], counts[i]) belongs to group group_ids[i]. All rows'
    buckets are sorted by (group, key) once; one running sum over everything then answers
    every group and quantile with a binary search (rank q * (n - 1), as `quantile`: a group's
    answer does not depend on the other groups read with it). Groups without counts get NaN.
    Duplicate keys need no merging first.
    """
    lengths = np.fromiter(map(len, keys), dtype=np.int64, count=len(keys))
    total = int(lengths.sum())
    flat_keys = np.fromiter(itertools.chain.from_iterable(keys), dtype=np.int64, count=total)
    flat_counts = np.fromiter(itertools.chain.from_iterable(counts), dtype=np.int64, count=total)
    groups = np.repeat(np.asarray(group_ids, dtype=np.int64), lengths)
    order = np.lexsort((flat_keys, groups))
    flat_keys, flat_counts, groups = flat_keys[order], flat_counts[order], groups[order]
    running = np.cumsum(flat_counts)
    per_group = np.bincount(groups, weights=flat_counts, minlength=n_groups)
    before = np.concatenate(([0.0], np.cumsum(per_group)[:-1]))
    out = np.full((n_groups, len(qs)), np.nan)
    has = per_group > 0
    for j, q in enumerate(qs):
        # the rank floored: a bucket's running count (an integer) exceeds q·(n − 1) exactly
        # when it exceeds its floor, and `before` then adds nothing a float could round
        targets = before[has] + np.floor(q * (per_group[has] - 1))
        at = np.searchsorted(running, targets, side="right")
        out[has, j] = bucket_values(flat_keys[at])
    return out
