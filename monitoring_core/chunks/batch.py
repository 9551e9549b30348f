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

__all__ = ["decode_many"]

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
