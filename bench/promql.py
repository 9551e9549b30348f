"""Prometheus in and out: remote-write throughput and PromQL `query_range` latency.

Remote write: the API (one uvicorn process) on its own `bench_promql` database; CLIENTS processes
POST a snappy-compressed WriteRequest of 500 series × 200 samples (what a Prometheus queue
shard sends over a few seconds of backlog) to `/api/v1/write` for DURATION_S seconds.
Baseline in the same run: raw binary COPY of the same rows into `metric_points`.

Query: 1,000 counter series `bench_requests_total{job=j0..j9, instance=i…}` sampled every
60 s for 7 days (10 M points), then `sum by (job) (rate(x[5m]))` over 24 h at a 60 s step and
over 7 d at a 5 min step, through the same function the `/api/v1/query_range` route calls,
twice: on raw rows as ingested, and after compaction as the worker leaves it (rows for the last
2 h, compressed chunks before; the rollup watermark set to the end as if the rollups had run).
Baseline: reading the raw points alone (`points_reader.read_points_us`), and the evaluation
without the read. Memory: the API's peak RSS (VmHWM) after those queries, then after a mix of
heavy queries sent at once (unaggregated answers of ~2 M samples, a raw selector, topk,
stddev, a matrix) under the default limits (MONITORING_PROMQL_MAX_SAMPLES,
MONITORING_PROMQL_CONCURRENCY). Last line: JSON. Targets: >= 100,000 samples/s; < 500 ms
(24 h); < 1 s (7 d); the API < 300 MB RSS.
"""

from __future__ import annotations

import http.client
import json
import math
import multiprocessing as mp
import os
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import cramjam
import numpy as np
import orjson
import psutil
from _bench_db import database_url
from sqlalchemy import Connection, Engine, text

from bench._api import ROOT, start_api
from monitoring_core.accounts import create_api_key
from monitoring_core.compaction import compact
from monitoring_core.db import make_engine
from monitoring_core.enums import ApiScope
from monitoring_core.ingest.copy import PG_EPOCH, binary_copy_payload
from monitoring_core.migrate import migrate
from monitoring_core.partitions import ensure_partitions
from monitoring_core.points_reader import read_points_us
from monitoring_core.prometheus.http_api import range_query
from monitoring_core.prometheus.prompb import WriteRequest

CLIENTS = 2
DURATION_S = 10.0
SERIES, SAMPLES = 500, 200
QUERY_SERIES, DAYS, SCRAPE_S = 1000, 7, 60
QUERY = "sum by (job) (rate(bench_requests_total[5m]))"


def write_body(now: datetime) -> bytes:
    request = WriteRequest()
    first_ms = int((now - timedelta(minutes=55)).timestamp() * 1000)
    for s in range(SERIES):
        series = request.timeseries.add()
        series.labels.add(name="__name__", value=f"bench_rw_{s % 25}_total")
        series.labels.add(name="instance", value=f"host-{s}:9100")
        series.labels.add(name="job", value="node")
        for i in range(SAMPLES):
            series.samples.add(value=float(s * 1000 + i * 3), timestamp=first_ms + i * 15_000)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def _client(port: int, body: bytes, key: str, deadline: float, out: mp.Queue) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "snappy",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
        "Authorization": f"Bearer {key}",
    }
    sent = failed = 0
    while time.monotonic() < deadline:
        conn.request("POST", "/api/v1/write", body=body, headers=headers)
        reply = conn.getresponse()
        reply.read()
        if reply.status == 204:
            sent += SERIES * SAMPLES
        else:
            failed += 1
    out.put((sent, failed))


