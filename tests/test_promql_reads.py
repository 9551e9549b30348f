"""Long PromQL reads decode many chunks at once (`chunks.columns`, and `chunks.batch`): bit for
bit what `codec.decode` gives for each chunk, whatever mix of formats and sizes a read meets;
and the points reader built on it gives what decoding every chunk and row one by one gives
(overlapping chunks, late rows, points at one instant, spans cutting chunks)."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine

from monitoring_core.chunks import batch, codec, columns
from monitoring_core.chunks.store import Chunk, from_us, insert_chunks, to_us
from monitoring_core.points_reader import read_points_us
from tests.rollup_fixtures import add_points, add_series


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


def _stored(seed: int, size: int) -> list[tuple[bytes, bytes, int]]:
    rng = np.random.default_rng(seed)
    stored = []
    for i in range(size):
        count = int(rng.choice([1, 2, 3, 120, 120, 120, 480, int(rng.integers(1, 900))]))
        times, values = _series(rng, i, count)
        stored.append((*codec.encode(times, values), count))
    return stored


def test_decode_columns_is_bit_for_bit_decode() -> None:
    stored = _stored(15, 600)
    times, values, offsets = columns.decode_stored(stored)
    assert times.dtype == np.int64 and values.dtype == np.float64
    for i, (t_raw, v_raw, count) in enumerate(stored):
        want_t, want_v = codec.decode(t_raw, v_raw, count)
        a, b = offsets[i], offsets[i + 1]
        assert np.array_equal(times[a:b], want_t)
        assert np.array_equal(values[a:b].view(np.uint64), want_v.view(np.uint64))
    empty = columns.decode_stored([])
    assert [len(x) for x in empty] == [0, 0, 1]


def test_decode_columns_raises_what_decode_raises() -> None:
    t_raw, v_raw = codec.encode(np.arange(10, dtype=np.int64), np.arange(10.0))
    good = (t_raw, v_raw, 10)
    with pytest.raises(ValueError, match="expected 96"):
        columns.decode_stored([good, (t_raw, v_raw, 12)])
    with pytest.raises(ValueError, match="unknown timestamp encoding"):
        columns.decode_stored([good, (b"\x09" + t_raw[1:], v_raw, 10)])
    with pytest.raises(ValueError, match="empty value encoding"):
        columns.decode_stored([(t_raw, b"", 10)])


def test_decode_columns_leaves_room_after_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = _stored(16, 300)
    room = np.random.default_rng(1).integers(0, 3, len(stored)) * 7
    t_spans = columns._spans([len(t) for t, _, _ in stored])
    v_spans = columns._spans([len(v) for _, v, _ in stored])
    counts = np.array([c for _, _, c in stored])
    args = (b"".join(t for t, _, _ in stored), t_spans, b"".join(v for _, v, _ in stored), v_spans)
    fast = columns.decode_columns(*args, counts, room)

    def unusual(*_: object) -> None:
        raise columns._Unusual

    monkeypatch.setattr(columns, "_fast", unusual)
    for times, values, offsets in (fast, columns.decode_columns(*args, counts, room)):
        assert np.array_equal(np.diff(offsets), counts + room)
        for i, (t_raw, v_raw, count) in enumerate(stored):
            want_t, want_v = codec.decode(t_raw, v_raw, count)
            a = offsets[i]
            assert np.array_equal(times[a : a + count], want_t)
            assert np.array_equal(values[a : a + count].view(np.uint64), want_v.view(np.uint64))


def _reference(
    chunks: list[Chunk], rows: dict[int, list[tuple[int, float]]], lo: int, hi: int
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Every chunk decoded alone plus the rows, in (lo, hi], in (time, value) order."""
    parts: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for chunk in chunks:
        parts.setdefault(chunk.series_id, []).append(chunk.points())
    for sid, points in rows.items():
        t = np.array([p[0] for p in points], dtype=np.int64)
        parts.setdefault(sid, []).append((t, np.array([p[1] for p in points])))
    out = {}
    for sid, pieces in parts.items():
        t = np.concatenate([p[0] for p in pieces])
        v = np.concatenate([p[1] for p in pieces])
        keep = (t > lo) & (t <= hi)
        t, v = t[keep], v[keep]
        order = np.lexsort((v, t))
        if len(t):
            out[sid] = (t[order], v[order])
    return out


def test_points_reader_equals_decoding_one_by_one(engine: Engine, now: datetime) -> None:
    rng = np.random.default_rng(7)
    base = to_us(now - timedelta(hours=20))
    chunks: list[Chunk] = []
    rows: dict[int, list[tuple[int, float]]] = {}
    with engine.begin() as conn:
        for s in range(12):
            sid = add_series(conn, "reads_total", {"s": str(s)})
            step = int(rng.choice([1_000_000, 15_000_000, 60_000_000]))
            at = base + int(rng.integers(0, 3600)) * 1_000_000
            value = 0.0
            for _ in range(int(rng.integers(0, 5)) if s != 3 else 0):  # series 3: rows only
                count = int(rng.integers(1, 200))
                t = at + np.arange(count, dtype=np.int64) * step
                if rng.random() < 0.3:
                    t[count // 2 :] -= step * (count // 4)  # instants repeated in a chunk
                v = value + np.cumsum(rng.poisson(3, count)).astype(float)
                if s % 4 == 1:
                    v = np.round(rng.normal(0, 5, count), 3)
                if s == 5 and len(chunks) % 3 == 0:
                    v[0] = np.nan
                value = float(v[-1]) if np.isfinite(v[-1]) else value
                chunks.append(Chunk.of(sid, t, v))
                # the next chunk follows, touches or (now and then) overlaps this one
                at = int(t.max()) + int(rng.choice([step, 0, -step * 3, 7_200_000_000]))
                if chunks[-1].start_us == at:
                    at += 1
            late = [
                (int(rng.integers(base, at + 3_600_000_000)), float(rng.integers(0, 9)))
                for _ in range(int(rng.integers(0, 30)))
            ]
            if s % 3 == 0 and late:
                late.append(late[0])  # a duplicate row
                late.append((late[0][0], late[0][1] + 1))  # another value at the same instant
            if late:
                rows[sid] = late
                add_points(conn, sid, [(from_us(t), v) for t, v in late])
        by_start = {}
        for chunk in chunks:
            by_start[(chunk.series_id, chunk.start_us)] = chunk  # one chunk per key
        chunks = list(by_start.values())
        insert_chunks(conn, chunks)
    ids = sorted({c.series_id for c in chunks} | set(rows) | {999_999})
    with engine.connect() as conn:
        for lo_h, hi_h in [(0, 30), (2, 9), (5, 5.5), (19.9, 20), (-30, 2)]:
            lo = base + int(lo_h * 3_600_000_000)
            hi = base + int(hi_h * 3_600_000_000)
            got = read_points_us(conn, ids, from_us(lo), from_us(hi))
            want = _reference(chunks, rows, lo, hi)
            assert sorted(got) == sorted(want), (lo_h, hi_h)
            for sid, (t, v) in want.items():
                assert np.array_equal(got[sid][0], t), (lo_h, hi_h, sid)
                assert np.array_equal(got[sid][1].view(np.uint64), v.view(np.uint64))
