"""Many chunks decoded at once, bit for bit what `codec.decode` gives for each.

A long read meets tens of thousands of chunks (7 days x 1,000 series = 84,000 two-hour
stretches), most of them with few points (120 at a 60 s scrape): decoding them one by one
costs ~25 small numpy calls each, which is most of the read. Here chunks with the same point
count are stacked into one (chunks x points) array per step — unshuffling, zig-zag, the
cumulative sums of the timestamps and of decimal values, the XOR scan — and only the zstd
decompression stays per chunk. The operations are the codec's own, along the second axis, so
the results are identical; a chunk in a format this module does not know, or whose payload
has the wrong size, is handed to `codec.decode` (which decodes or raises as it always did).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from monitoring_core.chunks import codec

__all__ = ["decode_many", "encode_many"]

Stored = tuple[bytes, bytes, int]  # (times, vals, count) as in metric_chunks
BLOCK = 512
Points = tuple[np.ndarray, np.ndarray]


def _planes(payloads: list[bytes], count: int) -> np.ndarray:
    """zstd payloads of `count` shuffled words each -> (chunks x count) uint64."""
    joined = np.frombuffer(b"".join(payloads), dtype=np.uint8)
    stacked = joined.reshape(len(payloads), 8, count).transpose(0, 2, 1)
    return np.ascontiguousarray(stacked).view("<u8").reshape(len(payloads), count)


def _unzigzag(words: np.ndarray) -> np.ndarray:
    u = words.view(np.uint64)
    return ((u >> np.uint64(1)).view(np.int64)) ^ -((u & np.uint64(1)).view(np.int64))


def _times(stream: np.ndarray, exponents: np.ndarray) -> np.ndarray:
    units = stream.copy()
    if stream.shape[1] > 1:
        deltas = np.cumsum(stream[:, 1:], axis=1, dtype=np.int64)
        units[:, 1:] = stream[:, :1] + np.cumsum(deltas, axis=1, dtype=np.int64)
    return units * (np.int64(10) ** exponents.astype(np.int64))[:, None]


def _decompressed(data: bytes, skip: int, count: int) -> bytes | None:
    out = codec._zstd()[1].decompress(data[skip:], max_output_size=count * 8)
    return out if len(out) == count * 8 else None


def decode_many(chunks: Sequence[Stored]) -> list[Points]:
    """(int64 microseconds, float64 values) of each chunk, in the order given. In blocks of
    `BLOCK` chunks: arrays of a few MB stay in cache (one stack of 80,000 chunks was slower
    than decoding them one by one: every step a fresh 80 MB array)."""
    out: list[Points] = []
    for start in range(0, len(chunks), BLOCK):
        out += _decode_block(chunks[start : start + BLOCK])
    return out


def _decode_block(chunks: Sequence[Stored]) -> list[Points]:
    out: list[Points | None] = [None] * len(chunks)
    times: dict[int, list[tuple[int, int, bytes]]] = defaultdict(list)
    values: dict[tuple[int, int, int, int], list[tuple[int, bytes]]] = defaultdict(list)
    for i, (t_raw, v_raw, count) in enumerate(chunks):
        t_ok = len(t_raw) >= 2 and t_raw[0] == codec._TIMES_V1
        v_kind = v_raw[0] if v_raw else -1
        if count < 1 or not t_ok or v_kind not in (codec._DECIMAL_V1, codec._XOR_V1):
            out[i] = codec.decode(t_raw, v_raw, count)
            continue
        t_words = _decompressed(t_raw, 2, count)
        if v_kind == codec._DECIMAL_V1:
            if len(v_raw) < 3:
                out[i] = codec.decode(t_raw, v_raw, count)
                continue
            v_key, v_words = (count, v_kind, v_raw[1], v_raw[2]), _decompressed(v_raw, 3, count)
        else:
            v_key, v_words = (count, v_kind, 0, 0), _decompressed(v_raw, 1, count)
        if t_words is None or v_words is None:
            out[i] = codec.decode(t_raw, v_raw, count)  # raises the codec's own error
            continue
        times[count].append((i, t_raw[1], t_words))
        values[v_key].append((i, v_words))
    decoded_t: dict[int, np.ndarray] = {}
    for count, group in times.items():
        stream = _unzigzag(_planes([g[2] for g in group], count))
        stamps = _times(stream, np.array([g[1] for g in group]))
        decoded_t.update(zip([g[0] for g in group], stamps, strict=True))
    for (count, kind, e, order), members in values.items():
        words = _planes([m[1] for m in members], count)
        if kind == codec._XOR_V1:
            numbers = np.bitwise_xor.accumulate(words, axis=1).view(np.float64)
        else:
            ints = _unzigzag(words).astype(np.int64, copy=True)
            for _ in range(order):
                ints = np.cumsum(ints, axis=1, dtype=np.int64)
            numbers = ints.astype(np.float64) / 10.0**e
        for (i, _), row in zip(members, numbers, strict=True):
            out[i] = (decoded_t[i], row)
    return [p if p is not None else codec.decode(*chunks[i]) for i, p in enumerate(out)]


# ---------------------------------------------------------------- encoding many chunks at once
def encode_many(
    times_us: np.ndarray, values: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> list[tuple[bytes, bytes]]:
    """`codec.encode` of every chunk `times_us[s:e]`, `values[s:e]` for s, e in zip(starts,
    ends), byte for byte, each chunk already sorted by (time, value) (the caller sorts).

    Chunks of one length are stacked into one (chunks x points) array and every step of the
    codec — the timestamp unit, deltas of deltas, the decimal exponent search, the choice of
    raw/delta/delta-of-delta, XOR, zig-zag, the byte shuffle — runs once along the second axis;
    only the zstd compression is per chunk. Compacting a day meets ~12 chunks per series, a
    few hundred points each: one by one, ~25 small numpy calls a chunk were most of the cost.
    """
    t = np.ascontiguousarray(times_us, dtype=np.int64)
    v = np.ascontiguousarray(values, dtype=np.float64)
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(ends, dtype=np.int64) - starts
    if (lengths < 1).any():
        raise ValueError("a chunk needs at least one point")
    out: list[tuple[bytes, bytes] | None] = [None] * len(starts)
    order = np.argsort(lengths, kind="stable")
    cuts = np.flatnonzero(np.diff(lengths[order])) + 1
    for members in np.split(order, cuts):
        if not len(members):
            continue
        count = int(lengths[members[0]])
        for first in range(0, len(members), BLOCK):
            block = members[first : first + BLOCK]
            index = starts[block][:, None] + np.arange(count)
            encoded = zip(_encode_times(t[index]), _encode_values(v[index]), strict=True)
            for i, pair in zip(block.tolist(), encoded, strict=True):
                out[i] = pair
    return [pair for pair in out if pair is not None]


def _zigzag(signed: np.ndarray) -> np.ndarray:
    s = signed.astype(np.int64, copy=False)
    return ((s << 1) ^ (s >> 63)).view(np.uint64)


def _compressed(kinds: list[bytes], words: np.ndarray) -> list[bytes]:
    """Per row: its header, then zstd of the row's words shuffled by byte significance."""
    rows, count = words.shape
    shuffled = np.ascontiguousarray(
        words.astype("<u8", copy=False).view(np.uint8).reshape(rows, count, 8).transpose(0, 2, 1)
    ).reshape(rows, count * 8)
    compress = codec._zstd()[0].compress
    return [head + compress(row.data) for head, row in zip(kinds, shuffled, strict=True)]


