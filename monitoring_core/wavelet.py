"""A weighted wavelet matrix: order statistics of many runs of one array, answered at once.

The backtest asks, at each of up to 518,400 steps, for a percentile of the values in a
window of a time-ordered array (a p95 of an hour of API requests, the order statistics
around a p95 of five minutes of events). Sorting each window is far too slow; a wavelet
matrix (Claude, Navarro and Ordóñez, "The wavelet matrix", SPIRE 2012) over the values'
integer codes answers "the code at rank r within positions [lo, hi)" (or within a union of
such runs) with one pass per bit of the codes, each pass one vectorised step over every
query. Weights make each position count that many times (a histogram bucket's count).
"""

from __future__ import annotations

import numpy as np

__all__ = ["Wavelet", "percentiles"]


class Wavelet:
    """A weighted wavelet matrix over non-negative integer codes in their stored order:
    the code at a weighted rank within a union of runs, for many queries at once."""

    def __init__(self, codes: np.ndarray, weights: np.ndarray | None = None) -> None:
        """`codes`: non-negative integers; `weights`: how often each counts (None: once,
        and the matrix holds half as much)."""
        self.levels: list[tuple[int, np.ndarray, np.ndarray, int]] = []
        top = int(codes.max()) if len(codes) else 0
        small = np.int32 if len(codes) < 2**31 - 1 else np.int64
        for level in range(max(1, top.bit_length()) - 1, -1, -1):
            zero = ((codes >> level) & 1) == 0
            zeros = np.zeros(len(codes) + 1, dtype=small)  # zeros before each position
            np.cumsum(zero, out=zeros[1:])
            weight = zeros
            if weights is not None:
                weight = np.concatenate(([0], np.cumsum(np.where(zero, weights, 0))))
            self.levels.append((level, zeros, weight, int(zeros[-1])))
            order = np.concatenate((np.flatnonzero(zero), np.flatnonzero(~zero)))
            codes = codes[order]
            if weights is not None:
                weights = weights[order]

    def at_rank(self, runs: list[tuple[np.ndarray, np.ndarray]], rank: np.ndarray) -> np.ndarray:
        """Per query, the code of the first element (in code order) whose running weight
        over the runs [lo, hi) exceeds `rank` (`np.searchsorted(running, rank, "right")`
        over the runs' merged, sorted histogram): rank must be below the runs' weight."""
        los = [lo.copy() for lo, _hi in runs]
        his = [hi.copy() for _lo, hi in runs]
        rank = rank.astype(np.float64, copy=True)
        code = np.zeros(len(rank), dtype=np.int64)
        for level, zeros, weight, total in self.levels:
            below = sum(weight[hi] - weight[lo] for lo, hi in zip(los, his, strict=True))
            left = rank < below
            rank = np.where(left, rank, rank - below)  # exact: integers off a float rank
            code |= np.where(left, 0, 1 << level)
            for r, (lo, hi) in enumerate(zip(los, his, strict=True)):
                zlo, zhi = zeros[lo], zeros[hi]
                los[r] = np.where(left, zlo, total + lo - zlo)
                his[r] = np.where(left, zhi, total + hi - zhi)
        return code


def percentiles(
    q: float, distinct: np.ndarray, tree: Wavelet, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Per window [lo, hi) of a group's values (ranked: `distinct` sorted values, `tree` a
    wavelet matrix of their codes), `np.percentile(values, 100 q)` as numpy's linear method
    computes it (virtual index (n − 1)·q, the order statistics either side, `_lerp`); NaN
    for an empty window."""
    n = hi - lo
    out = np.full(len(n), np.nan)
    some = np.flatnonzero(n > 0)
    if not len(some):
        return out
    count = n[some]
    index = (count - 1) * q
    previous = np.floor(index)
    last = index >= count - 1  # numpy takes the last value (index -1) for both
    below = np.where(last, count - 1, previous).astype(np.int64)
    above = np.where(last, count - 1, previous + 1).astype(np.int64)
    gamma = index - np.where(last, -1.0, previous)  # as numpy: after the index moved to -1
    runs = [(lo[some], hi[some])]
    a = distinct[tree.at_rank(runs, below.astype(np.float64))]
    b = distinct[tree.at_rank(runs, above.astype(np.float64))]
    diff = b - a
    value = a + diff * gamma
    late = gamma >= 0.5
    value[late] = (b - diff * (1 - gamma))[late]
    out[some] = value
    return out
