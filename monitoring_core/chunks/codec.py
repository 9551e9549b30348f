"""Lossless encoding of one series' points (timestamps in microseconds, float64 values).

Pure functions, no I/O. A chunk holds the points of one series sorted by (time, value) and is
stored as two byte strings, each starting with a format byte:

- **timestamps**: microseconds since the Unix epoch as int64 (in milliseconds or seconds when
  every timestamp of the chunk is a whole one), written as the first value, the first delta and
  then the deltas of deltas (a regular 15 s scrape gives zeros), zig-zag
  mapped to unsigned, byte-shuffled (all first bytes, then all second bytes …, so the high
  bytes that are zero form long runs) and compressed with zstd.
- **values**: when every value is a decimal with at most `MAX_DECIMALS` digits after the point
  (v == round(v * 10**e) / 10**e exactly, as IEEE doubles — true for counters, integer gauges
  and values printed with a few decimals) they are stored as those integers, raw, as deltas or
  as deltas of deltas (whichever compresses smallest); otherwise as the XOR of each value's
  bits with the previous value's (Gorilla's idea) — both byte-shuffled and zstd-compressed.
  Decoding multiplies nothing back: it divides the integers by the same power of ten, the very
  operation the encoder checked, so every value comes back bit for bit (NaN, -0.0 and
  infinities take the XOR path).
"""

from __future__ import annotations

import threading

import numpy as np
import zstandard

__all__ = ["MAX_DECIMALS", "decode", "decode_times", "decode_values", "encode"]

MAX_DECIMALS = 9
_TIMES_V1, _XOR_V1, _DECIMAL_V1 = 1, 2, 3
_LEVEL = 3
_LIMIT = float(2**53)
_local = threading.local()


def _zstd() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    """One compressor and decompressor per thread (zstandard's objects are not thread-safe)."""
    pair = getattr(_local, "pair", None)
    if pair is None:
        pair = (zstandard.ZstdCompressor(level=_LEVEL), zstandard.ZstdDecompressor())
        _local.pair = pair
    return pair


def _shuffle(words: np.ndarray) -> bytes:
    """uint64 words -> their bytes grouped by significance (little-endian byte i of every word)."""
    as_bytes = words.astype("<u8", copy=False).view(np.uint8).reshape(-1, 8)
    return np.ascontiguousarray(as_bytes.T).tobytes()


def _unshuffle(data: bytes, count: int) -> np.ndarray:
    planes = np.frombuffer(data, dtype=np.uint8)
    if planes.size != count * 8:
        raise ValueError(f"chunk payload holds {planes.size} bytes, expected {count * 8}")
    return np.ascontiguousarray(planes.reshape(8, count).T).view("<u8").reshape(count)


def _zigzag(signed: np.ndarray) -> np.ndarray:
    s = signed.astype(np.int64, copy=False)
    return ((s << 1) ^ (s >> 63)).view(np.uint64)


def _unzigzag(words: np.ndarray) -> np.ndarray:
    u = words.view(np.uint64)
    return ((u >> np.uint64(1)).view(np.int64)) ^ -((u & np.uint64(1)).view(np.int64))


def _diff(values: np.ndarray, order: int) -> np.ndarray:
    """First value, then `order` levels of differences (the first of each level kept)."""
    out = values.astype(np.int64, copy=True)
    for _ in range(order):
        out[1:] = np.diff(out)  # wraps on overflow exactly as the inverse cumsum does
    return out


def _undiff(stream: np.ndarray, order: int) -> np.ndarray:
    out = stream.astype(np.int64, copy=True)
    for _ in range(order):
        out = np.cumsum(out, dtype=np.int64)
    return out


def _pack(kind: int, header: bytes, words: np.ndarray) -> bytes:
    compress = _zstd()[0].compress
    return bytes([kind]) + header + compress(_shuffle(words))


def encode_times(times_us: np.ndarray) -> bytes:
    """int64 microseconds (ascending) -> bytes: the unit (1 µs, 1 ms or 1 s, the coarsest that
    holds every timestamp exactly), then first value, first delta, deltas of deltas."""
    t = np.asarray(times_us, dtype=np.int64)
    exponent = next(e for e in (6, 3, 0) if not (t % 10**e).any())
    units = t // 10**exponent
    stream = units.copy()
    if len(t) > 1:
        d = np.diff(units)
        stream[1] = d[0]
        stream[2:] = np.diff(d)
    return _pack(_TIMES_V1, bytes([exponent]), _zigzag(stream))


