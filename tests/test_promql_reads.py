"""Long PromQL reads decode many chunks at once (`chunks.batch.decode_many`): bit for bit what
`codec.decode` gives for each chunk, whatever mix of formats and sizes a read meets."""

from __future__ import annotations

import numpy as np
import pytest

from monitoring_core.chunks import batch, codec


def _series(rng: np.random.Generator, kind: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    start = int(rng.integers(1_500_000_000, 1_800_000_000)) * 1_000_000
    step = [15_000_000, 1_000, 60_000_000, 1][kind % 4]
    times = start + np.cumsum(rng.integers(0, 3, count) * step + step)
    values = [
        np.cumsum(rng.poisson(30, count)).astype(float),  # counter: decimal deltas
        np.round(rng.normal(50, 10, count), 2),  # two decimals
        rng.normal(0, 1, count),  # full precision: XOR
        np.where(rng.random(count) < 0.1, np.nan, rng.normal(0, 1e300, count)),  # NaN, huge
        np.full(count, -0.0),  # -0.0 takes the XOR path
        rng.integers(-(2**52), 2**52, count).astype(float),  # large integers
    ][kind % 6]
    return times.astype(np.int64), values


def test_decode_many_is_bit_for_bit_decode() -> None:
    rng = np.random.default_rng(16)
    stored = []
    for i in range(400):
        count = int(rng.choice([1, 2, 3, 120, 120, 120, 480, int(rng.integers(1, 900))]))
        times, values = _series(rng, i, count)
        t_raw, v_raw = codec.encode(times, values)
        stored.append((t_raw, v_raw, count))
    got = batch.decode_many(stored)
    for (t_raw, v_raw, count), (t, v) in zip(stored, got, strict=True):
        want_t, want_v = codec.decode(t_raw, v_raw, count)
        assert t.dtype == np.int64 and np.array_equal(t, want_t)
        assert np.array_equal(v.view(np.uint64), want_v.view(np.uint64))


def test_decode_many_raises_what_decode_raises_for_a_bad_chunk() -> None:
    t_raw, v_raw = codec.encode(np.arange(10, dtype=np.int64), np.arange(10.0))
    with pytest.raises(ValueError, match="expected 96"):
        batch.decode_many([(t_raw, v_raw, 10), (t_raw, v_raw, 12)])
    with pytest.raises(ValueError, match="unknown timestamp encoding"):
        batch.decode_many([(b"\x09" + t_raw[1:], v_raw, 10)])
    assert batch.decode_many([]) == []