def _encode_times(t: np.ndarray) -> list[bytes]:
    """codec.encode_times of each row (ascending int64 microseconds)."""
    exponent = np.where(
        ~(t % 1_000_000).any(axis=1), 6, np.where(~(t % 1_000).any(axis=1), 3, 0)
    ).astype(np.int64)
    units = t // (np.int64(10) ** exponent)[:, None]
    stream = units.copy()
    if t.shape[1] > 1:
        d = np.diff(units, axis=1)
        stream[:, 1] = d[:, 0]
        stream[:, 2:] = np.diff(d, axis=1)
    heads = [bytes([codec._TIMES_V1, e]) for e in exponent.tolist()]
    return _compressed(heads, _zigzag(stream))


def _decimal_rows(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """codec._decimal_ints of each row: (exponent per row, -1 where there is none; the
    integers, valid in the rows that have an exponent)."""
    rows = v.shape[0]
    bits = v.view(np.int64)
    exponent = np.full(rows, -1, dtype=np.int64)
    ints = np.zeros(v.shape, dtype=np.int64)
    open_rows = np.flatnonzero(np.isfinite(v).all(axis=1))
    head, head_bits = v[:, :16], bits[:, :16]
    limit = codec._LIMIT
    with np.errstate(invalid="ignore", over="ignore"):  # casts of too-large values are masked
        for e in range(codec.MAX_DECIMALS + 1):
            if not len(open_rows):
                break
            scale = 10.0**e
            few = np.rint(head[open_rows] * scale)
            head_ok = (np.abs(few).max(axis=1) < limit) & (
                (few.astype(np.int64).astype(np.float64) / scale).view(np.int64)
                == head_bits[open_rows]
            ).all(axis=1)
            tried = open_rows[head_ok]
            scaled = np.rint(v[tried] * scale)
            too_large = np.abs(scaled).max(axis=1) >= limit  # no larger exponent can do
            whole = scaled.astype(np.int64)
            exact = ~too_large & (
                (whole.astype(np.float64) / scale).view(np.int64) == bits[tried]
            ).all(axis=1)
            exponent[tried[exact]] = e
            ints[tried[exact]] = whole[exact]
            settled = np.zeros(rows, dtype=bool)
            settled[tried[exact | too_large]] = True
            open_rows = open_rows[~settled[open_rows]]
    return exponent, ints


def _encode_values(v: np.ndarray) -> list[bytes]:
    """codec.encode_values of each row."""
    rows, count = v.shape
    exponent, ints = _decimal_rows(v)
    words = np.empty((rows, count), dtype=np.uint64)
    heads: list[bytes] = [b""] * rows
    decimal = np.flatnonzero(exponent >= 0)
    if len(decimal):
        streams = [ints[decimal].copy()]
        for _ in range(2):  # codec._diff: the first value of each level kept
            level = streams[-1].copy()
            level[:, 1:] = np.diff(level, axis=1)
            streams.append(level)
        costs = np.stack(
            [np.log2(np.abs(s[:, 2:].astype(np.float64)) + 1).sum(axis=1) for s in streams]
        )
        chosen = np.argmin(costs, axis=0)
        picked = np.stack(streams)[chosen, np.arange(len(decimal))]
        words[decimal] = _zigzag(picked)
        for row, e, o in zip(
            decimal.tolist(), exponent[decimal].tolist(), chosen.tolist(), strict=True
        ):
            heads[row] = bytes([codec._DECIMAL_V1, e, o])
    xor = np.flatnonzero(exponent < 0)
    if len(xor):
        bits = v[xor].view(np.uint64)
        xored = bits.copy()
        xored[:, 1:] ^= bits[:, :-1]
        words[xor] = xored
        for row in xor.tolist():
            heads[row] = bytes([codec._XOR_V1])
    return _compressed(heads, words)
