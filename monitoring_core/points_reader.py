"""The one reader of raw metric points: every raw read (live metrics, the alert engine's raw
window, backtest, PromQL, retention, exports) goes through `read_points`.

Convention: the span is **(start, end]** — a point at exactly `start` is left out, a point at
exactly `end` is included (the alert engine's and PromQL's windows both look back from an
instant that belongs to the window). Per series the answer is two float64 arrays of equal
length: epoch seconds sorted ascending (the microsecond instant divided by 1e6, bit for bit
what `date_part('epoch', time)` gives) and the values; several points at one instant come
ordered by value. A series with no point in the span is absent from the answer.

Raw points live in two forms: `metric_points` rows (recent points, late points) and
`metric_chunks` (compacted stretches, see `compaction`). Both are read by one SQL statement,
so one snapshot: a compaction committing meanwhile can neither hide nor double a point.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

import numpy as np
import psycopg
from sqlalchemy import Connection

from monitoring_core.chunks.codec import decode_times
from monitoring_core.chunks.columns import decode_columns
from monitoring_core.chunks.store import PG_EPOCH_US, from_us, to_us

__all__ = [
    "BATCH_POINTS",
    "Points",
    "count_points",
    "iter_points_us",
    "newest_times",
    "read_points",
    "read_points_us",
]

Points = tuple[np.ndarray, np.ndarray]
_EMPTY: Points = (np.zeros(0, np.int64), np.zeros(0, np.float64))

# Constant text, every value bound; psycopg's binary cursor. Few rows, so little per-row work
# in the driver: one per series for the rows (packed (time, value) pairs, big-endian
# microseconds since 2000 and doubles, in no particular order: no sort in SQL, they are put in
# order in numpy) and one for all the chunks (a packed index — series, start, count, byte
# lengths — and the chunks' bytes end to end, in the index's order: one aggregate feeds all
# three). An aggregate holds at most 1 GB: ~700 M points of chunks, ~67 M rows of a series.
_SQL = """
SELECT p.series_id, string_agg(timestamptz_send(p.time) || float8send(p.value), ''::bytea),
       NULL::bytea, NULL::bytea
FROM metric_points p
WHERE p.series_id = ANY(%(ids)s::bigint[]) AND p.time > %(start)s AND p.time <= %(end)s
GROUP BY p.series_id
UNION ALL
SELECT NULL,
       string_agg(int8send(c.series_id) || timestamptz_send(c.start_time) || int4send(c.count)
                  || int4send(octet_length(c.times)) || int4send(octet_length(c.vals)), ''::bytea),
       string_agg(c.times, ''::bytea), string_agg(c.vals, ''::bytea)
FROM metric_chunks c
WHERE c.series_id = ANY(%(ids)s::bigint[]) AND c.end_time > %(start)s AND c.start_time <= %(end)s
"""
_PAIR = np.dtype([("t", ">i8"), ("v", ">f8")])
_INDEX = np.dtype([("sid", ">i8"), ("start", ">i8"), ("count", ">i4"), ("t", ">i4"), ("v", ">i4")])

# Counts without reading values: rows from the (series_id, time) index, chunks wholly inside
# the span from their stored count, a chunk cut by an edge by decoding its timestamps only.
_COUNT_SQL = """
SELECT p.series_id, count(*)::int8 AS n, NULL::bytea AS t
FROM metric_points p
WHERE p.series_id = ANY(%(ids)s::bigint[]) AND p.time > %(start)s AND p.time <= %(end)s
GROUP BY p.series_id
UNION ALL
SELECT c.series_id, c.count,
       CASE WHEN c.start_time > %(start)s AND c.end_time <= %(end)s THEN NULL ELSE c.times END
