"""The wavelet matrix against sorting: the code at a weighted rank within runs of an array."""

from __future__ import annotations

import numpy as np

from monitoring_core.wavelet import Wavelet


def _brute(codes: np.ndarray, weights: np.ndarray, runs: list[tuple[int, int]], rank: float) -> int:
    picked = np.concatenate([np.arange(lo, hi) for lo, hi in runs])
    order = np.argsort(codes[picked], kind="stable")
    running = np.cumsum(weights[picked][order])
    return int(codes[picked][order][np.searchsorted(running, rank, side="right")])


def test_ranks_in_unions_of_runs_match_sorting() -> None:
    rng = np.random.default_rng(5)
    for size, top in ((1, 0), (7, 1), (300, 5), (2_000, 900)):
        codes = rng.integers(0, top + 1, size=size)
        for weights in (None, rng.integers(1, 4, size=size)):
            tree = Wavelet(codes, weights)
            w = np.ones(size, dtype=np.int64) if weights is None else weights
            queries = []
            for _ in range(200):
                cuts = np.sort(rng.integers(0, size + 1, size=2 * int(rng.integers(1, 4))))
                runs = [(int(a), int(b)) for a, b in cuts.reshape(-1, 2)]
                total = sum(int(w[a:b].sum()) for a, b in runs)
                if total:  # a rank below the runs' weight: whole ones and fractional ones
                    rank = float(rng.uniform(0, total - 1e-9))
                    queries.append((runs, float(int(rank)) if rng.random() < 0.5 else rank))
            for n_runs in (1, 2, 3):
                asked = [(r, k) for r, k in queries if len(r) == n_runs]
                if not asked:
                    continue
                runs = [
                    (np.array([r[j][0] for r, _ in asked]), np.array([r[j][1] for r, _ in asked]))
                    for j in range(n_runs)
                ]
                got = tree.at_rank(runs, np.array([k for _, k in asked]))
                want = [_brute(codes, w, r, k) for r, k in asked]
                assert got.tolist() == want, (size, top, n_runs)
