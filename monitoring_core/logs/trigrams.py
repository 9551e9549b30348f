"""Byte trigrams of log bodies: the substring index that replaces `pg_trgm` (pure).

The embedded Postgres has no `pg_trgm`, so the index is built here, the way pg_trgm works but
per block of records instead of per record (as log stores such as Loki and ClickHouse's
`ngrambf` skip indexes do): a block (one ingest batch's records of one service and UTC day,
`logs.store`) keeps the distinct trigrams of its bodies; a search for a substring asks the GIN
index for the blocks holding every trigram of the needle and reads only their rows, checking
each body. Log lines repeat their templates, so a block of a few hundred records has a few
thousand distinct trigrams where per-record trigrams would be ~200 per record: the index is
20-50x smaller and cheaper to write.

Trigrams alone find little in a block when the needle is mostly digits (a block of 512
records holds nearly every digit trigram), so a block also keeps its *words* (runs of ASCII
letters, digits, `_` and non-ASCII bytes), each hashed (CRC-32) into codes above the trigram
range. A needle's inner words — those with a separator on both sides inside the needle — must
appear whole in a matching body, so they are asked for too: `vendor 4242 processed` asks for
the word `4242`, which few blocks hold. Trigrams of three digits are left out of blocks and
needles alike (`_all_digits`: a third of a block's codes, each a GIN entry to write, and
nearly every block holds them); a needle of digits only has no code and reads the window.
A block's codes also hold its records' trace ids (`trace_code`, migration 0032).

Codes are taken from UTF-8 bytes with ASCII letters folded to lower case (`fold`); the SQL check
is `strpos(lower(body), lower(needle))` (Postgres's own case folding; `translate` would fold
only ASCII but costs ~20 µs a record). A needle asks only for trigrams and words made of ASCII
bytes, whose folding both sides agree on, so a non-ASCII letter in another case still matches.
Two letters lower-case to ASCII in Postgres (U+212A KELVIN SIGN, U+0130 dotted capital I): a
body spelling `k` or `i` with them is not found by an ASCII needle. A trigram is its three
bytes as one integer (0..2^24). Needles with no ASCII trigram (shorter than three bytes) read
the window's rows.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "ASCII_LOWER",
    "ASCII_UPPER",
    "MIN_NEEDLE_BYTES",
    "block_summary",
    "block_trigrams",
    "fold",
    "needle_trigrams",
    "trace_code",
    "verbatim_run",
]

ASCII_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ASCII_LOWER = "abcdefghijklmnopqrstuvwxyz"
MIN_NEEDLE_BYTES = 3
_WORD = re.compile(rb"[a-z0-9_\x80-\xff]+")
_WORD_BASE = 1 << 24  # word codes: 2^24 .. 2^31 - 1 (trigram codes are below)
_WORD_SPAN = (1 << 31) - _WORD_BASE
# bytes.translate table: every byte that is not part of a word becomes a space (split() is
# ~10x faster than the regex on a block)
# ASCII characters that are no letter: no case mapping changes one or yields one
_VERBATIM = re.compile(r"[\x01-\x40\x5b-\x60\x7b-\x7f]{2,}")
_SEPARATORS = bytes(
    b if (97 <= b <= 122 or 48 <= b <= 57 or b == 95 or b >= 128) else 32 for b in range(256)
)


def _word_code(word: bytes) -> int:
    return _WORD_BASE + zlib.crc32(word) % _WORD_SPAN


def fold(text: str) -> bytes:
    """UTF-8 bytes with ASCII letters lowered (other characters as they are)."""
    return text.encode("utf-8", "surrogatepass").lower()


def _codes(data: bytes) -> np.ndarray:
    raw = np.frombuffer(data, dtype=np.uint8).astype(np.int32)
    if raw.size < 3:
        return np.empty(0, dtype=np.int32)
    return (raw[:-2] << 16) | (raw[1:-1] << 8) | raw[2:]


def _all_digits(codes: np.ndarray) -> np.ndarray:
    """Trigrams of three ASCII digits: left out of blocks and needles alike. A block of a few
    hundred records holds nearly all 1,000 of them (a third of its codes, each a GIN entry
    to write) and they select nothing; a number in a needle is looked for by its word."""
    digit = np.uint32(0x303030)
    low = (codes & 0xF0F0F0) == digit  # each byte 0x30..0x3F
    return low & ((codes >> 16 & 0xF) <= 9) & ((codes >> 8 & 0xF) <= 9) & ((codes & 0xF) <= 9)


def block_trigrams(bodies: Sequence[str]) -> list[int]:
    """The distinct trigrams of the bodies, sorted, then their words' codes."""
    return block_summary(bodies)[0]