FROM metric_chunks c
WHERE c.series_id = ANY(%(ids)s::bigint[]) AND c.end_time > %(start)s AND c.start_time <= %(end)s
"""


def count_points(
    conn: Connection, series_ids: Sequence[int], start: datetime, end: datetime
) -> dict[int, int]:
    """Per series id: how many points `read_points` would return (absent: none)."""
    ids = sorted({int(i) for i in series_ids})
    if not ids or end <= start:
        return {}
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor(binary=True) as cursor:
        rows = cursor.execute(_COUNT_SQL, {"ids": ids, "start": start, "end": end}).fetchall()
    lo, hi = to_us(start), to_us(end)
    out: dict[int, int] = {}
    for sid, count, times in rows:
        if times is not None:
            t = decode_times(bytes(times), count)
            count = int(((t > lo) & (t <= hi)).sum())
        if count:
            out[int(sid)] = out.get(int(sid), 0) + int(count)
    return out


def read_points_us(
    conn: Connection, series_ids: Sequence[int], start: datetime, end: datetime
) -> dict[int, Points]:
    """Like `read_points` but the times are int64 Unix microseconds. A series' arrays may be
    views into arrays shared by the whole read; they are the caller's to change (no two
    series share a place)."""
    ids = sorted({int(i) for i in series_ids})
    if not ids or end <= start:
        return {}
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor(binary=True) as cursor:
        rows = cursor.execute(_SQL, {"ids": ids, "start": start, "end": end}).fetchall()
    packed: dict[int, Points] = {}
    chunks: tuple[bytes, bytes, bytes] | None = None
    for sid, pairs, times, vals in rows:
        if sid is not None:
            record = np.frombuffer(pairs, dtype=_PAIR)
            packed[int(sid)] = (record["t"] + PG_EPOCH_US, record["v"].astype(np.float64))
        elif pairs is not None:
            chunks = (pairs, times, vals)
    out = _from_chunks(chunks, to_us(start), to_us(end), packed) if chunks else {}
    for sid, (t, v) in packed.items():  # series with rows only
        out[sid] = _ordered(t, v, not _increasing(t))
    return out


# A batched read aims at this many points per statement: its decoded arrays (16 bytes a point)
# and the decoder's buffers stay in the tens of MB however long the span.
BATCH_POINTS = 1_000_000
FIRST_BATCH = 8  # series in the first statement, before any density is known


def iter_points_us(
    conn: Connection,
    series_ids: Sequence[int],
    start: datetime,
    end: datetime,
    *,
    batch_points: int | None = None,
    max_series: int | None = None,
) -> Iterator[tuple[list[int], dict[int, Points]]]:
    """`read_points_us` a batch of series at a time, in the order given: (the batch's ids,
    their points). A batch is sized from the densest series read so far to hold about
    `batch_points` points (default BATCH_POINTS): FIRST_BATCH series first, then batches
    grow at most 4-fold and never past `max_series`, so memory follows the batch, not the
    whole read (nor what the caller derives per series). Each series is read whole by one
    statement (one snapshot per series; two batches may see different ones)."""
    ids = list(dict.fromkeys(int(i) for i in series_ids))
    batch_points = batch_points or BATCH_POINTS
    cap = max(1, max_series or len(ids))
    size, done = min(FIRST_BATCH, cap), 0
    previous = _serial(conn, "0") if len(ids) > size else None
    try:
        while done < len(ids):
            batch = ids[done : done + size]
            done += len(batch)
            points = read_points_us(conn, batch, start, end)
            densest = max((len(t) for t, _ in points.values()), default=0)
            yield batch, points
            del points
            fits = batch_points // densest if densest else len(ids)
            size = max(1, min(size * 4, fits, cap))
    finally:
        # The setting is the transaction's own (set_config's is_local): a generator left
        # unfinished and closed by the garbage collector after its connection has closed
        # has nothing to restore (it used to log "Exception ignored … Connection is closed").
        if previous is not None and not conn.closed and conn.in_transaction():
            _serial(conn, previous)


def _serial(conn: Connection, workers: str) -> str | None:
    """Set this transaction's parallel workers per statement, returning the setting before
    (None when the transaction cannot run it). A batch's statement is small: starting two
    parallel workers for each took longer than reading it (7 d x 1,000 series: 1.3 s against
    0.8 s in 22 statements)."""
    driver = conn.connection.driver_connection
    assert driver is not None
    try:
        with driver.cursor() as cursor:
            row = cursor.execute(
                "SELECT current_setting('max_parallel_workers_per_gather'), "
                "set_config('max_parallel_workers_per_gather', %s, true)",
                (workers,),
            ).fetchone()
    except psycopg.Error:  # a failed transaction: it is rolled back, and the setting with it
        return None
    return None if row is None else str(row[0])


def _from_chunks(
    chunks: tuple[bytes, bytes, bytes], lo: int, hi: int, packed: dict[int, Points]
) -> dict[int, Points]:
    """Per series: its chunks' points in (lo, hi], then its rows from `packed` (taken out)."""
    index_bytes, times_bytes, vals_bytes = chunks
    index = np.frombuffer(index_bytes, dtype=_INDEX)
    t_ends, v_ends = np.cumsum(index["t"], dtype=np.int64), np.cumsum(index["v"], dtype=np.int64)
    t_spans = np.stack((t_ends - index["t"], t_ends), axis=1)
    v_spans = np.stack((v_ends - index["v"], v_ends), axis=1)
    if int(t_ends[-1]) != len(times_bytes) or int(v_ends[-1]) != len(vals_bytes):
        raise ValueError("metric_chunks read: the chunks' bytes do not match their lengths")
    order = np.lexsort((index["start"], index["sid"]))  # by series, then time
    sids = index["sid"][order].astype(np.int64)
    counts = index["count"][order].astype(np.int64)
    heads = np.flatnonzero(np.r_[True, sids[1:] != sids[:-1]])
    lasts = np.r_[heads[1:], len(sids)] - 1
    room = np.zeros(len(sids), dtype=np.int64)  # a series' rows go after its last chunk
    room[lasts] = [len(packed.get(sid, _EMPTY)[0]) for sid in sids[heads].tolist()]
    times, values, offsets = decode_columns(
        times_bytes, t_spans[order], vals_bytes, v_spans[order], counts, room
    )
    # a series' chunks are in time order when each begins after the previous one ends
    ends = offsets[:-1] + counts
    follows = times[offsets[1:-1]] > times[ends[:-1] - 1]
    overlapping = set(sids[1:][(sids[1:] == sids[:-1]) & ~follows].tolist())
    out: dict[int, Points] = {}
    spans = zip(
        offsets[heads].tolist(), ends[lasts].tolist(), offsets[lasts + 1].tolist(), strict=True
    )
    for sid, (a, c, b) in zip(sids[heads].tolist(), spans, strict=True):
        if sid in overlapping:
            times[a:c], values[a:c] = _ordered(times[a:c], values[a:c], True)
        t = times[a:c]
        first, last = 0, c - a
        if t[0] <= lo or t[-1] > hi:  # chunks cut by an edge of the span
            first, last = np.searchsorted(t, [lo, hi], side="right").tolist()
        rows_t, rows_v = packed.pop(sid, _EMPTY)
        if not len(rows_t):
            points = (times[a + first : a + last], values[a + first : a + last])
        else:
            times[c:b], values[c:b] = rows_t, rows_v
            # a late row among the chunks' points, or rows in no order: sorted
            unsorted = (last > first and rows_t[0] <= t[last - 1]) or not _increasing(rows_t)
            if a + last == c:  # the chunks' points and the rows follow each other
                points = (times[a + first : b], values[a + first : b])
            else:
                points = (
                    np.concatenate((times[a + first : a + last], rows_t)),
                    np.concatenate((values[a + first : a + last], rows_v)),
                )
            points = _ordered(*points, bool(unsorted))
        if len(points[0]):
            out[sid] = points
    return out