def remote_write_rate(port: int, body: bytes, key: str) -> tuple[float, int]:
    out: mp.Queue = mp.Queue()
    start = time.monotonic()
    procs = [
        mp.Process(target=_client, args=(port, body, key, start + DURATION_S, out))
        for _ in range(CLIENTS)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    elapsed = time.monotonic() - start
    for p in procs:
        p.join()
    return sum(r[0] for r in results) / elapsed, sum(r[1] for r in results)


def _copy(conn: Connection, times_us: np.ndarray, ids: np.ndarray, values: np.ndarray) -> None:
    # timestamptz travels in binary COPY as int8 µs since 2000: the payload writer's int8 path
    columns: list[Any] = [times_us, ids, values]
    payload = binary_copy_payload(("int8", "int8", "float8"), columns)
    pg = conn.connection.driver_connection
    assert pg is not None
    with (
        pg.cursor() as cur,
        cur.copy("COPY metric_points (time, series_id, value) FROM STDIN (FORMAT BINARY)") as cp,
    ):
        cp.write(payload)


def copy_rate(conn: Connection, series_id: int, rows: int, now: datetime) -> float:
    base = int((now - PG_EPOCH).total_seconds() * 1e6)
    times = base - np.arange(rows, dtype=np.int64) * 1000
    ids = np.full(rows, series_id, dtype=np.int64)
    start = time.perf_counter()
    _copy(conn, times, ids, np.arange(rows, dtype=np.float64))
    return rows / (time.perf_counter() - start)


def load_query_data(conn: Connection, now: datetime) -> int:
    ensure_partitions(
        conn, start=now - timedelta(days=DAYS + 1), end=now, tables=("metric_points",)
    )
    ids = (
        conn.execute(
            text(
                "INSERT INTO metric_series (name, dimensions) SELECT 'bench_requests_total', "
                "jsonb_build_object('job', 'j' || (i % 10), 'instance', 'i' || i) "
                "FROM generate_series(0, :n - 1) AS i RETURNING id"
            ),
            {"n": QUERY_SERIES},
        )
        .scalars()
        .all()
    )
    count = DAYS * 86400 // SCRAPE_S
    end_us = int((now - PG_EPOCH).total_seconds() * 1e6)
    times = end_us - (count - 1 - np.arange(count, dtype=np.int64)) * SCRAPE_S * 1_000_000
    rng = np.random.default_rng(1)
    for start in range(0, len(ids), 100):
        chunk = ids[start : start + 100]
        values = np.cumsum(rng.poisson(30, size=(len(chunk), count)), axis=1).astype(float)
        _copy(
            conn,
            np.tile(times, len(chunk)),
            np.repeat(np.array(chunk, dtype=np.int64), count),
            values.ravel(),
        )
    return len(ids) * count


def _compact_all(engine: Engine, now: datetime) -> str:
    """What the worker's compaction leaves: chunks up to 2 h before `now`, rows after. The
    watermark is the real clock's (the rows' `ingested_at` is their load time, after `now`)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO rollup_watermarks (name, watermark) VALUES ('metric_points', :w) "
                "ON CONFLICT (name) DO UPDATE SET watermark = excluded.watermark"
            ),
            {"w": datetime.now(UTC)},
        )
    report = compact(engine, now, max_stretches=1000)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE metric_points"))
        conn.execute(text("ANALYZE metric_chunks"))
    return report.summary()


class Cpu:
    """CPU seconds so far of this process, of the API process and of Postgres: the backends of
    this benchmark's database, parallel workers, and the children the postmaster has reaped
    (parallel workers that ended; other databases' backends that ended too: run it alone)."""

    def __init__(self, api_pid: int | None, database: str = "bench_promql") -> None:
        pid_file = ROOT / ".data" / "bench" / "pg" / "postmaster.pid"
        self.postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
        self.api = psutil.Process(api_pid) if api_pid else None
        self.marks = (f" {database} ", "parallel worker")

    def now(self) -> tuple[float, float, float]:
        times = self.postmaster.cpu_times()
        pg = times.children_user + times.children_system
        for child in self.postmaster.children():
            try:
                if any(mark in " ".join(child.cmdline()) + " " for mark in self.marks):
                    child_times = child.cpu_times()
                    pg += child_times.user + child_times.system
            except psutil.NoSuchProcess:
                continue
        api = 0.0
        if self.api is not None:
            api_times = self.api.cpu_times()
            api = api_times.user + api_times.system
        return time.process_time(), api, pg


def _peak_rss_mb(pid: int) -> float:
    """The process' peak resident set (VmHWM) in MB."""
    for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def _measured(run: Any, cpu: Cpu, repeat: int = 3) -> tuple[float, float, float, float]:
    """Medians of (wall ms, this process' CPU ms, the API's CPU ms, Postgres' CPU ms)."""
    laps = []
    for _ in range(repeat):
        before, start = cpu.now(), time.perf_counter()
        run()
        wall, after = (time.perf_counter() - start) * 1000, cpu.now()
        laps.append((wall, *((b - a) * 1000 for a, b in zip(before, after, strict=True))))
    return tuple(statistics.median(lap[i] for lap in laps) for i in range(4))  # type: ignore[return-value]


def _http_range(port: int, key: str, start_ms: int, end_ms: int, step_s: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    params = urlencode(
        {"query": QUERY, "start": start_ms / 1000, "end": end_ms / 1000, "step": step_s}
    )
    conn.request("GET", f"/api/v1/query_range?{params}", headers={"Authorization": f"Bearer {key}"})
    reply = conn.getresponse()
    body = reply.read()
    assert reply.status == 200 and len(orjson.loads(body)["data"]["result"]) == 10, body[:200]


# Heavy queries sent together: (query, span s, step s; 0: an instant query at the end).
MIX = [
    ("rate(bench_requests_total[5m])", 7 * 86400, 300),
    ("bench_requests_total", 86400, 60),
    ("topk(3, rate(bench_requests_total[5m]))", 7 * 86400, 300),
    ("stddev by (job) (irate(bench_requests_total[5m]))", 7 * 86400, 300),
    ("bench_requests_total[6h]", 0, 0),
    (QUERY, 7 * 86400, 300),
]


def _mixed(port: int, key: str, end_s: float) -> tuple[float, dict[int, int]]:
    """MIX sent at once, one client each: (wall seconds, answers by status)."""
    statuses: list[int] = []
    lock = threading.Lock()

    def one(query: str, span_s: int, step_s: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        if step_s:
            path = "/api/v1/query_range?" + urlencode(
                {"query": query, "start": end_s - span_s, "end": end_s, "step": step_s}
            )
        else:
            path = "/api/v1/query?" + urlencode({"query": query, "time": end_s})
        started = time.perf_counter()
        conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
        reply = conn.getresponse()
        body = reply.read()
        with lock:
            statuses.append(reply.status)
            print(
                f"    {reply.status} {query} ({span_s // 3600} h / {step_s} s): {len(body):,} "
                f"bytes after {time.perf_counter() - started:.1f} s"
                + (f" {body[:120].decode()}" if reply.status != 200 else "")
            )

    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=item) for item in MIX]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, {s: statuses.count(s) for s in sorted(set(statuses))}


def _query_figures(
    engine: Engine,
    now: datetime,
    form: str,
    api: tuple[int, int, str] | None = None,
    database: str = "bench_promql",
) -> dict[str, float]:
    """In this process: `range_query` and the raw read alone; with `api` (pid, port, read key)
    also `GET /api/v1/query_range` through the API process."""
    end_s = now.timestamp()
    figures: dict[str, float] = {}
    cpu = Cpu(api[0] if api else None, database)
    with engine.connect() as conn:
        ids = conn.execute(text("SELECT id FROM metric_series")).scalars().all()
        for label, span_s, step_s in (("24h", 86400, 60), ("7d", 7 * 86400, 300)):
            start_ms, end_ms = int((end_s - span_s) * 1000), int(end_s * 1000)
            result = range_query(conn, QUERY, start_ms, end_ms, step_s * 1000)
            assert len(result["result"]) == 10
            wall, own, _, pg = _measured(
                lambda a=start_ms, b=end_ms, s=step_s: range_query(conn, QUERY, a, b, s * 1000),
                cpu,
            )
            frm = datetime.fromtimestamp(end_s - span_s - 300, tz=UTC)
            read_wall, read_own, _, read_pg = _measured(
                lambda f=frm: read_points_us(conn, ids, f, now), cpu
            )
            figures[f"query_range_{label}_{form}_ms"] = wall
            figures[f"query_range_{label}_{form}_cpu_ms"] = own
            figures[f"query_range_{label}_{form}_pg_cpu_ms"] = pg
            figures[f"read_points_{label}_{form}_ms"] = read_wall
            print(
                f"  {form:>6}: query_range {label} step {step_s}s in-process: {wall:,.0f} ms wall, "
                f"CPU {own:,.0f} ms here + {pg:,.0f} ms Postgres (the raw read alone "
                f"{read_wall:,.0f} ms wall, CPU {read_own:,.0f} + {read_pg:,.0f} ms)"
            )
            if api is None:
                continue
            _, port, key = api
            _http_range(port, key, start_ms, end_ms, step_s)
            wall, _, api_cpu, pg = _measured(
                lambda a=start_ms, b=end_ms, s=step_s, p=port, k=key: _http_range(p, k, a, b, s),
                cpu,
            )
            figures[f"http_query_range_{label}_{form}_ms"] = wall
            figures[f"http_query_range_{label}_{form}_api_cpu_ms"] = api_cpu
            figures[f"http_query_range_{label}_{form}_pg_cpu_ms"] = pg
            print(
                f"  {form:>6}: GET /api/v1/query_range {label}: {wall:,.0f} ms wall, "
                f"CPU {api_cpu:,.0f} ms API + {pg:,.0f} ms Postgres  (load {os.getloadavg()[0]:.1f})"
            )
    return figures


def main() -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    url = database_url("bench_promql")
    engine = make_engine(url)
    migrate(engine, now=now, days_back=DAYS + 2)
    with engine.begin() as conn:
        key = create_api_key(
            conn, name="bench", scope=ApiScope.INGEST, rate_limit_per_minute=0, points_per_minute=0
        )
    body = write_body(datetime.now(UTC))
    print(f"{os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.1f}")
    print(
        f"remote write: {SERIES} series x {SAMPLES} samples per request, {len(body):,} bytes snappy"
    )
    api, port = start_api(url)
    try:
        rss = psutil.Process(api.pid)
        rw_rate, rw_failed = remote_write_rate(port, body, key)
        api_rss = rss.memory_info().rss / 2**20
    finally:
        api.terminate()
        api.wait(timeout=30)
    with engine.begin() as conn:
        sid = conn.execute(text("SELECT min(id) FROM metric_series")).scalar_one()
        raw_copy = copy_rate(conn, sid, 500_000, now)
    print(
        f"  {rw_rate:>10,.0f} samples/s over HTTP, {CLIENTS} clients ({rw_failed} failed; target >= 100,000)"
    )
    print(f"  {raw_copy:>10,.0f} rows/s raw binary COPY into metric_points (this process)")
    print(f"  remote write is {rw_rate / raw_copy:.0%} of raw COPY; API RSS {api_rss:.0f} MB")

    with engine.begin() as conn:
        conn.execute(text("TRUNCATE metric_series, metric_points RESTART IDENTITY CASCADE"))
        started = time.perf_counter()
        points = load_query_data(conn, now)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE metric_points"))
    print(f"query data: {points:,} points loaded in {time.perf_counter() - started:.1f} s")
    figures = _query_figures(engine, now, "rows")
    started = time.perf_counter()
    summary = _compact_all(engine, now)
    print(f"compaction ({time.perf_counter() - started:.1f} s): {summary}")
    with engine.begin() as conn:
        read_key = create_api_key(conn, name="bench-read", scope=ApiScope.READ)
    api, port = start_api(url)
    mixed: dict[int, int] = {}
    try:
        figures["api_rss_fresh_mb"] = psutil.Process(api.pid).memory_info().rss / 2**20
        figures.update(_query_figures(engine, now, "chunks", (api.pid, port, read_key)))
        figures["api_peak_rss_after_queries_mb"] = _peak_rss_mb(api.pid)
        print(
            f"  API RSS fresh {figures['api_rss_fresh_mb']:.0f} MB, peak after the queries: "
            f"{figures['api_peak_rss_after_queries_mb']:.0f} MB (target < 300 MB)"
        )
        mixed_s, mixed = _mixed(port, read_key, now.timestamp())
        figures["mixed_s"] = mixed_s
        figures["api_peak_rss_after_mix_mb"] = _peak_rss_mb(api.pid)
        print(
            f"  {len(MIX)} heavy queries at once: {mixed_s:.1f} s, answers by status {mixed}; "
            f"API peak RSS {figures['api_peak_rss_after_mix_mb']:.0f} MB (target < 300 MB)"
        )
    finally:
        api.terminate()
        api.wait(timeout=30)
    engine.dispose()
    print(
        json.dumps(
            {
                "remote_write_samples_per_s": round(rw_rate),
                "raw_copy_rows_per_s": round(raw_copy),
                "api_rss_mb": round(api_rss),
                **{key: round(value) for key, value in figures.items()},
                "mixed_statuses": mixed,
            }
        )
    )


if __name__ == "__main__":
    main()