def decode_times(data: bytes, count: int) -> np.ndarray:
    if len(data) < 2 or data[0] != _TIMES_V1:
        raise ValueError("unknown timestamp encoding")
    exponent = data[1]
    words = _unshuffle(_zstd()[1].decompress(data[2:], max_output_size=count * 8), count)
    stream = _unzigzag(words)
    if count > 1:
        d = np.cumsum(stream[1:], dtype=np.int64)
        units = np.concatenate((stream[:1], stream[0] + np.cumsum(d, dtype=np.int64)))
    else:
        units = stream.astype(np.int64)
    return units * np.int64(10**exponent)


def _decimal_ints(values: np.ndarray) -> tuple[int, np.ndarray] | None:
    """(e, ints) with ints / 10**e == values bit for bit, smallest e; None if there is none."""
    if not np.isfinite(values).all():
        return None
    bits = values.view(np.int64)
    head, head_bits = values[:16], bits[:16]
    for e in range(MAX_DECIMALS + 1):
        scale = 10.0**e
        # the first few values first: full-precision noise is turned down in ten tiny steps
        few = np.rint(head * scale)
        if np.abs(few).max(initial=0.0) >= _LIMIT or not np.array_equal(
            (few.astype(np.int64).astype(np.float64) / scale).view(np.int64), head_bits
        ):
            continue
        scaled = np.rint(values * scale)
        if np.abs(scaled).max(initial=0.0) >= _LIMIT:
            return None
        ints = scaled.astype(np.int64)
        # checked on the integers themselves: the decoder's exact operation (-0.0 fails here)
        if np.array_equal((ints.astype(np.float64) / scale).view(np.int64), bits):
            return e, ints
    return None


def encode_values(values: np.ndarray) -> bytes:
    """float64 values -> bytes, losslessly (see the module docstring)."""
    v = np.ascontiguousarray(values, dtype=np.float64)
    decimal = _decimal_ints(v)
    if decimal is not None:
        e, ints = decimal
        # raw, deltas or deltas of deltas: the one with the fewest significant bits (a cheap proxy
        # for the compressed size; compressing all three cost 2x the encoding time)
        streams = [_diff(ints, order) for order in (0, 1, 2)]
        order = int(
            np.argmin([np.log2(np.abs(x[2:].astype(np.float64)) + 1).sum() for x in streams])
        )
        return _pack(_DECIMAL_V1, bytes([e, order]), _zigzag(streams[order]))
    bits = v.view(np.uint64)
    xored = bits.copy()
    xored[1:] ^= bits[:-1]
    return _pack(_XOR_V1, b"", xored)


def decode_values(data: bytes, count: int) -> np.ndarray:
    if not data:
        raise ValueError("empty value encoding")
    kind, decompress = data[0], _zstd()[1].decompress
    if kind == _DECIMAL_V1:
        e, order = data[1], data[2]
        words = _unshuffle(decompress(data[3:], max_output_size=count * 8), count)
        return _undiff(_unzigzag(words), order).astype(np.float64) / 10.0**e
    if kind == _XOR_V1:
        words = _unshuffle(decompress(data[1:], max_output_size=count * 8), count).copy()
        return np.bitwise_xor.accumulate(words).view(np.float64)
    raise ValueError(f"unknown value encoding {kind}")


def encode(times_us: np.ndarray, values: np.ndarray) -> tuple[bytes, bytes]:
    """One series' points -> (timestamp bytes, value bytes); sorts them by (time, value)."""
    t = np.asarray(times_us, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    if t.shape != v.shape or t.ndim != 1 or not len(t):
        raise ValueError("a chunk needs as many timestamps as values, at least one")
    if len(t) > 1 and not ((t[1:] > t[:-1]) | ((t[1:] == t[:-1]) & (v[1:] >= v[:-1]))).all():
        order = np.lexsort((v, t))
        t, v = t[order], v[order]
    return encode_times(t), encode_values(v)


def decode(times: bytes, values: bytes, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(int64 microseconds, float64 values) of a chunk of `count` points."""
    return decode_times(times, count), decode_values(values, count)