def trace_code(trace_id: str) -> int:
    """The code of a trace id in its records' block: its word code (migration 0032), so
    "logs of this trace" asks the GIN index instead of a per-record index."""
    return _word_code(fold(trace_id))


def _trace_codes(trace_ids: set[str]) -> set[int]:
    """`trace_code` of each, folded in one pass and hashed by map (a block's records often
    carry hundreds of distinct trace ids)."""
    if any("\x00" in t for t in trace_ids):  # not a hex id: one at a time
        return {trace_code(t) for t in trace_ids}
    folded = fold("\x00".join(trace_ids)).split(b"\x00") if trace_ids else []
    return {_WORD_BASE + crc % _WORD_SPAN for crc in map(zlib.crc32, folded)}


def block_summary(
    bodies: Sequence[str], trace_ids: Sequence[str | None] = ()
) -> tuple[list[int], int]:
    """(the block's codes: distinct trigrams sorted, windows across two bodies left out, then
    its words' codes and its records' trace ids' codes; the bodies' UTF-8 bytes). One
    encoding of the whole block."""
    traces = _trace_codes({t for t in trace_ids if t})
    if not bodies:
        return sorted(traces), 0
    data = "\x00".join(bodies).encode("utf-8", "surrogatepass").lower()  # = fold, once
    size = len(data) - (len(bodies) - 1)
    raw = np.frombuffer(data, dtype=np.uint8)
    codes = _codes(data)
    if not codes.size:
        return sorted(traces), size
    # a window touching a separator is no trigram of any body (bodies hold no NUL)
    keep = (raw[:-2] != 0) & (raw[1:-1] != 0) & (raw[2:] != 0) & ~_all_digits(codes)
    # the words' CRC-32s by map (C), their codes by numpy: ~3x faster than _word_code each
    crcs = np.fromiter(map(zlib.crc32, set(data.translate(_SEPARATORS).split())), np.int64)
    words = np.unique(
        np.concatenate((crcs % _WORD_SPAN + _WORD_BASE, np.fromiter(traces, np.int64)))
    )
    trigrams = np.sort(pd.unique(codes[keep]))  # hashing, then sorting the few distinct
    return trigrams.tolist() + words.tolist(), size


def needle_trigrams(needle: str) -> list[int]:
    """The needle's distinct ASCII trigrams (empty when it has none) and the codes of its
    inner ASCII words."""
    data = fold(needle)
    codes = _codes(data)
    trigrams = np.unique(codes[((codes & 0x808080) == 0) & ~_all_digits(codes)]).tolist()
    if not trigrams:
        return []
    inner = {
        _word_code(m.group())
        for m in _WORD.finditer(data)
        if m.start() > 0 and m.end() < len(data) and m.group().isascii()
    }
    return trigrams + sorted(inner)


def verbatim_run(needle: str) -> str:
    """The needle's longest run (2 characters or more) of ASCII characters that are no letter,
    or "": any case-insensitive match of the needle holds it as it is, since `lower()` leaves
    such characters alone and makes none of them from another character. A plain `strpos`
    for it rules out most rows before `strpos(lower(body), lower(needle))` converts the body."""
    return max(_VERBATIM.findall(needle), key=len, default="")
