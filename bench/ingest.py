"""Ingest throughput: metric points over HTTP vs raw binary COPY vs one INSERT per row.

Starts the embedded Postgres under .data/bench and the API (uvicorn, WORKERS processes) in a
subprocess; CLIENTS processes post pre-serialised batches of BATCH points for DURATION_S
seconds. Then, in the same run, the raw binary-COPY rate (the ceiling HTTP ingest works
towards) and the one-row-per-INSERT autocommit rate (the naive baseline). Last line: JSON.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psutil
from sqlalchemy import Engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._api import start_api  # noqa: E402
from bench._bench_db import database_url  # noqa: E402
from monitoring_core.accounts import create_api_key  # noqa: E402
from monitoring_core.db import make_engine  # noqa: E402
from monitoring_core.enums import ApiScope  # noqa: E402
from monitoring_core.ingest.copy import copy_columns, copy_rows  # noqa: E402
from monitoring_core.migrate import migrate  # noqa: E402

DB_NAME = "bench_ingest"
WORKERS = 1  # uvicorn processes: 1 measured faster than 2 here (Postgres needs the other core)
CLIENTS = 4  # client processes, one keep-alive connection each
BATCH = 5_000  # points per request
SERIES = 200  # distinct (name, dimensions) pairs in the batches
DURATION_S = 20.0
COPY_ROWS = 500_000
INSERT_S = 5.0


def _bodies(count: int) -> list[bytes]:
    """Batches without timestamps (the server stamps them), cycling through SERIES series."""
    bodies = []
    for b in range(count):
        items = [
            {
                "metric_name": f"bench.metric_{(b * BATCH + i) % SERIES % 20}",
                "metric_value": (b * BATCH + i) * 0.5,
                "dimensions": {"host": f"web-{(b * BATCH + i) % SERIES // 20}", "region": "uk"},
            }
            for i in range(BATCH)
        ]
        bodies.append(orjson.dumps(items))
    return bodies


def _client(port: int, key: str, deadline: float, results: mp.Queue) -> None:
    bodies = _bodies(4)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    accepted = failed = 0
    latencies: list[float] = []
    i = 0
    while time.monotonic() < deadline:
        start = time.perf_counter()
        conn.request(
            "POST", "/api/monitoring/metrics", body=bodies[i % len(bodies)], headers=headers
        )
        reply = conn.getresponse()
        payload = reply.read()
        latencies.append(time.perf_counter() - start)
        if reply.status == 202:
            accepted += orjson.loads(payload)["accepted"]
        else:
            failed += 1
        i += 1
    results.put((accepted, failed, latencies))


def _tree_rss_mb(proc: psutil.Process) -> float:
    procs = [proc, *proc.children(recursive=True)]
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 1e6


def _worker_rss_mb(proc: psutil.Process) -> float:
    """Largest single API process (each worker is its own process)."""
    sizes = []
    for p in [proc, *proc.children(recursive=True)]:
        try:
            sizes.append(p.memory_info().rss / 1e6)
        except psutil.NoSuchProcess:
            pass
    return max(sizes, default=0.0)


def _cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def _postgres_processes() -> list[psutil.Process]:
    """Backends serving this benchmark's database (other benchmarks share the cluster)."""
    pid = int((ROOT / ".data" / "bench" / "pg" / "postmaster.pid").read_text().split()[0])
    backends = []
    for child in psutil.Process(pid).children():
        try:
            if f" {DB_NAME} " in " ".join(child.cmdline()):
                backends.append(child)
        except psutil.NoSuchProcess:
            pass
    return backends


