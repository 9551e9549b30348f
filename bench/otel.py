"""OTLP/HTTP ingest and trace/log reads (#14 speed).

1. Spans: protobuf ExportTraceServiceRequests of BATCH spans (what the SDK's batch processor
   sends: 512), 8 attributes each, posted by SENDERS threads to the API (BENCH_API_PROCESSES
   uvicorn processes, 2 as MONITORING_API_PROCESSES defaults to) for DURATION_S; baseline: raw
   binary COPY of the same rows into `spans` (the database floor).
2. Logs: the same with log records of ~200-byte bodies; baseline: raw binary COPY of the same
   rows into `log_records` (no search blocks), and `insert_logs` (the ingest writer: blocks,
   their trigrams, `log_volume`) to show what the search index costs.
3. Storage: bytes on disk per span and per log record (table + indexes, after the runs).
4. Reads: a 1,000-span trace read, put in waterfall order and drawn (the Traces page's
   figure, `ui.waterfall`, built and serialised as Streamlit sends it); over LOG_ROWS records
   in 24 h, a body substring search (rare and common needle), a service + severity
   filter and the logs of one trace (16 consecutive records share a trace id). The records are loaded in blocks of 512 per service, each block's rows and search
   codes built by `logs.store.block_rows` as ingest builds them, by binary COPY of ~200,000
   rows per transaction (10 M in a few minutes; the load rate is reported).

CPU: besides wall-clock rates, the CPU seconds of the API processes and of the Postgres
server (postmaster and every backend) during each ingest run are read with psutil, and the
items per API CPU-second and per Postgres CPU-second reported: on a shared machine they do
not depend on what else runs.

Embedded Postgres under .data/bench, database bench_otel. Peak RSS of the API sampled.
Usage: python bench/otel.py [DURATION_S] [LOG_ROWS] (LOG_ROWS 10000000 for the issue's 10 M).
Last line: JSON.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._api import start_api  # noqa: E402
from bench._bench_db import database_url  # noqa: E402
from monitoring_core.accounts import create_api_key  # noqa: E402
from monitoring_core.db import make_engine  # noqa: E402
from monitoring_core.enums import ApiScope  # noqa: E402
from monitoring_core.ingest.copy import copy_rows, jsonb_binary  # noqa: E402
from monitoring_core.ingest.validate import Limits  # noqa: E402
from monitoring_core.logs.queries import search_logs  # noqa: E402
from monitoring_core.logs.store import (  # noqa: E402
    LOG_COLUMNS,
    block_rows,
    copy_block_rows,
    insert_logs,
)
from monitoring_core.migrate import migrate  # noqa: E402
from monitoring_core.otlp.logs import logs_from_request  # noqa: E402
from monitoring_core.otlp.traces import spans_from_request  # noqa: E402
from monitoring_core.traces.queries import trace_detail  # noqa: E402
from monitoring_core.traces.store import insert_spans  # noqa: E402
from ui.waterfall import waterfall_figure  # noqa: E402

BATCH = 512
SENDERS = 4
API_PROCESSES = int(os.environ.get("BENCH_API_PROCESSES", "2"))  # the API's default
BODIES = 40  # distinct request bodies per signal, reused round-robin
SERVICES = ("checkout", "payments", "search", "vendors", "notifications")


def _kv(request: Any, key: str, value: Any) -> None:
    attr = request.add(key=key)
    if isinstance(value, int):
        attr.value.int_value = value
    else:
        attr.value.string_value = value


def _span_body(rng: random.Random, now_ns: int) -> bytes:
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    _kv(resource.resource.attributes, "service.name", rng.choice(SERVICES))
    scope = resource.scope_spans.add()
    scope.scope.name = "bench"
    trace_id = rng.randbytes(16)
    for i in range(BATCH):
        span = scope.spans.add()
        if i % 16 == 0:
            trace_id = rng.randbytes(16)
        span.trace_id, span.span_id = trace_id, rng.randbytes(8)
        if i % 16:
            span.parent_span_id = rng.randbytes(8)
        span.name = rng.choice(("GET /api/vendors/{id}", "SELECT bookings", "charge card"))
        span.kind = 2 if i % 16 == 0 else 3
        start = now_ns - rng.randrange(60_000_000_000)
        span.start_time_unix_nano, span.end_time_unix_nano = start, start + rng.randrange(10**8)
        for key, value in (
            ("http.request.method", "GET"),
            ("http.route", "/api/vendors/{id}"),
            ("http.response.status_code", 200),
            ("db.system", "postgresql"),
            ("server.address", "db.internal"),
            ("booking.id", str(rng.randrange(10**6))),
            ("user.tier", rng.choice(("free", "pro"))),
            ("region", rng.choice(("uk", "fr", "de"))),
        ):
            _kv(span.attributes, key, value)
    return request.SerializeToString()


def _log_body(rng: random.Random, now_ns: int) -> bytes:
    request = logs_service_pb2.ExportLogsServiceRequest()
    resource = request.resource_logs.add()
    _kv(resource.resource.attributes, "service.name", rng.choice(SERVICES))
    scope = resource.scope_logs.add()
    for _ in range(BATCH):
        record = scope.log_records.add()
        record.time_unix_nano = now_ns - rng.randrange(60_000_000_000)
        record.severity_number = rng.choice((9, 9, 9, 13, 17))
        record.severity_text = {9: "INFO", 13: "WARN", 17: "ERROR"}[record.severity_number]
        record.body.string_value = (
            f"booking {rng.randrange(10**6)} for vendor {rng.randrange(10**4)} processed in "
            f"{rng.randrange(1000)} ms by worker {rng.randrange(64)}; "
        ) + "x" * rng.randrange(90, 110)
        record.trace_id, record.span_id = rng.randbytes(16), rng.randbytes(8)
        _kv(record.attributes, "code.function", "process_booking")
    return request.SerializeToString()


def _tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its live children."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _postmaster_pid() -> int:
    [pid_file] = list((ROOT / ".data" / "bench").glob("**/postmaster.pid"))[:1]
    return int(pid_file.read_text().split()[0])


def _post_for(
    port: int, path: str, bodies: list[bytes], key: str, seconds: float, api_pid: int = 0
) -> dict[str, Any]:
    postmaster = _postmaster_pid()
    api_cpu, pg_cpu = _tree_cpu(api_pid), _tree_cpu(postmaster)
    sent = [0] * SENDERS
    errors: list[str] = []
    stop = time.monotonic() + seconds

    def run(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {key}"}
        i = n
        while time.monotonic() < stop:
            conn.request("POST", path, body=bodies[i % len(bodies)], headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors.append(f"{response.status}")
                return
            sent[n] += 1
            i += SENDERS

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(n,)) for n in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    items = sum(sent) * BATCH
    api_cpu, pg_cpu = _tree_cpu(api_pid) - api_cpu, _tree_cpu(postmaster) - pg_cpu
    return {
        "requests": sum(sent),
        "per_s": items / wall,
        "per_api_cpu_s": items / api_cpu if api_cpu > 0 else None,
        "per_pg_cpu_s": items / pg_cpu if pg_cpu > 0 else None,
        "api_cpu_us_each": api_cpu / max(items, 1) * 1e6,
        "pg_cpu_us_each": pg_cpu / max(items, 1) * 1e6,
        "errors": errors[:3],
    }


def _load_logs(engine: Any, now: datetime, count: int, per_copy: int = 400) -> float:
    """LOG_ROWS records in blocks of 512 (`block_rows`, as ingest builds them), `per_copy`
    blocks per binary COPY and transaction; returns records per second."""
    blocks = -(-count // BATCH)
    with engine.begin() as conn:
        ids = list(
            conn.execute(
                text("SELECT nextval('log_block_seq') FROM generate_series(1, :n)"), {"n": blocks}
            ).scalars()
        )
    batches = _log_rows(now, count)
    started = time.monotonic()
    for first in range(0, blocks, per_copy):
        resources: dict[int, tuple[Any, bytes]] = {}

        def rows(first: int = first, resources: dict[int, tuple[Any, bytes]] = resources) -> Any:
            for block in ids[first : first + per_copy]:
                batch = next(batches, None)
                if batch is None:
                    return
                yield from block_rows(batch, block, resources)[0]

        with engine.begin() as conn:
            copy_block_rows(conn, rows())
    return count / (time.monotonic() - started)


def _copy_rate(engine: Any, rows: list[tuple[Any, ...]], write: Any, table: str) -> float:
    started = time.monotonic()
    with engine.begin() as conn:
        write(conn, rows)
    rate = len(rows) / (time.monotonic() - started)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {table}"))
    return rate


def _raw_log_copy(conn: Any, rows: list[tuple[Any, ...]]) -> int:
    """The database floor: the same rows by binary COPY, without search blocks."""
    return copy_rows(
        conn,
        "log_records",
        [n for n, _ in LOG_COLUMNS],
        ["bytea" if k == "jsonb" else k for _, k in LOG_COLUMNS],
        ((*row[:7], jsonb_binary(row[7]), jsonb_binary(row[8])) for row in rows),
    )


def _log_rows(now: datetime, count: int) -> Any:
    """Batches of 512 records of one service over the last 24 h, templated bodies."""
    step = 86_400.0 / count
    for first in range(0, count, BATCH):
        service = SERVICES[(first // BATCH) % len(SERVICES)]
        yield [
            (
                now - timedelta(seconds=g * step),
                (9, 9, 9, 13, 17)[(g // 5) % 5],
                "INFO",
                f"booking {g} for vendor {g % 9973} processed by worker {g % 64} " + "x" * 100,
                f"{g // 16 + 1:032x}",  # a trace of 16 consecutive records
                None,
                service,
                {},
                {},
            )
            for g in range(first, min(first + BATCH, count))
        ]


def _bytes_per_row(engine: Any, table: str) -> float:
    with engine.connect() as conn:
        size = conn.execute(
            text(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_inherits i"
                " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = CAST(:t AS regclass)"
            ),
            {"t": table},
        ).scalar_one()
        rows = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
    return float(size) / max(rows, 1)


def main(duration: float, log_rows: int) -> dict[str, Any]:
    began = time.monotonic()
    url = database_url("bench_otel")
    engine = make_engine(url)
    now = datetime.now(UTC)
    migrate(engine, now=now, days_back=2)
    with engine.begin() as conn:
        key = create_api_key(
            conn, name="bench", scope=ApiScope.INGEST, rate_limit_per_minute=0, points_per_minute=0
        )
    rng = random.Random(14)
    now_ns = time.time_ns()
    span_bodies = [_span_body(rng, now_ns) for _ in range(BODIES)]
    log_bodies = [_log_body(rng, now_ns) for _ in range(BODIES)]
    limits = Limits(now - timedelta(days=1), now + timedelta(days=1))
    span_rows = [
        row
        for body in span_bodies[:10]
        for row in spans_from_request(
            trace_service_pb2.ExportTraceServiceRequest.FromString(body), limits
        ).spans
    ]
    log_rows_copy = [
        row
        for body in log_bodies[:10]
        for row in logs_from_request(
            logs_service_pb2.ExportLogsServiceRequest.FromString(body), limits
        ).rows
    ]
    out: dict[str, Any] = {
        "span_request_bytes": sum(map(len, span_bodies)) // len(span_bodies),
        "log_request_bytes": sum(map(len, log_bodies)) // len(log_bodies),
        "copy_spans_per_s": _copy_rate(engine, span_rows, insert_spans, "spans"),
        "copy_logs_per_s": _copy_rate(engine, log_rows_copy, _raw_log_copy, "log_records"),
        "insert_logs_per_s": _copy_rate(engine, log_rows_copy, insert_logs, "log_records"),
    }
    api, port = start_api(url, workers=API_PROCESSES)
    peak = [0]
    sampling = threading.Event()

    def sample() -> None:
        proc = psutil.Process(api.pid)
        while not sampling.wait(0.2):
            try:  # the supervisor and its worker processes together
                rss = sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
            except psutil.NoSuchProcess:
                continue
            peak[0] = max(peak[0], rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        out["otlp_spans"] = _post_for(port, "/v1/traces", span_bodies, key, duration, api.pid)
        out["otlp_logs"] = _post_for(port, "/v1/logs", log_bodies, key, duration, api.pid)
    finally:
        sampling.set()
        sampler.join()
        api.terminate()
        api.wait(timeout=30)
    out["api_peak_rss_mb"] = round(peak[0] / 2**20)
    out["spans_fraction_of_copy"] = out["otlp_spans"]["per_s"] / out["copy_spans_per_s"]
    out["logs_fraction_of_copy"] = out["otlp_logs"]["per_s"] / out["copy_logs_per_s"]
    out["bytes_per_span"] = _bytes_per_row(engine, "spans")
    out["bytes_per_log_record"] = _bytes_per_row(engine, "log_records")

    # one trace of 1,000 spans, read and ordered as the Traces page does
    trace = "ab" * 16
    t0 = now - timedelta(minutes=30)
    rows: list[tuple[Any, ...]] = [
        (t0 + timedelta(milliseconds=i), trace, f"{i + 1:016x}", f"{(i - 1) // 4 + 1:016x}" if i else None,
         "checkout", f"op {i % 7}", 1, 5.0, 1, None, {"i": i}, [], {}, "bench")
        for i in range(1000)
    ]  # fmt: skip
    with engine.begin() as conn:
        insert_spans(conn, rows)
    with engine.connect() as conn:
        trace_detail(conn, trace_id=trace, around=t0)  # warm the cache once
        started = time.monotonic()
        drawn = trace_detail(conn, trace_id=trace, around=t0)
        out["trace_1000_read_ms"] = (time.monotonic() - started) * 1000
        figure = waterfall_figure(drawn)
        figure.to_json()  # plotly's validators load on first use: time a page's steady state
        started = time.monotonic()
        drawn = trace_detail(conn, trace_id=trace, around=t0)
        payload = waterfall_figure(drawn).to_json()
        out["trace_1000_drawn_ms"] = (time.monotonic() - started) * 1000
        out["trace_1000_figure_kb"] = len(payload) // 1024
    assert len(drawn) == 1000

    # log search over LOG_ROWS records in the last 24 h
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE log_records"))
    out["search_set_load_per_s"] = _load_logs(engine, now, log_rows)
    started = time.monotonic()
    with engine.begin() as conn:
        conn.execute(text("ANALYZE log_records"))
    out["search_set_analyze_s"] = time.monotonic() - started
    out["search_set_bytes_per_record"] = _bytes_per_row(engine, "log_records")
    window: dict[str, Any] = {
        "start": now - timedelta(hours=24),
        "end": now + timedelta(seconds=1),
    }
    with engine.connect() as conn:
        searches: tuple[tuple[str, dict[str, Any]], ...] = (
            ("log_substring_ms", {"contains": "vendor 4242 processed"}),
            ("log_substring_common_ms", {"contains": "worker 7 "}),
            ("log_service_severity_ms", {"service": "payments", "min_severity": 17}),
            ("log_trace_ms", {"trace_id": f"{log_rows // 32 + 1:032x}"}),
        )
        for name, kwargs in searches:
            search_logs(conn, **window, **kwargs, limit=500)  # warm the cache once
            started = time.monotonic()
            found = search_logs(conn, **window, **kwargs, limit=500)
            out[name] = (time.monotonic() - started) * 1000
            out[name.replace("_ms", "_rows")] = len(found)
        out["pg_trgm"] = bool(
            conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")).first()
        )
    out["log_rows"] = log_rows
    out["total_s"] = time.monotonic() - began
    return out


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 15.0
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    os.environ.setdefault("PYTHONHASHSEED", "0")
    result = main(seconds, rows)
    print(json.dumps(result, default=str))
