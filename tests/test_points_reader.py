"""The one points reader: (start, end] spans, ascending epoch seconds, the same answer as rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import Engine

from monitoring_core.points_reader import FIRST_BATCH, iter_points_us, read_points
from tests.rollup_fixtures import add_points, add_series


def test_span_is_start_exclusive_end_inclusive(engine: Engine, now: datetime) -> None:
    start = now - timedelta(minutes=10)
    with engine.begin() as conn:
        a, b = add_series(conn, "m", {"k": "a"}), add_series(conn, "m", {"k": "b"})
        add_points(conn, a, [(start, 1.0), (now, 3.0), (start + timedelta(seconds=30), 2.0)])
        add_points(conn, b, [(start - timedelta(seconds=1), 9.0)])
        got = read_points(conn, [a, b, 999], start, now)
    assert set(got) == {a}
    ts, vs = got[a]
    assert ts.dtype == np.float64 and vs.dtype == np.float64
    assert vs.tolist() == [2.0, 3.0]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert ts.tolist() == [(start - epoch).total_seconds() + 30, (now - epoch).total_seconds()]


def test_empty_inputs(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn:
        a = add_series(conn, "m")
        add_points(conn, a, [(now, 1.0)])
        assert read_points(conn, [], now - timedelta(hours=1), now) == {}
        assert read_points(conn, [a], now, now) == {}


def test_a_batched_read_left_unfinished_restores_its_setting_or_lets_it_go(
    engine: Engine, now: datetime
) -> None:
    """The batched reader sets the transaction's parallel workers to 0 and puts the setting
    back when it ends; left unfinished after its connection closed (a page's graph read
    cut short), closing it says nothing instead of "Exception ignored … Connection is closed"."""
    start = now - timedelta(minutes=10)
    with engine.begin() as conn:
        ids = [add_series(conn, "batched", {"k": str(i)}) for i in range(FIRST_BATCH + 3)]
        for sid in ids:
            add_points(conn, sid, [(now, 1.0)])
    with engine.connect() as conn, conn.begin():
        before = conn.exec_driver_sql("SHOW max_parallel_workers_per_gather").scalar()
        reads = iter_points_us(conn, ids, start, now)
        batch, _points = next(reads)
        assert len(batch) == FIRST_BATCH
        assert conn.exec_driver_sql("SHOW max_parallel_workers_per_gather").scalar() == "0"
        reads.close()  # finished early, in its transaction: the setting comes back
        assert conn.exec_driver_sql("SHOW max_parallel_workers_per_gather").scalar() == before
    conn = engine.connect()
    conn.begin()
    reads = iter_points_us(conn, ids, start, now)
    next(reads)
    conn.close()
    reads.close()  # raised sqlalchemy's ResourceClosedError ("This Connection is closed")
