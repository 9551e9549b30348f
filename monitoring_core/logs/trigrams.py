"""Byte trigrams of log bodies: the substring index that replaces `pg_trgm` (pure).

The embedded Postgres has no `pg_trgm`, so the index is built here, the way pg_trgm works but
per block of records instead of per record (as log stores such as Loki and ClickHouse's
`ngrambf` skip indexes do): a block (one ingest batch's records of one service and UTC day,
`logs.store`) keeps the distinct trigrams of its bodies; a search for a substring asks the GIN
index for the blocks holding every trigram of the needle and reads only their rows, checking
each body. Log lines repeat their templates, so a block of a few hundred records has a few
thousand distinct trigrams where per-record trigrams would be ~200 per record: the index is
20-50x smaller and cheaper to write.

Matching is on UTF-8 bytes with ASCII letters folded to lower case (`fold`); the SQL check is
`strpos(translate(body, 'A..Z', 'a..z'), folded needle)`, the same rule, so the index never
misses a match. A trigram is its three bytes as one integer (0..2^24). Needles shorter than
three bytes have no trigram: those searches read the window's rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "ASCII_LOWER",
    "ASCII_UPPER",
    "MIN_NEEDLE_BYTES",
    "block_trigrams",
    "fold",
    "needle_trigrams",
]

ASCII_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ASCII_LOWER = "abcdefghijklmnopqrstuvwxyz"
MIN_NEEDLE_BYTES = 3


def fold(text: str) -> bytes:
    """UTF-8 bytes with ASCII letters lowered (other characters as they are)."""
    return text.encode("utf-8", "surrogatepass").lower()


def _codes(data: bytes) -> np.ndarray:
    raw = np.frombuffer(data, dtype=np.uint8).astype(np.int32)
    if raw.size < 3:
        return np.empty(0, dtype=np.int32)
    return (raw[:-2] << 16) | (raw[1:-1] << 8) | raw[2:]


def block_trigrams(bodies: Sequence[str]) -> list[int]:
    """The distinct trigrams of the bodies, sorted (windows across two bodies left out)."""
    if not bodies:
        return []
    data = b"\x00".join(fold(body) for body in bodies)
    raw = np.frombuffer(data, dtype=np.uint8)
    codes = _codes(data)
    if not codes.size:
        return []
    # a window touching a separator is no trigram of any body (bodies hold no NUL)
    keep = (raw[:-2] != 0) & (raw[1:-1] != 0) & (raw[2:] != 0)
    return np.unique(codes[keep]).tolist()


def needle_trigrams(needle: str) -> list[int]:
    """The needle's distinct trigrams (empty when it is shorter than three bytes)."""
    return np.unique(_codes(fold(needle))).tolist()