def _warm(port: int, key: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = orjson.dumps([{"metric_name": "bench.warm", "metric_value": 1}])
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    conn.request("POST", "/api/monitoring/metrics", body=body, headers=headers)
    conn.getresponse().read()


def http_rate(url: str, key: str) -> dict[str, float]:
    api, port = start_api(url, WORKERS)
    try:
        ps = psutil.Process(api.pid)
        results: mp.Queue = mp.Queue()
        api_procs = [ps, *ps.children(recursive=True)]
        # The API's pool connects lazily: warm it so its backends exist before counting.
        _warm(port, key)
        pg_procs = _postgres_processes()
        api_cpu0, pg_cpu0 = _cpu_seconds(api_procs), _cpu_seconds(pg_procs)
        start = time.monotonic()
        deadline = start + DURATION_S
        clients = [
            mp.Process(target=_client, args=(port, key, deadline, results)) for _ in range(CLIENTS)
        ]
        for c in clients:
            c.start()
        peak_rss = peak_worker = 0.0
        while any(c.is_alive() for c in clients) and results.qsize() < CLIENTS:
            peak_rss = max(peak_rss, _tree_rss_mb(ps))
            peak_worker = max(peak_worker, _worker_rss_mb(ps))
            time.sleep(0.5)
        outcomes = [results.get(timeout=120) for _ in clients]
        elapsed = time.monotonic() - start
        api_cpu = _cpu_seconds(api_procs) - api_cpu0
        # Backends opened during the run count from zero (WAL writer and checkpointer, shared
        # with other databases, are left out).
        pg_cpu = _cpu_seconds(_postgres_processes()) - pg_cpu0
        for c in clients:
            c.join()
    finally:
        api.terminate()
        api.wait(timeout=30)
    accepted = sum(o[0] for o in outcomes)
    failed = sum(o[1] for o in outcomes)
    latencies = sorted(x for o in outcomes for x in o[2])
    return {
        "api_cpu_us_per_point": api_cpu / max(accepted, 1) * 1e6,
        "pg_cpu_us_per_point": pg_cpu / max(accepted, 1) * 1e6,
        "points_per_s": accepted / elapsed,
        "requests": len(latencies),
        "failed": failed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p95_ms": latencies[int(len(latencies) * 0.95)] * 1000,
        "rss_mb": peak_rss,
        "worker_rss_mb": peak_worker,
    }


def copy_rate(engine: Engine) -> tuple[float, float]:
    """(rows/s with psycopg's write_row, rows/s with one numpy-built payload), same rows."""
    now = datetime.now(UTC)
    times = [now] * COPY_ROWS
    ids = [1 + i % SERIES for i in range(COPY_ROWS)]
    values = [float(i) for i in range(COPY_ROWS)]
    names, types = ("time", "series_id", "value"), ("timestamptz", "int8", "float8")
    start = time.perf_counter()
    with engine.begin() as conn:
        copy_rows(conn, "metric_points", names, types, zip(times, ids, values, strict=True))
    per_row = COPY_ROWS / (time.perf_counter() - start)
    start = time.perf_counter()
    with engine.begin() as conn:
        copy_columns(conn, "metric_points", names, types, (times, ids, values))
    payload = COPY_ROWS / (time.perf_counter() - start)
    return per_row, payload


def insert_rate(engine: Engine) -> float:
    now = datetime.now(UTC)
    count = 0
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        statement = text("INSERT INTO metric_points (time, series_id, value) VALUES (:t, :s, :v)")
        start = time.perf_counter()
        while time.perf_counter() - start < INSERT_S:
            conn.execute(statement, {"t": now, "s": 1 + count % SERIES, "v": float(count)})
            count += 1
        return count / (time.perf_counter() - start)


def main() -> None:
    url = database_url(DB_NAME, fresh=False)  # created once, reused
    engine = make_engine(url)
    migrate(engine, now=datetime.now(UTC), days_back=1)
    with engine.begin() as conn:
        conn.execute(
            text("TRUNCATE metric_points, metric_series, api_keys RESTART IDENTITY CASCADE")
        )
        key = create_api_key(
            conn, name="bench", scope=ApiScope.INGEST, rate_limit_per_minute=0, points_per_minute=0
        )  # a benchmark measures the server, not the per-key rate limits
    print(
        f"HTTP: {WORKERS} uvicorn workers, {CLIENTS} clients, batches of {BATCH} points, "
        f"{DURATION_S:.0f} s; {os.cpu_count()} cores, load average at start "
        f"{os.getloadavg()[0]:.1f} (API, clients and Postgres share them)"
    )
    result = http_rate(url, key)
    print(
        f"  {result['points_per_s']:>12,.0f} points/s over HTTP  ({result['requests']} requests, "
        f"{result['failed']} failed, p50 {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms)"
    )
    api_us, pg_us = result["api_cpu_us_per_point"], result["pg_cpu_us_per_point"]
    print(
        f"  CPU per point: API {api_us:.1f} µs, Postgres {pg_us:.1f} µs -> with 2 idle cores "
        f"and no other load the server side would sustain ~{2e6 / (api_us + pg_us):,.0f} points/s"
    )
    print(
        f"  API RSS peak: {result['rss_mb']:.0f} MB for all processes, "
        f"{result['worker_rss_mb']:.0f} MB for the largest"
    )
    copy_per_row, copy = copy_rate(engine)
    print(
        f"  {copy:>12,.0f} points/s raw binary COPY, one payload built with numpy "
        f"({COPY_ROWS:,} rows, one transaction; the path HTTP ingest uses)"
    )
    print(f"  {copy_per_row:>12,.0f} points/s raw binary COPY, psycopg write_row per row")
    insert = insert_rate(engine)
    print(f"  {insert:>12,.0f} points/s one INSERT per row, autocommit")
    print(
        f"  HTTP is {result['points_per_s'] / copy:.0%} of raw COPY and "
        f"{result['points_per_s'] / insert:.0f}x one-INSERT-per-row"
    )
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE metric_points, metric_series RESTART IDENTITY CASCADE"))
    engine.dispose()
    print(
        json.dumps(
            {
                "http_points_per_s": round(result["points_per_s"]),
                "copy_points_per_s": round(copy),
                "insert_points_per_s": round(insert),
                "rss_mb": round(result["worker_rss_mb"], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
