"""The one points reader: (start, end] spans, ascending epoch seconds, the same answer as rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import Engine

from monitoring_core.points_reader import read_points
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
