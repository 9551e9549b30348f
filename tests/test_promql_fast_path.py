"""Differential test of PromQL's fast read path: a range query over compacted chunks (the
columnar reader, `chunks.columns`) answers exactly what it answers over raw rows, and every
step of it what an instant query at that step answers (the evaluator run for one step alone;
equal to the last bits), on random data with counter resets, gaps, staleness markers, and
series starting and ending inside the range."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Connection, Engine, text

from monitoring_core.chunks.store import Chunk, insert_chunks, to_us
from monitoring_core.prometheus.http_api import instant_query, range_query
from tests.rollup_fixtures import add_points, add_series

QUERIES = [
    "fp_requests_total",
    "rate(fp_requests_total[5m])",
    "increase(fp_requests_total[10m])",
    "sum by (job) (rate(fp_requests_total[5m]))",
    "irate(fp_requests_total[3m])",
    "resets(fp_requests_total[20m])",
    "delta(fp_temperature[5m])",
    "deriv(fp_temperature[10m])",
    "changes(fp_temperature[5m])",
    "avg_over_time(fp_temperature[7m])",
    "max_over_time(fp_temperature[4m])",
    "count_over_time(fp_requests_total[3m])",
    "last_over_time(fp_temperature[5m])",
    "quantile_over_time(0.9, fp_temperature[6m])",
    "absent_over_time(fp_requests_total{job='gone'}[5m])",
    "timestamp(fp_temperature)",
]
HOURS = 6
STRETCH_US = 7_200_000_000


def _load(conn: Connection, now: datetime, seed: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Random series, as rows; their staleness markers. Per series id: (µs, values)."""
    rng = np.random.default_rng(seed)
    end_us = to_us(now)
    start_us = end_us - HOURS * 3_600_000_000
    out = {}
    for s in range(10):
        counter = s < 6
        name = "fp_requests_total" if counter else "fp_temperature"
        job = ["api", "web", "gone"][s % 3]
        sid = add_series(conn, name, {"job": job, "instance": f"i{s}"})
        step = int(rng.choice([15, 30, 60])) * 1_000_000
        first = start_us + int(rng.integers(0, 2 * 3600)) * 1_000_000  # starts inside the range
        last = end_us - int(rng.integers(0, 3600)) * 1_000_000 if s % 4 == 0 else end_us
        t = np.arange(first, last, step, dtype=np.int64)
        t = t + rng.integers(-2_000_000, 2_000_000, len(t)) // 1000 * 1000  # jitter, whole ms
        keep = rng.random(len(t)) > 0.05
        gap = int(rng.integers(0, max(1, len(t) - 60)))
        keep[gap : gap + int(rng.integers(0, 60))] = False  # a gap of up to an hour
        t = np.unique(t[keep])
        if counter:
            v = np.cumsum(rng.poisson(5, len(t))).astype(float)
            for reset in rng.integers(1, max(2, len(t)), 2):
                v[reset:] -= v[reset] - float(rng.integers(0, 3))  # the counter restarts
        else:
            v = np.round(20 + np.cumsum(rng.normal(0, 0.5, len(t))), 2)
        add_points(conn, sid, [(_moment(us), value) for us, value in zip(t, v, strict=True)])
        if s % 4 == 0 and len(t):
            markers = [int(t[-1]) + 1_000_000, int(t[len(t) // 2]) + 500_000]
            conn.execute(
                text(
                    "INSERT INTO metric_stale_markers (series_id, time) "
                    "SELECT :s, unnest(CAST(:t AS timestamptz[]))"
                ),
                {"s": sid, "t": [_moment(m) for m in markers]},
            )
        out[sid] = (t, v)
    return out


def _moment(us: int) -> datetime:
    from monitoring_core.chunks.store import from_us

    return from_us(int(us))


def _compact(
    conn: Connection, data: dict[int, tuple[np.ndarray, np.ndarray]], now: datetime
) -> None:
    """What compaction leaves: a chunk per series and 2-hour stretch, rows for the last 2 h."""
    horizon = to_us(now) - STRETCH_US
    chunks = []
    for sid, (t, v) in data.items():
        old = t < horizon
        stretch = t[old] // STRETCH_US
        for key in np.unique(stretch):
            inside = stretch == key
            chunks.append(Chunk.of(sid, t[old][inside], v[old][inside]))
    conn.execute(text("DELETE FROM metric_points WHERE time < :h"), {"h": _moment(horizon)})
    insert_chunks(conn, chunks)


def _by_step(result: list[dict[str, Any]]) -> dict[int, dict[tuple[Any, ...], str]]:
    out: dict[int, dict[tuple[Any, ...], str]] = {}
    for item in result:
        key = tuple(sorted(item["metric"].items()))
        for t, v in item["values"]:
            out.setdefault(round(t * 1000), {})[key] = v
    return out


@pytest.mark.clock
def test_range_over_chunks_equals_rows_and_every_step_equals_an_instant_query(
    engine: Engine, now: datetime
) -> None:
    with engine.begin() as conn:
        data = _load(conn, now, seed=15)
    end_ms = int(to_us(now) // 1000)
    start_ms = end_ms - HOURS * 3_600_000
    step_ms = 137_000  # steps fall between samples and stretch edges
    with engine.connect() as conn:
        over_rows = {q: range_query(conn, q, start_ms, end_ms, step_ms) for q in QUERIES}
    with engine.begin() as conn:
        _compact(conn, data, now)
    rng = np.random.default_rng(3)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM metric_chunks")).scalar_one() > 10
        for query in QUERIES:
            over_chunks = range_query(conn, query, start_ms, end_ms, step_ms)
            assert over_chunks == over_rows[query], query
            steps = _by_step(over_chunks["result"])
            assert steps or query.startswith("absent"), query
            grid = np.arange(start_ms, end_ms + 1, step_ms)
            for at in rng.choice(grid, 8, replace=False).tolist():
                alone = instant_query(conn, query, at)["result"]
                got = {tuple(sorted(i["metric"].items())): i["value"][1] for i in alone}
                want = steps.get(at, {})
                assert got.keys() == want.keys(), (query, at)
                for key, value in got.items():  # deriv's sums run over padded windows in a
                    assert _close(value, want[key]), (query, at, key)  # range: last-bit noise


def _close(a: str, b: str) -> bool:
    x, y = float(a), float(b)
    return a == b or math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-300)
