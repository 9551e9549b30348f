"""PromQL's memory bounds: a query reads and evaluates a batch of series at a time and folds
aggregations member by member — answers identical, bit for bit, to one batch holding every
series and to the (members x steps) matrix reductions — a query past
MONITORING_PROMQL_MAX_SAMPLES is refused with Prometheus' error (422, `execution`), and the
per-process query slots wait, refuse and are given back."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from datetime import datetime
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import Connection, Engine

from monitoring_core import points_reader
from monitoring_core.accounts import create_api_key
from monitoring_core.api.routes_prom import QueryGate
from monitoring_core.chunks.store import Chunk, from_us, insert_chunks, to_us
from monitoring_core.enums import ApiScope
from monitoring_core.prometheus.http_api import instant_query, range_query
from monitoring_core.prometheus.promql.aggregate import aggregate
from monitoring_core.prometheus.promql.model import QueryError, Series, Vector
from tests.rollup_fixtures import add_points, add_series

HOURS = 3
QUERIES = [
    "sum by (job) (rate(mem_requests_total[5m]))",
    "avg by (job) (rate(mem_requests_total[5m]))",
    "min by (job) (mem_temperature)",
    "max without (instance) (delta(mem_temperature[5m]))",
    "count by (job) (mem_temperature)",
    "group by (job) (irate(mem_requests_total[3m]))",
    "stddev by (job) (mem_temperature)",
    "stdvar (rate(mem_requests_total[5m]))",
    "sum(abs(deriv(mem_temperature[10m])))",
    "rate(mem_requests_total[5m])",
    "mem_temperature",
    "quantile_over_time(0.3, mem_temperature[10m])",
    "topk(2, mem_temperature)",
    "quantile by (job) (0.5, rate(mem_requests_total[5m]))",
    "absent_over_time(mem_requests_total[5m])",
    "count(last_over_time(mem_temperature[10m]))",
]


def _load(conn: Connection, now: datetime, seed: int) -> None:
    """24 random series (counters with resets, gauges crossing zero, -0.0 included), series
    starting and ending inside the range; the older half of each compacted into chunks."""
    rng = np.random.default_rng(seed)
    end_us = to_us(now)
    start_us = end_us - HOURS * 3_600_000_000
    chunks = []
    for s in range(24):
        counter = s % 2 == 0
        name = "mem_requests_total" if counter else "mem_temperature"
        sid = add_series(conn, name, {"job": f"j{s % 3}", "instance": f"i{s}"})
        step = int(rng.choice([15, 30, 60])) * 1_000_000
        first = start_us + int(rng.integers(0, 3600)) * 1_000_000
        last = end_us - int(rng.integers(0, 1800)) * 1_000_000 if s % 5 == 0 else end_us
        t = np.arange(first, last, step, dtype=np.int64)
        if counter:
            v = np.cumsum(rng.poisson(4, len(t))).astype(float)
            reset = int(rng.integers(1, max(2, len(t))))
            v[reset:] -= v[reset] - 1.0
        else:
            v = np.round(np.cumsum(rng.normal(0, 0.7, len(t))), 1)
            v[v == 0] = -0.0
        old = t < (first + last) // 2
        if old.any():
            chunks.append(Chunk.of(sid, t[old], v[old]))
        add_points(
            conn, sid, [(from_us(int(u)), float(x)) for u, x in zip(t[~old], v[~old], strict=True)]
        )
    insert_chunks(conn, chunks)


def _answers(conn: Connection, now: datetime) -> dict[str, Any]:
    end_ms = to_us(now) // 1000
    start_ms = end_ms - HOURS * 3_600_000
    out: dict[str, Any] = {}
    for query in QUERIES:
        out[query] = range_query(conn, query, start_ms, end_ms, 97_000)
        out[query + " @end"] = instant_query(conn, query, end_ms - 45_000)
    return out


@pytest.mark.clock
def test_series_batch_by_batch_answers_what_one_batch_answers(
    engine: Engine, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine.begin() as conn:
        _load(conn, now, seed=13)
    statements = []
    real_read = points_reader.read_points_us

    def counted(*args: Any, **kwargs: Any) -> Any:
        statements.append(len(args[1]))
        return real_read(*args, **kwargs)

    monkeypatch.setattr(points_reader, "read_points_us", counted)
    monkeypatch.setattr(points_reader, "FIRST_BATCH", 10**6)
    monkeypatch.setattr(points_reader, "BATCH_POINTS", 10**9)
    with engine.connect() as conn:
        whole = _answers(conn, now)
    assert max(statements) == 12  # one statement per selector: all 12 series of a name
    unbatched = len(statements)
    statements.clear()
    monkeypatch.setattr(points_reader, "FIRST_BATCH", 1)
    monkeypatch.setattr(points_reader, "BATCH_POINTS", 200)  # one to a few series a batch
    with engine.connect() as conn:
        batched = _answers(conn, now)
    assert len(statements) > 5 * unbatched and statements.count(1) > unbatched
    for key, answer in whole.items():
        assert batched[key] == answer, key
    assert any(a["result"] for a in whole.values())


def _matrix_reference(op: str, values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """The (members x steps) reductions the evaluator used before it folded."""
    count = present.sum(axis=0)
    with np.errstate(all="ignore"):
        if op == "sum":
            return np.where(present, values, 0.0).sum(axis=0)
        if op == "avg":
            return np.where(present, values, 0.0).sum(axis=0) / count
        if op == "count":
            return count.astype(np.float64)
        if op == "group":
            return np.ones(values.shape[1])
        if op == "min":
            return np.fmin.reduce(np.where(present, values, np.nan), axis=0)
        if op == "max":
            return np.fmax.reduce(np.where(present, values, np.nan), axis=0)
        mean = np.where(present, values, 0.0).sum(axis=0) / count
        var = np.where(present, (values - mean) ** 2, 0.0).sum(axis=0) / count
        return var if op == "stdvar" else np.sqrt(var)


@pytest.mark.parametrize("op", ["sum", "avg", "count", "group", "min", "max", "stddev", "stdvar"])
def test_folded_aggregations_are_bit_for_bit_the_matrix_reductions(op: str) -> None:
    rng = np.random.default_rng(7)
    for _ in range(40):
        members, steps = int(rng.integers(1, 30)), int(rng.integers(1, 300))
        values = rng.normal(size=(members, steps)) * 10.0 ** rng.integers(-3, 12, (members, 1))
        values[rng.random(values.shape) < 0.05] = -0.0
        values[rng.random(values.shape) < 0.03] = np.nan
        values[rng.random(values.shape) < 0.01] = np.inf
        present = rng.random(values.shape) > 0.3
        vector = Vector([Series((("i", str(i)),), values[i], present[i]) for i in range(members)])
        (got,) = aggregate(op, vector, by=True, names=[]).series
        want = _matrix_reference(op, values, present)
        assert got.values.tobytes() == want.tobytes(), op
        assert (got.present == present.any(axis=0)).all()


@pytest.fixture
def read_key(engine: Engine) -> str:
    with engine.begin() as conn:
        return create_api_key(conn, name="grafana", scope=ApiScope.READ)


@pytest.mark.clock
def test_a_query_past_the_sample_limit_is_refused_with_prometheus_error(
    api_server: str,
    api_app: Any,
    engine: Engine,
    read_key: str,
    now: datetime,
) -> None:
    with engine.begin() as conn:
        _load(conn, now, seed=5)
    end_ms = to_us(now) // 1000
    query, start_ms = "rate(mem_requests_total[5m])", end_ms - 3_600_000
    params = {"query": query, "start": start_ms / 1000, "end": end_ms / 1000, "step": 60}
    headers = {"Authorization": f"Bearer {read_key}"}
    url = f"{api_server}/api/v1/query_range"
    reply = httpx.get(url, params=params, headers=headers)
    assert reply.status_code == 200, reply.text
    with engine.connect() as conn:  # the body written piece by piece: the same answer
        want = range_query(conn, query, start_ms, end_ms, 60_000)
    assert want["result"] and reply.json() == {"status": "success", "data": want}

    original = api_app.state.settings
    api_app.state.settings = dataclasses.replace(original, promql_max_samples=100)
    try:
        for path in ("/api/v1/query_range", "/api/v1/query"):
            reply = httpx.get(f"{api_server}{path}", params=params, headers=headers)
            assert reply.status_code == 422, path
            body = reply.json()
            assert body["status"] == "error" and body["errorType"] == "execution"
            assert body["error"].startswith(
                "query processing would load too many samples into memory in query execution"
            )
            assert "100" in body["error"] and "MONITORING_PROMQL_MAX_SAMPLES" in body["error"]
            params = {"query": "mem_temperature[1h]", "time": end_ms / 1000}
    finally:
        api_app.state.settings = original


def test_the_query_slots_wait_refuse_and_are_given_back() -> None:
    async def scenario() -> None:
        gate = QueryGate(1, wait_s=0.05)
        release = await gate.acquire()
        with pytest.raises(QueryError, match="too many queries at once"):
            await gate.acquire()
        worker = threading.Thread(target=release)  # answers end in a worker thread
        worker.start()
        worker.join()
        release()  # twice: still one slot
        second = await gate.acquire()
        with pytest.raises(QueryError):
            await gate.acquire()
        second()
        await asyncio.sleep(0)
        third = await asyncio.wait_for(gate.acquire(), 1)
        third()

    asyncio.run(scenario())
