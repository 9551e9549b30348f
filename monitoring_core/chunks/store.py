"""SQL around `metric_chunks` rows: write, read and expand them. Takes a Connection, never commits.

Timestamps travel as int64 microseconds since the Unix epoch. Rows are read and written in
bulk as packed byte strings (`timestamptz_send` / `float8send`: big-endian microseconds since
2000-01-01 and IEEE doubles), so a million points cost a few numpy calls, not a million
Python objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import Connection, text

from monitoring_core.chunks.codec import decode, encode

__all__ = [
    "PG_EPOCH_US",
    "Chunk",
    "delete_chunks",
    "expand_chunks",
    "expand_touched",
    "from_us",
    "insert_chunks",
    "lock_chunks",
    "points_of",
    "rows_from_packed",
    "to_us",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds


def to_us(moment: datetime) -> int:
    """An aware datetime -> Unix microseconds, exactly."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(us))


@dataclass(frozen=True)
class Chunk:
    """One series' points of one stretch, encoded (see chunks/codec.py)."""

    series_id: int
    start_us: int
    end_us: int
    count: int
    times: bytes
    vals: bytes

    @classmethod
    def of(cls, series_id: int, times_us: np.ndarray, values: np.ndarray) -> Chunk:
        encoded_t, encoded_v = encode(times_us, values)
        return cls(
            int(series_id),
            int(times_us.min()),
            int(times_us.max()),
            len(times_us),
            encoded_t,
            encoded_v,
        )

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """(int64 microseconds, float64 values), sorted by (time, value)."""
        return decode(self.times, self.vals, self.count)


def rows_from_packed(times: bytes | None, values: bytes | None) -> tuple[np.ndarray, np.ndarray]:
    """`string_agg(timestamptz_send(time), '')` and `string_agg(float8send(value), '')` ->
    (Unix microseconds int64, float64 values)."""
    t = np.frombuffer(times or b"", dtype=">i8").astype(np.int64) + PG_EPOCH_US
    v = np.frombuffer(values or b"", dtype=">f8").astype(np.float64)
    return t, v


_LOCK = text(
    "SELECT series_id, start_time, end_time, count, times, vals FROM metric_chunks "
    "WHERE series_id = ANY(:ids) AND start_time >= :lo AND start_time < :hi "
    "ORDER BY series_id, start_time FOR UPDATE"
)


def lock_chunks(
    conn: Connection, series_ids: Sequence[int], lo: datetime, hi: datetime
) -> list[Chunk]:
    """The chunks of these series starting in [lo, hi), row-locked until the transaction ends."""
    return [
        Chunk(sid, to_us(start), to_us(end), count, bytes(t), bytes(v))
        for sid, start, end, count, t, v in conn.execute(
            _LOCK, {"ids": list(series_ids), "lo": lo, "hi": hi}
        )
    ]


def delete_chunks(conn: Connection, chunks: Iterable[Chunk]) -> int:
    chunks = list(chunks)
    if not chunks:
        return 0
    return conn.execute(
        text(
            "DELETE FROM metric_chunks c USING unnest(CAST(:ids AS bigint[]), "
            "CAST(:starts AS timestamptz[])) AS k(series_id, start_time) "
            "WHERE c.series_id = k.series_id AND c.start_time = k.start_time"
        ),
        {"ids": [c.series_id for c in chunks], "starts": [from_us(c.start_us) for c in chunks]},
    ).rowcount


def insert_chunks(conn: Connection, chunks: Sequence[Chunk]) -> None:
    """COPY the chunks in (binary: the byte strings go as they are)."""
    if not chunks:
        return
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        statement = (
            "COPY metric_chunks (series_id, start_time, end_time, count, times, vals) "
            "FROM STDIN (FORMAT BINARY)"
        )
        with cursor.copy(statement) as copy:
            copy.set_types(["int8", "timestamptz", "timestamptz", "int4", "bytea", "bytea"])
            for c in chunks:
                copy.write_row(
                    (c.series_id, from_us(c.start_us), from_us(c.end_us), c.count, c.times, c.vals)
                )


def points_of(chunks: Iterable[Chunk]) -> dict[int, list[tuple[np.ndarray, np.ndarray]]]:
    out: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for chunk in chunks:
        out.setdefault(chunk.series_id, []).append(chunk.points())
    return out


def expand_chunks(conn: Connection, chunks: Sequence[Chunk], ingested_at: datetime) -> int:
    """Turn chunks back into metric_points rows (stamped `ingested_at`); points written."""
    if not chunks:
        return 0
    written = 0
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        statement = (
            "COPY metric_points (time, series_id, value, ingested_at) FROM STDIN (FORMAT BINARY)"
        )
        with cursor.copy(statement) as copy:
            copy.set_types(["timestamptz", "int8", "float8", "timestamptz"])
            for chunk in chunks:
                times, values = chunk.points()
                for us, value in zip(times.tolist(), values.tolist(), strict=True):
                    copy.write_row((from_us(us), chunk.series_id, value, ingested_at))
                written += chunk.count
    delete_chunks(conn, chunks)
    return written


# Rows ingested in (lo, hi] whose minute may hold points of a chunk: the rollup is about to
# recompute that minute from rows, so the chunk must be rows again first. The time filter
# against the newest chunk (an index probe) keeps this away from live rows: chunks are hours
# old, so the usual answer is no row at all and the chunks are not looked at.
_LATE = text(
    """
    SELECT DISTINCT p.series_id,
           date_bin('1 minute', p.time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS m
    FROM metric_points p
    WHERE p.ingested_at > :lo AND p.ingested_at <= :hi
      AND p.time < (SELECT max(end_time) FROM metric_chunks) + interval '1 minute'
    """
)
_TOUCHED = text(
    """
    SELECT DISTINCT c.series_id, c.start_time, c.end_time, c.count, c.times, c.vals
    FROM unnest(CAST(:ids AS bigint[]), CAST(:minutes AS timestamptz[])) AS late(series_id, m)
    JOIN metric_chunks c ON c.series_id = late.series_id
     AND c.start_time < late.m + interval '1 minute' AND c.end_time >= late.m
    """
)


def expand_touched(conn: Connection, lo: datetime, hi: datetime) -> int:
    """Before rolling up rows ingested in (lo, hi]: expand the chunks sharing a minute with
    one of them back into rows (stamped `lo`, so they count as already rolled up); the next
    compaction pass writes the merged chunk. Points expanded.

    The caller holds the metric rollup's advisory lock, which compaction takes too: no chunk
    changes under it.
    """
    late = conn.execute(_LATE, {"lo": lo, "hi": hi}).all()
    if not late:
        return 0
    params = {"ids": [sid for sid, _ in late], "minutes": [m for _, m in late]}
    chunks = [
        Chunk(sid, to_us(start), to_us(end), count, bytes(t), bytes(v))
        for sid, start, end, count, t, v in conn.execute(_TOUCHED, params)
    ]
    return expand_chunks(conn, chunks, lo)
