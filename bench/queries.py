"""Read speed of the Overview and Performance functions on 30 days of data, and p95 accuracy.

Builds its own database `bench_queries` on the embedded Postgres under .data/bench with binary
COPY (block mode: numpy writes the PGCOPY rows directly): 40 metric series at one point every
10 s (~10.4 M points), 20 endpoints with ~5.2 M API timings shaped by hour of day, weekday and
a few bad hours, and ~0.5 M Web Vitals. Then it times `run_rollups` over everything, times each
read function behind the Overview and Performance pages (median of 5) for 1 h, 24 h, 7 d and
30 d, and compares rollup percentiles with exact `percentile_cont` on the raw rows, whose own
query time is the baseline. Last line: JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import struct
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._bench_db import database_url  # noqa: E402
from monitoring_core.db import embedded_url, make_engine  # noqa: E402
from monitoring_core.metrics_query import query_metric  # noqa: E402
from monitoring_core.migrate import migrate  # noqa: E402
from monitoring_core.performance import queries as q  # noqa: E402
from monitoring_core.performance.vitals import rate_vital  # noqa: E402
from monitoring_core.rollups import run_rollups  # noqa: E402
from monitoring_core.schema import metadata  # noqa: E402
from monitoring_core.timerange import TimeRange, pick_interval  # noqa: E402

DB_NAME = "bench_queries"
DAYS = 30
POINT_EVERY_S = 10
HOSTS = [f"web-{i}" for i in range(8)]
METRICS = ["cpu_percent", "memory_percent", "queue_depth", "db_connections", "bookings_per_min"]
API_ROWS = 5_200_000
VITAL_ROWS = 500_000
TARGET_MS, TARGET_ERROR = 300.0, 0.02
RANGES = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7),
          "30d": timedelta(days=30)}  # fmt: skip
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
ENDPOINTS = [  # (method, path, median ms, sigma, server error share)
    ("GET", "/api/vendors", 120, 0.5, 0.002), ("GET", "/api/vendors/{id}", 80, 0.4, 0.001),
    ("POST", "/api/bookings", 450, 0.6, 0.01), ("GET", "/api/bookings/{id}", 90, 0.4, 0.002),
    ("GET", "/api/venues/search", 650, 0.7, 0.004), ("GET", "/api/me", 25, 0.3, 0.0005),
    ("POST", "/api/auth/login", 180, 0.4, 0.003), ("GET", "/api/guests", 140, 0.5, 0.002),
    ("POST", "/api/guests/import", 1800, 0.6, 0.02), ("GET", "/api/timeline", 110, 0.5, 0.002),
    ("POST", "/api/payments", 900, 0.5, 0.008), ("GET", "/api/invoices", 160, 0.5, 0.002),
    ("GET", "/api/messages", 70, 0.4, 0.001), ("POST", "/api/messages", 130, 0.5, 0.003),
    ("GET", "/api/photos", 300, 0.8, 0.003), ("POST", "/api/photos/upload", 2400, 0.6, 0.015),
    ("GET", "/api/seating", 200, 0.5, 0.002), ("PUT", "/api/seating", 260, 0.5, 0.004),
    ("GET", "/api/reports/budget", 1100, 0.7, 0.006), ("GET", "/healthz", 5, 0.3, 0.0),
]  # fmt: skip
PAGES = ["/", "/venues", "/vendors", "/planner", "/checkout", "/guests"]
DEVICES = ["mobile", "desktop", "tablet"]
VITALS = {"LCP": (2200, 0.5), "INP": (150, 0.6), "CLS": (0.06, 0.9), "FCP": (1500, 0.45),
          "TTFB": (600, 0.5)}  # fmt: skip


# ------------------------------------------------------------------ binary COPY in blocks
def _pg_time(seconds_since_epoch: np.ndarray) -> np.ndarray:
    """Unix seconds (float) -> Postgres timestamptz (int64 microseconds since 2000-01-01)."""
    return ((seconds_since_epoch - PG_EPOCH.timestamp()) * 1e6).astype(np.int64)


def _block(fields: list[tuple[str, Any]], rows: int) -> bytes:
    """PGCOPY tuples for fixed-width fields: [(numpy dtype str, values or constant bytes)]."""
    layout: list[tuple[str, str]] = [("n", ">i2")]
    for i, (dtype, _) in enumerate(fields):
        layout += [(f"l{i}", ">i4"), (f"f{i}", dtype)]
    arr = np.empty(rows, dtype=np.dtype(layout))
    arr["n"] = len(fields)
    for i, (dtype, values) in enumerate(fields):
        arr[f"l{i}"] = np.dtype(dtype).itemsize
        arr[f"f{i}"] = values
    return arr.tobytes()


def _copy(pg: psycopg.Connection, statement: str, blocks: Iterator[bytes]) -> None:
    with pg.cursor().copy(statement) as cp:
        cp.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
        for block in blocks:
            cp.write(block)
        cp.write(struct.pack(">h", -1))


def _metric_blocks(rng: np.random.Generator, start: float, series: list[int]) -> Iterator[bytes]:
    seconds = start + np.arange(0, DAYS * 86400, POINT_EVERY_S, dtype=np.float64)
    hour = (seconds % 86400) / 3600
    daily = np.sin((hour - 8) / 24 * 2 * np.pi)
    for sid in series:
        t = seconds + rng.uniform(0, POINT_EVERY_S, seconds.size)
        values = np.maximum(0, 40 + 25 * daily + rng.normal(0, 8, seconds.size) + sid % 7)
        pg_t = _pg_time(t)
        yield _block([(">i8", pg_t), (">i8", sid), (">f8", values), (">i8", pg_t + 1_000_000)],
                     seconds.size)  # fmt: skip


def _api_blocks(rng: np.random.Generator, start: float) -> Iterator[bytes]:
    per = API_ROWS // len(ENDPOINTS)
    for method, path, median, sigma, err in ENDPOINTS:
        # Busier afternoons and Saturdays; two bad hours where one endpoint slows down.
        t = start + rng.uniform(0, DAYS * 86400, per * 4)
        hour, weekday = (t % 86400) / 3600, ((t // 86400) + 3) % 7  # 1970-01-01 was a Thursday
        keep = rng.uniform(0, 1, t.size) < (0.35 + 0.25 * np.sin((hour - 9) / 24 * 2 * np.pi)) * (
            1 + 0.6 * (weekday == 5)
        )
        t = np.sort(t[keep][:per])
        latency = rng.lognormal(np.log(median), sigma, t.size)
        bad = (t > start + 20 * 86400) & (t < start + 20 * 86400 + 7200)
        latency[bad] *= 4
        status = np.where(rng.uniform(0, 1, t.size) < err * (1 + 9 * bad), 503, 200)
        status[rng.uniform(0, 1, t.size) < 0.01] = 404
        pg_t = _pg_time(t)
        yield _block(
            [(">i8", pg_t), (f"S{len(method)}", method.encode()), (f"S{len(path)}", path.encode()),
             (">i2", status), (">f8", latency), (">i8", pg_t + 500_000)],
            t.size,
        )  # fmt: skip


def _vital_blocks(rng: np.random.Generator, start: float) -> Iterator[bytes]:
    per = VITAL_ROWS // (len(VITALS) * len(PAGES) * len(DEVICES))
    for name, (median, sigma) in VITALS.items():
        for page in PAGES:
            for device in DEVICES:
                slow = 1.6 if device == "mobile" else 1.0
                values = rng.lognormal(np.log(median * slow), sigma, per)
                t = start + rng.uniform(0, DAYS * 86400, per)
                ratings = np.array([rate_vital(name, float(v)) for v in values])
                for rating in ("good", "needs-improvement", "poor"):
                    pick = ratings == rating
                    if pick.any():
                        pg_t = _pg_time(t[pick])
                        yield _block(
                            [(">i8", pg_t), (f"S{len(name)}", name.encode()), (">f8", values[pick]),
                             (f"S{len(rating)}", rating.encode()), (f"S{len(page)}", page.encode()),
                             (f"S{len(device)}", device.encode()), (">i8", pg_t + 2_000_000)],
                            int(pick.sum()),
                        )  # fmt: skip


def build(engine: Engine, now: datetime) -> dict[str, float]:
    rng = np.random.default_rng(20260606)
    start = (now - timedelta(days=DAYS)).timestamp()
    with engine.begin() as conn:
        series = [
            conn.execute(
                text(
                    "INSERT INTO metric_series (name, dimensions) VALUES (:n, CAST(:d AS jsonb)) "
                    "RETURNING id"
                ),  # fmt: skip
                {"n": m, "d": json.dumps({"host": h})},
            ).scalar_one()
            for m in METRICS
            for h in HOSTS
        ]
    counts: dict[str, float] = {}
    with engine.begin() as conn:
        pg = conn.connection.driver_connection
        assert isinstance(pg, psycopg.Connection)
        t0 = time.perf_counter()
        _copy(pg, "COPY metric_points (time, series_id, value, ingested_at) FROM STDIN "
                  "(FORMAT BINARY)", _metric_blocks(rng, start, series))  # fmt: skip
        _copy(pg, "COPY api_timings (time, method, endpoint, status_code, response_time_ms, "
                  "ingested_at) FROM STDIN (FORMAT BINARY)", _api_blocks(rng, start))  # fmt: skip
        _copy(pg, "COPY web_vitals (time, name, value, rating, page_route, device_type, "
                  "ingested_at) FROM STDIN (FORMAT BINARY)", _vital_blocks(rng, start))  # fmt: skip
        counts["copy_s"] = time.perf_counter() - t0
    with engine.connect() as conn:
        for table in ("metric_points", "api_timings", "web_vitals"):
            counts[table] = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return counts


# ------------------------------------------------------------------ timing and accuracy
def median_ms(engine: Engine, fn: Callable[[Any], Any], runs: int = 5) -> float:
    times = []
    with engine.connect() as conn:
        fn(conn)  # warm the plan and the cache once, like a dashboard refresh
        for _ in range(runs):
            t0 = time.perf_counter()
            fn(conn)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def read_functions(now: datetime, tr: TimeRange) -> dict[str, Callable[[Any], Any]]:
    step = pick_interval(tr)
    top = ["/api/vendors", "/api/bookings", "/api/venues/search", "/api/payments", "/api/me"]
    return {
        "overview_summary": lambda c: q.overview_summary(c, tr),
        "latency_trend": lambda c: q.latency_trend(c, tr, step),
        "endpoint_table": lambda c: q.endpoint_table(c, tr),
        "top_slow_endpoints": lambda c: q.top_slow_endpoints(c, tr),
        "endpoint_latency_trend": lambda c: q.endpoint_latency_trend(c, tr, top, step),
        "web_vitals_summary": lambda c: q.web_vitals_summary(c, tr),
        "query_metric_avg_by_host": lambda c: query_metric(
            c, metric_name="cpu_percent", aggregation="avg", interval=step, tr=tr, group_by=["host"]
        ),  # fmt: skip
        "query_metric_p95": lambda c: query_metric(
            c, metric_name="cpu_percent", aggregation="p95", interval=step, tr=tr
        ),  # fmt: skip
    }


def accuracy(engine: Engine, now: datetime) -> dict[str, Any]:
    """Rollup p50/p95/p99 vs exact percentile_cont, overall for 30 d and per endpoint for 7 d."""
    out: dict[str, Any] = {"worst_p95_error": 0.0}
    with engine.connect() as conn:
        t0 = time.perf_counter()
        exact = conn.execute(
            text("SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP "
                 "(ORDER BY response_time_ms) FROM api_timings WHERE time >= :lo AND time < :hi"),
            {"lo": now - timedelta(days=30), "hi": now},
        ).scalar_one()  # fmt: skip
        out["exact_30d_ms"] = (time.perf_counter() - t0) * 1000
        got = q.overview_summary(conn, TimeRange(now - timedelta(days=30), now))
        for name, e in zip(("p50", "p95", "p99"), exact, strict=True):
            out[f"{name}_30d_error"] = abs(got[f"{name}_ms"] / e - 1)
        week = TimeRange(now - timedelta(days=7), now)
        per_endpoint = conn.execute(
            text("SELECT method, endpoint, percentile_cont(0.95) WITHIN GROUP "
                 "(ORDER BY response_time_ms) FROM api_timings WHERE time >= :lo AND time < :hi "
                 "GROUP BY 1, 2"),
            {"lo": week.start, "hi": week.end},
        ).all()  # fmt: skip
        table = q.endpoint_table(conn, week).set_index(["method", "endpoint"])
    errors = [abs(table.loc[(m, e), "p95"] / p95 - 1) for m, e, p95 in per_endpoint]
    out["worst_p95_error"] = max([*errors, out["p95_30d_error"]])
    return out


def _server() -> Any:
    return make_url(embedded_url(ROOT / ".data" / "bench"))


def _reusable(now: datetime) -> Engine | None:
    """The data set of an earlier run when it is complete and its 30 days still end near now.

    Building costs most of the run (15 M rows of COPY); reads and rollups are what we time,
    and rollups are rebuilt from scratch below either way.
    """
    server = _server()
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone():
            return None
    engine = make_engine(server.set(database=DB_NAME).render_as_string(hide_password=False))
    migrate(engine, now=now, days_back=DAYS + 2)
    with engine.connect() as conn:
        built = conn.execute(
            text("SELECT value FROM settings WHERE key = 'bench_queries_built'")
        ).scalar()
    if not built or now - datetime.fromisoformat(built["now"]) > timedelta(hours=6):
        engine.dispose()
        return None
    return engine


def _database(now: datetime) -> Engine:
    engine = make_engine(database_url(DB_NAME))
    migrate(engine, now=now, days_back=DAYS + 2)
    return engine


def _reset_rollups(engine: Engine) -> None:
    tables = [t for t in metadata.tables if "_rollup_" in t or t.startswith("api_total_")]
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(tables)}, rollup_watermarks"))


def main() -> None:
    started = time.perf_counter()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    engine = _reusable(now)
    if engine is None:
        engine = _database(now)
        counts = build(engine, now)
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO settings (key, value) VALUES ('bench_queries_built', "
                     "CAST(:v AS jsonb))"),
                {"v": json.dumps({"now": now.isoformat(), **counts})},
            )  # fmt: skip
        built = "built now"
    else:
        with engine.connect() as conn:
            saved = conn.execute(
                text("SELECT value FROM settings WHERE key = 'bench_queries_built'")
            ).scalar_one()
        now, counts = datetime.fromisoformat(saved["now"]), saved
        built = f"reused from {now:%H:%M} UTC (drop database {DB_NAME} to rebuild)"
    print(f"data ({built}): {counts['metric_points']:,} metric points, "
          f"{counts['api_timings']:,} API timings, {counts['web_vitals']:,} Web Vitals; binary "
          f"COPY {counts['copy_s']:.1f} s; {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}")  # fmt: skip
    _reset_rollups(engine)
    t0 = time.perf_counter()
    report = run_rollups(engine, datetime.now(UTC), safety_lag=timedelta(0))
    rollup_s = time.perf_counter() - t0
    print(f"rollups: {rollup_s:.1f} s for everything ({report.summary()})")
    timings: dict[str, dict[str, float]] = {}
    for label, span in RANGES.items():
        tr = TimeRange(now - span, now)
        for name, fn in read_functions(now, tr).items():
            timings.setdefault(name, {})[label] = round(median_ms(engine, fn), 1)
        timings.setdefault("regression_flags", {})[label] = round(
            median_ms(engine, lambda c: q.regression_flags(c, now)), 1
        )
    print(f"{'read function (median of 5, ms)':<34}" + "".join(f"{r:>9}" for r in RANGES))
    for name, by_range in timings.items():
        print(f"{name:<34}" + "".join(f"{by_range[r]:>9.1f}" for r in RANGES))
    acc = accuracy(engine, now)
    slowest = max(v for by_range in timings.values() for v in by_range.values())
    print(f"exact percentile_cont over 30 d of raw timings: {acc['exact_30d_ms']:.0f} ms "
          f"(baseline) vs overview_summary 30 d {timings['overview_summary']['30d']:.0f} ms "
          f"= {acc['exact_30d_ms'] / timings['overview_summary']['30d']:.0f}x faster")  # fmt: skip
    print(f"rollup vs exact, 30 d: p50 {acc['p50_30d_error']:.2%}, p95 {acc['p95_30d_error']:.2%}, "
          f"p99 {acc['p99_30d_error']:.2%}; worst per-endpoint p95 (7 d) "
          f"{acc['worst_p95_error']:.2%} (target {TARGET_ERROR:.0%})")  # fmt: skip
    print(
        f"slowest read: {slowest:.0f} ms (target {TARGET_MS:.0f} ms); total {time.perf_counter() - started:.0f} s"
    )
    engine.dispose()
    print(json.dumps({
        "metric_points": counts["metric_points"], "api_timings": counts["api_timings"],
        "copy_s": round(counts["copy_s"], 1), "rollup_s": round(rollup_s, 1),
        "slowest_read_ms": slowest, "reads_ms": timings,
        "exact_percentile_30d_ms": round(acc["exact_30d_ms"], 1),
        "p95_error_30d": round(acc["p95_30d_error"], 5),
        "worst_endpoint_p95_error_7d": round(acc["worst_p95_error"], 5),
        "targets_met": bool(slowest < TARGET_MS and acc["worst_p95_error"] < TARGET_ERROR),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