def _increasing(t: np.ndarray) -> bool:
    return len(t) < 2 or bool((t[1:] > t[:-1]).all())


def _ordered(t: np.ndarray, v: np.ndarray, unsorted: bool) -> Points:
    """Points in (time, value) order (chunks are in that order each)."""
    if unsorted:
        order = np.lexsort((v, t))
        return t[order], v[order]
    return t, v


def read_points(
    conn: Connection, series_ids: Sequence[int], start: datetime, end: datetime
) -> dict[int, Points]:
    """Per series id: (epoch seconds ascending, values) of its points in (start, end]."""
    return {
        sid: (t.astype(np.float64) / 1e6, v)
        for sid, (t, v) in read_points_us(conn, series_ids, start, end).items()
    }


# Per series: its newest row in the span (one index probe) and its newest chunk starting in
# the span or before it (one PK probe); a chunk reaching past `end` is decoded.
_NEWEST_SQL = """
SELECT ids.id, r.time, c.end_time, c.count, c.times
FROM unnest(%(ids)s::bigint[]) AS ids(id)
LEFT JOIN LATERAL (
    SELECT p.time FROM metric_points p
    WHERE p.series_id = ids.id AND p.time > %(start)s AND p.time <= %(end)s
    ORDER BY p.time DESC LIMIT 1
) r ON true
LEFT JOIN LATERAL (
    SELECT c.end_time, c.count, c.times FROM metric_chunks c
    WHERE c.series_id = ids.id AND c.start_time <= %(end)s AND c.end_time > %(start)s
    ORDER BY c.start_time DESC LIMIT 1
) c ON true
"""


def newest_times(
    conn: Connection, series_ids: Sequence[int], start: datetime, end: datetime
) -> dict[int, datetime]:
    """Per series id: the instant of its newest point in (start, end] (absent: none)."""
    ids = sorted({int(i) for i in series_ids})
    if not ids or end <= start:
        return {}
    lo, hi = to_us(start), to_us(end)
    out: dict[int, datetime] = {}
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        rows = cursor.execute(_NEWEST_SQL, {"ids": ids, "start": start, "end": end}).fetchall()
    for sid, row_time, chunk_end, count, times in rows:
        found = [row_time] if row_time is not None else []
        if chunk_end is not None and chunk_end <= end:
            found.append(chunk_end)
        elif chunk_end is not None:
            t = decode_times(bytes(times), count)
            inside = t[(t > lo) & (t <= hi)]
            if len(inside):
                found.append(from_us(int(inside.max())))
        if found:
            out[int(sid)] = max(found)
    return out
