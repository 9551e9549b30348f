"""Many chunks decoded into two flat arrays, bit for bit what `codec.decode` gives for each.

A long read meets tens of thousands of chunks (7 days x 1,000 series = 83,000 two-hour
stretches of ~120 points). What costs is not the arithmetic but what is done per chunk in
Python, so here the per-chunk work is two zstd calls in a list comprehension and nothing else:
headers are read as byte columns, chunks of one point count are decoded together as a
(chunks x points) array in blocks of ~64 K points (they stay in cache) — unshuffling,
zig-zag, the cumulative sums of timestamps and decimal values, the XOR scan, the codec's own
operations along the second axis — and written into the output at each chunk's offset.

Anything unusual (an unknown format byte, a payload of the wrong size, a zstd error) sends
the whole call to `codec.decode` chunk by chunk, which decodes or raises as it always did.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import zstandard

from monitoring_core.chunks import codec

__all__ = ["decode_columns", "decode_stored"]

Stored = tuple[bytes, bytes, int]  # (times, vals, count) as in metric_chunks
Decoded = tuple[np.ndarray, np.ndarray, np.ndarray]
BLOCK_POINTS = 65_536
MANY_FRAMES = 4_096
THREADS = min(2, os.cpu_count() or 1)
_SCALES = np.array([10.0**e for e in range(256)])  # the codec's divisor, as Python computes it
_UNITS = np.array([10**e for e in range(19)], dtype=np.int64)  # 10**19 is past int64


class _Unusual(Exception):
    """A chunk the fast path does not decode: `codec.decode` takes the call."""


def decode_stored(chunks: Sequence[Stored]) -> Decoded:
    """`decode_columns` of chunks given one by one."""
    t_spans = _spans([len(t) for t, _, _ in chunks])
    v_spans = _spans([len(v) for _, v, _ in chunks])
    counts = np.fromiter((c for _, _, c in chunks), dtype=np.int64, count=len(chunks))
    times = b"".join([t for t, _, _ in chunks])
    return decode_columns(times, t_spans, b"".join([v for _, v, _ in chunks]), v_spans, counts)


def _spans(lengths: list[int]) -> np.ndarray:
    ends = np.cumsum(np.asarray(lengths, dtype=np.int64))
    return np.stack((ends - np.asarray(lengths, dtype=np.int64), ends), axis=1)


def decode_columns(
    times: bytes,
    t_spans: np.ndarray,
    vals: bytes,
    v_spans: np.ndarray,
    counts: np.ndarray,
    room: np.ndarray | None = None,
) -> Decoded:
    """(times, values, offsets) of chunks stored as byte ranges: chunk i is
    `times[t_spans[i, 0]:t_spans[i, 1]]`, `vals[v_spans[i, 0]:v_spans[i, 1]]` with `counts[i]`
    points. Its points start at offsets[i] of the int64 microseconds and float64 values
    returned, chunks in the order given; after them `room[i]` places are left unset for the
    caller (a series' rows after its last chunk), so chunk i + 1 starts at offsets[i + 1]."""
    t_spans = np.asarray(t_spans, dtype=np.int64).reshape(-1, 2)
    v_spans = np.asarray(v_spans, dtype=np.int64).reshape(-1, 2)
    counts = np.asarray(counts, dtype=np.int64)
    extra = np.zeros(len(counts), np.int64) if room is None else np.asarray(room, np.int64)
    try:
        return _fast(times, t_spans, vals, v_spans, counts, extra)
    except (_Unusual, zstandard.ZstdError, ValueError):  # the codec decodes or raises
        chunks = [
            (times[ta:tb], vals[va:vb], int(n))
            for (ta, tb), (va, vb), n in zip(
                t_spans.tolist(), v_spans.tolist(), counts.tolist(), strict=True
            )
        ]
        return _one_by_one(chunks, extra)


def _one_by_one(chunks: Sequence[Stored], room: np.ndarray) -> Decoded:
    decoded = [codec.decode(t, v, count) for t, v, count in chunks]
    offsets = np.zeros(len(decoded) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(np.array([len(t) for t, _ in decoded], dtype=np.int64) + room)
    out_t = np.empty(int(offsets[-1]), dtype=np.int64)
    out_v = np.empty(int(offsets[-1]), dtype=np.float64)
    for first, (t, v) in zip(offsets.tolist(), decoded, strict=False):
        out_t[first : first + len(t)], out_v[first : first + len(v)] = t, v
    return out_t, out_v, offsets


def _heads(blob: bytes, spans: np.ndarray, width: int) -> np.ndarray:
    """The first `width` bytes of every span as a (spans x width) uint8 array (0 past a
    span's end: the caller checks the lengths it needs)."""
    data = np.frombuffer(blob, dtype=np.uint8)
    index = spans[:, :1] + np.arange(width)
    inside = index < spans[:, 1:]
    if not len(data):
        return np.zeros(index.shape, dtype=np.uint8)
    return np.where(inside, data[np.minimum(index, len(data) - 1)], 0).astype(np.uint8)


def _payloads(blob: bytes, first: np.ndarray, last: np.ndarray, sizes: np.ndarray) -> Any:
    """The zstd frames blob[first[i]:last[i]] decompressed (`sizes[i]` bytes each, else a
    ZstdError), as a sequence of buffers: one call into the library for all of them, on
    `THREADS` threads for a long read."""
    segments = np.stack((first, last - first), axis=1).astype(np.uint64)
    frames = zstandard.BufferWithSegments(blob, segments.tobytes())
    threads = THREADS if len(sizes) >= MANY_FRAMES else 1
    return codec._zstd()[1].multi_decompress_to_buffer(
        frames, decompressed_sizes=sizes.astype(np.uint64).tobytes(), threads=threads
    )


def _unzigzag(words: np.ndarray) -> np.ndarray:
    u = words.view(np.uint64)
    return ((u >> np.uint64(1)).view(np.int64)) ^ -((u & np.uint64(1)).view(np.int64))


def _planes(payloads: list[Any], rows: int, count: int) -> np.ndarray:
    """Byte-shuffled payloads of `count` words each -> (rows x count) uint64."""
    planes = np.frombuffer(b"".join(payloads), dtype=np.uint8).reshape(rows, 8, count)
    out = np.empty((rows, count, 8), dtype=np.uint8)
    for j in range(8):  # plane by plane: long inner loops (a transposed copy runs 8 at a time)
        out[:, :, j] = planes[:, j, :]
    return out.view("<u8").reshape(rows, count)


def _fast(
    times: bytes,
    t_spans: np.ndarray,
    vals: bytes,
    v_spans: np.ndarray,
    counts: np.ndarray,
    room: np.ndarray,
) -> Decoded:
    size = len(counts)
    if not size:
        return np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(1, np.int64)
    if int(counts.min()) < 1:
        raise _Unusual
    t_head, v_head = _heads(times, t_spans, 2), _heads(vals, v_spans, 3)
    exponents = t_head[:, 1].astype(np.int64)
    kinds = v_head[:, 0]
    decimal = kinds == codec._DECIMAL_V1
    skips = np.where(decimal, 3, 1)
    if (
        not (t_head[:, 0] == codec._TIMES_V1).all()
        or not (decimal | (kinds == codec._XOR_V1)).all()
        or int(exponents.max()) >= len(_UNITS)
        or ((t_spans[:, 1] - t_spans[:, 0]) < 2).any()
        or ((v_spans[:, 1] - v_spans[:, 0]) < skips).any()
    ):
        raise _Unusual
    sizes = counts * 8
    offsets = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(counts + room, out=offsets[1:])
    order = np.argsort(counts, kind="stable")
    cuts = np.flatnonzero(np.diff(counts[order])) + 1
    blocks = []
    for members in np.split(order, cuts):
        count = int(counts[members[0]])
        per = max(1, BLOCK_POINTS // count)
        blocks += [(members[i : i + per], count) for i in range(0, len(members), per)]
    # the two streams one after the other: one stream's payloads in memory at a time
    out_t = np.empty(int(offsets[-1]), dtype=np.int64)
    words = _payloads(times, t_spans[:, 0] + 2, t_spans[:, 1], sizes)

    def decode_times(block: np.ndarray, count: int) -> None:
        rows = block.tolist()
        stream = _planes([words[i] for i in rows], len(rows), count)
        _place(out_t, _times(stream, exponents[block]), offsets, block, count)

    _each(decode_times, blocks)
    out_v = np.empty(int(offsets[-1]), dtype=np.float64)
    words = _payloads(vals, v_spans[:, 0] + skips, v_spans[:, 1], sizes)

    def decode_values(block: np.ndarray, count: int) -> None:
        rows = block.tolist()
        stream = _planes([words[i] for i in rows], len(rows), count)
        heads = v_head[block]
        _place(
            out_v, _values(stream, decimal[block], heads[:, 1], heads[:, 2]), offsets, block, count
        )

    _each(decode_values, blocks)
    return out_t, out_v, offsets


def _each(decode: Any, blocks: list[tuple[np.ndarray, int]]) -> None:
    """`decode(block, count)` of every block, on `THREADS` threads for a long read (numpy
    lets go of the GIL in its loops; blocks write disjoint places)."""
    if THREADS > 1 and len(blocks) >= 2 * THREADS:
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(decode, *zip(*blocks, strict=True)))
    else:
        for block, count in blocks:
            decode(block, count)


def _times(words: np.ndarray, exponents: np.ndarray) -> np.ndarray:
    stream = _unzigzag(words)
    units = stream.copy()
    if stream.shape[1] > 1:
        deltas = np.cumsum(stream[:, 1:], axis=1, dtype=np.int64)
        units[:, 1:] = stream[:, :1] + np.cumsum(deltas, axis=1, dtype=np.int64)
    return units * _UNITS[exponents][:, None]


def _values(
    words: np.ndarray, decimal: np.ndarray, exponents: np.ndarray, orders: np.ndarray
) -> np.ndarray:
    if not decimal.any():
        return np.bitwise_xor.accumulate(words, axis=1).view(np.float64)
    out = np.empty(words.shape, dtype=np.float64)
    xor = ~decimal
    if xor.any():
        out[xor] = np.bitwise_xor.accumulate(words[xor], axis=1).view(np.float64)
    every = bool(decimal.all())
    ints = _unzigzag(words if every else words[decimal]).astype(np.int64, copy=True)
    levels = orders if every else orders[decimal]
    for level in range(1, int(levels.max(initial=0)) + 1):
        if bool((levels >= level).all()):
            ints = np.cumsum(ints, axis=1, dtype=np.int64)
        else:
            deeper = levels >= level
            ints[deeper] = np.cumsum(ints[deeper], axis=1, dtype=np.int64)
    scales = _SCALES[exponents if every else exponents[decimal]][:, None]
    if every:
        return ints.astype(np.float64) / scales
    out[decimal] = ints.astype(np.float64) / scales
    return out


def _place(
    out: np.ndarray, block: np.ndarray, offsets: np.ndarray, members: np.ndarray, count: int
) -> None:
    """Rows of `block` (chunks `members`, ascending, `count` points each) to their chunks'
    offsets: one copy per run of chunks that follow each other in the output (a series' full
    chunks do)."""
    cuts = np.flatnonzero(np.diff(offsets[members]) != count) + 1
    bounds = [0, *cuts.tolist(), len(members)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        first = int(offsets[members[a]])
        out[first : first + (b - a) * count] = block[a:b].ravel()
