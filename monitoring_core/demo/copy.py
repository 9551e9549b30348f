"""Binary COPY of whole numpy columns, inside the caller's transaction.

The demo writes about a million rows; psycopg's `write_row` costs ~2 µs a row in Python, so
the binary COPY stream is laid out by numpy instead, a chunk of rows at a time: each field is
a 4-byte big-endian length (-1 for NULL) and its bytes, each row a 2-byte field count
(Postgres "COPY … FORMAT BINARY"). Text comes either as fixed-length bytes (`S` arrays) or
as codes into a small vocabulary, which covers every text column of the demo.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection

__all__ = ["Column", "coded", "copy_columns", "fixed", "random_ids", "text"]

PG_EPOCH = np.datetime64("2000-01-01T00:00:00", "us")  # binary timestamptz counts µs from here
CHUNK_ROWS = 100_000  # bounds the index arrays to a few tens of MB
_BIG_ENDIAN = {
    "int2": ">i2",
    "int4": ">i4",
    "int8": ">i8",
    "float8": ">f8",
    "bool": "u1",
    "timestamptz": ">i8",
}
_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_TRAILER = b"\xff\xff"


@dataclass(frozen=True)
class Column:
    """Values of one column: fixed-width bytes per row, or codes into `labels` (text)."""

    data: np.ndarray  # (rows, width) uint8, or (rows,) int codes when labels is set
    labels: tuple[bytes, ...] | None = None
    null: np.ndarray | None = None  # True where the value is NULL

    def __len__(self) -> int:
        return len(self.data)

    def widths(self) -> np.ndarray:
        """Bytes of each row's value (without the 4-byte length)."""
        if self.labels is None:
            sizes = np.full(len(self.data), self.data.shape[1], dtype=np.int64)
        else:
            sizes = np.array([len(label) for label in self.labels], dtype=np.int64)[self.data]
        return sizes if self.null is None else np.where(self.null, 0, sizes)

    def take(self, rows: slice) -> Column:
        null = None if self.null is None else self.null[rows]
        return Column(self.data[rows], self.labels, null)


def fixed(pg_type: str, values: np.ndarray, null: np.ndarray | None = None) -> Column:
    """A number, bool or timestamptz (numpy datetime64, UTC) column."""
    if pg_type == "timestamptz":
        values = (values.astype("datetime64[us]") - PG_EPOCH).astype(np.int64)
    raw = np.ascontiguousarray(values.astype(_BIG_ENDIAN[pg_type]))
    return Column(raw.view(np.uint8).reshape(len(values), raw.dtype.itemsize), None, null)


def text(values: np.ndarray, null: np.ndarray | None = None) -> Column:
    """A text column: fixed-length ASCII bytes (`S` dtype) or strings from a small vocabulary."""
    if values.dtype.kind == "S":
        raw = np.ascontiguousarray(values)
        return Column(raw.view(np.uint8).reshape(len(values), raw.dtype.itemsize), None, null)
    labels, codes = np.unique(values.astype(str), return_inverse=True)
    return Column(codes, tuple(str(label).encode() for label in labels), null)


def coded(codes: np.ndarray, labels: Sequence[str], null: np.ndarray | None = None) -> Column:
    """A text column given as indexes into `labels` (labels may repeat)."""
    return Column(np.asarray(codes, dtype=np.int64), tuple(s.encode() for s in labels), null)


def random_ids(rng: np.random.Generator, rows: int, prefix: str, hex_digits: int) -> np.ndarray:
    """Fixed-length ASCII ids like `req_3f9a…` (an `S` array), without a Python loop."""
    digits = np.frombuffer(b"0123456789abcdef", np.uint8)
    out = np.empty((rows, len(prefix) + hex_digits), np.uint8)
    out[:, : len(prefix)] = np.frombuffer(prefix.encode(), np.uint8)
    out[:, len(prefix) :] = digits[rng.integers(0, 16, (rows, hex_digits))]
    return out.view(f"S{out.shape[1]}").ravel()


def _scatter(buf: np.ndarray, starts: np.ndarray, data: np.ndarray) -> None:
    """Write row i of `data` (rows, width) at buf[starts[i]:starts[i] + width]."""
    if len(starts):
        buf[starts[:, None] + np.arange(data.shape[1])] = data


def _payload(columns: Sequence[Column]) -> bytes:
    """The binary COPY rows (no header or trailer) of equally long columns."""
    n = len(columns[0])
    widths = [column.widths() for column in columns]
    row_sizes = 2 + np.sum([4 + w for w in widths], axis=0, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(row_sizes)[:-1]]).astype(np.int64)
    buf = np.zeros(int(row_sizes.sum()), dtype=np.uint8)
    _scatter(buf, starts, np.full(n, len(columns), ">i2").view(np.uint8).reshape(n, 2))
    at = starts + 2
    for column, width in zip(columns, widths, strict=True):
        lengths = width if column.null is None else np.where(column.null, -1, width)
        _scatter(buf, at, lengths.astype(">i4").view(np.uint8).reshape(n, 4))
        present = np.ones(n, bool) if column.null is None else ~column.null
        if column.labels is None:
            _scatter(buf, at[present] + 4, column.data[present])
        else:
            for code, label in enumerate(column.labels):
                rows = present & (column.data == code)
                _scatter(buf, at[rows] + 4, np.frombuffer(label, np.uint8)[None, :])
        at = at + 4 + width
    return buf.tobytes()


def copy_columns(conn: Connection, table: str, columns: Mapping[str, Column]) -> int:
    """COPY equally long columns (name -> Column) into `table`; rows written."""
    lengths = {len(column) for column in columns.values()}
    if len(lengths) != 1:
        raise ValueError(f"columns of {table} differ in length: {sorted(lengths)}")
    rows = lengths.pop()
    # Table and column names come from our own code, never from input.
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(_HEADER)
        for first in range(0, rows, CHUNK_ROWS):
            part = slice(first, first + CHUNK_ROWS)
            copy.write(_payload([column.take(part) for column in columns.values()]))
        copy.write(_TRAILER)
    return rows
