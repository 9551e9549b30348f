"""The one reader of raw metric points: every raw read (live metrics, the alert engine's raw
window, backtest, PromQL, retention, exports) goes through `read_points`.

Convention: the span is **(start, end]** — a point at exactly `start` is left out, a point at
exactly `end` is included (the alert engine's and PromQL's windows both look back from an
instant that belongs to the window). Per series the answer is two float64 arrays of equal
length: epoch seconds (`date_part('epoch', time)`, microsecond instants as doubles) sorted
ascending, and the values; several points at one instant come ordered by value. A series with
no point in the span is absent from the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
from sqlalchemy import Connection

__all__ = ["Points", "read_points"]

Points = tuple[np.ndarray, np.ndarray]

# Constant text, every value bound. Runs on psycopg's binary cursor: float8[] arrive as C doubles.
_ROWS_SQL = """
SELECT p.series_id,
       array_agg(date_part('epoch', p.time) ORDER BY p.time, p.value) AS ts,
       array_agg(p.value ORDER BY p.time, p.value) AS vs
FROM metric_points p
WHERE p.series_id = ANY(%(ids)s::bigint[]) AND p.time > %(start)s AND p.time <= %(end)s
GROUP BY p.series_id
"""


def read_points(
    conn: Connection, series_ids: Sequence[int], start: datetime, end: datetime
) -> dict[int, Points]:
    """Per series id: (epoch seconds ascending, values) of its points in (start, end]."""
    ids = sorted({int(i) for i in series_ids})
    if not ids or end <= start:
        return {}
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor(binary=True) as cursor:
        rows = cursor.execute(_ROWS_SQL, {"ids": ids, "start": start, "end": end}).fetchall()
    return {
        int(sid): (np.asarray(ts, dtype=np.float64), np.asarray(vs, dtype=np.float64))
        for sid, ts, vs in rows
    }
