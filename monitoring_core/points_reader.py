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

from collections.abc import Sequence
from datetime import datetime

import numpy as np
from sqlalchemy import Connection

from monitoring_core.chunks.batch import decode_many
from monitoring_core.chunks.codec import decode_times
from monitoring_core.chunks.store import from_us, rows_from_packed, to_us

__all__ = ["Points", "count_points", "newest_times", "read_points", "read_points_us"]

Points = tuple[np.ndarray, np.ndarray]

# Constant text, every value bound; psycopg's binary cursor. Rows come packed per series
# (big-endian microseconds since 2000 and doubles), chunks as they are stored. Ordered by time
# alone, the (series_id, time) index's order: no sort in SQL (with `p.value` as a second key
# Postgres sorted every series' rows again, ~40 % of a 24 h read); both aggregates take the
# rows in one order, and points at one instant are put in value order in numpy.
_SQL = """
SELECT p.series_id, NULL::int4 AS n,
       string_agg(timestamptz_send(p.time), ''::bytea ORDER BY p.time) AS t,
       string_agg(float8send(p.value), ''::bytea ORDER BY p.time) AS v
FROM metric_points p
WHERE p.series_id = ANY(%(ids)s::bigint[]) AND p.time > %(start)s AND p.time <= %(end)s
GROUP BY p.series_id
UNION ALL
SELECT c.series_id, c.count, c.times, c.vals
FROM metric_chunks c
WHERE c.series_id = ANY(%(ids)s::bigint[]) AND c.end_time > %(start)s AND c.start_time <= %(end)s
"""

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
    """Like `read_points` but the times are int64 Unix microseconds."""
    ids = sorted({int(i) for i in series_ids})
    if not ids or end <= start:
        return {}
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor(binary=True) as cursor:
        rows = cursor.execute(_SQL, {"ids": ids, "start": start, "end": end}).fetchall()
    lo, hi = to_us(start), to_us(end)
    parts: dict[int, list[Points]] = {}
    chunks: list[tuple[int, tuple[bytes, bytes, int]]] = []
    for sid, count, t_raw, v_raw in rows:
        if count is not None:  # decoded all together below (chunks.batch)
            chunks.append((int(sid), (bytes(t_raw), bytes(v_raw), int(count))))
            continue
        t, v = rows_from_packed(t_raw, v_raw)
        if len(t) > 1 and bool((t[1:] == t[:-1]).any()):
            order = np.lexsort((v, t))
            t, v = t[order], v[order]
        if len(t):
            parts.setdefault(int(sid), []).append((t, v))
    decoded = decode_many([stored for _, stored in chunks])
    for (sid, _), (t, v) in zip(chunks, decoded, strict=True):
        if len(t) and (t[0] <= lo or t[-1] > hi):  # cut by an edge of the span
            keep = (t > lo) & (t <= hi)
            t, v = t[keep], v[keep]
        if len(t):
            parts.setdefault(sid, []).append((t, v))
    out: dict[int, Points] = {}
    for sid, pieces in parts.items():
        if len(pieces) == 1:
            out[sid] = pieces[0]
            continue
        pieces.sort(key=lambda p: int(p[0][0]))  # chunks of stretches apart, rows after them
        t = np.concatenate([p[0] for p in pieces])
        v = np.concatenate([p[1] for p in pieces])
        if not bool((t[1:] > t[:-1]).all()):  # pieces overlap or share an instant: sort
            order = np.lexsort((v, t))
            t, v = t[order], v[order]
        out[sid] = (t, v)
    return out


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
