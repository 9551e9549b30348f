"""Error ingest throughput: own API (batches of 500) and Sentry envelopes (gzip, ~8 KB events
of 10 frames in 20 groups, one event per request, 32 senders), with scrubbing and grouping,
against baselines measured in the same run: the in-process pipeline on one core (own items;
the same kind of envelopes decoded, mapped, scrubbed and grouped), and raw binary COPY of the
prepared Sentry rows (the database floor). Peak RSS of the API process is sampled throughout.

Uses the embedded Postgres under .data/bench, in a database of its own (bench_errors), and the
API (uvicorn, WORKERS processes) in a subprocess; CLIENTS processes post pre-serialised bodies.
Last line: JSON.
"""

from __future__ import annotations

import gzip
import http.client
import json
import multiprocessing as mp
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import psutil
import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._api import start_api  # noqa: E402
from bench._bench_db import database_url  # noqa: E402
from monitoring_core.accounts import create_api_key  # noqa: E402
from monitoring_core.config import load_settings  # noqa: E402
from monitoring_core.db import make_engine  # noqa: E402
from monitoring_core.enums import ApiScope  # noqa: E402
from monitoring_core.errors.envelope import decompress, parse_envelope  # noqa: E402
from monitoring_core.errors.scrub import Scrubber  # noqa: E402
from monitoring_core.errors.sentry import event_to_error  # noqa: E402
from monitoring_core.errors.store import insert_events  # noqa: E402
from monitoring_core.errors.validate import parse_error_items  # noqa: E402
from monitoring_core.flows.error_ingest import prepare  # noqa: E402
from monitoring_core.migrate import migrate  # noqa: E402

# As `python -m monitoring_core api` (make run) serves: MONITORING_API_PROCESSES uvicorn
# processes (default 2; per-key limits are shared through Postgres), so the figures are what
# users get. With more than one, the envelope route is also measured on one process in the
# same run (the baseline).
WORKERS = load_settings().api_processes
CLIENTS = 4
BATCH = 500
SDKS_PER_CLIENT = 8  # concurrent one-event-at-a-time senders per client process (32 in all)
# Enough bodies for DURATION_S at ~2,000 events/s, so that no sender runs dry before the end.
ENVELOPES_PER_SDK = 1000
DURATION_S = 15.0
PREPARE_EVENTS = 20_000
SENTRY_PREPARE_EVENTS = 5_000
COPY_EVENTS = 100_000
DB_NAME = "bench_errors"
BUGS = 20  # own-API bugs, and Sentry groups
FRAMES = 10
EVENT_BYTES = 8_000  # roughly, per Sentry event before gzip (printed: the measured mean)
TZ = ZoneInfo("Europe/London")


def _stack(bug: int) -> str:
    frames = [
        f'  File "/srv/app/svc{bug % 7}/module{k}.py", line {10 + k * bug % 90}, in fn_{bug}_{k}\n'
        f"    result = handler_{k}(request, amount={k * 3})"
        for k in range(8)
    ]
    return "Traceback (most recent call last):\n" + "\n".join(frames) + f"\nError{bug}: boom"


def _item(rng: random.Random) -> dict[str, Any]:
    bug = rng.randrange(BUGS)
    return {
        "error_type": f"Error{bug}",
        "message": f"order {rng.randrange(10**6)} for {uuid.uuid4()} failed after {rng.random():.3f}s"
        f" (user anna{rng.randrange(100)}@example.com, Bearer tok{rng.randrange(10**9)}abc)",
        "service_name": ["web", "payments", "rsvp", "vendors", "mail"][bug % 5],
        "level": ["frontend", "api", "database", "third_party"][bug % 4],
        "stack_trace": _stack(bug),
        "user_id": f"u{rng.randrange(2000)}",
        "organization_id": f"o{rng.randrange(200)}",
        "request_id": uuid.uuid4().hex,
        "trace_id": uuid.uuid4().hex,
        "endpoint_path": f"/api/v1/orders/{rng.randrange(10**5)}",
        "context": {"password": "hunter2", "amount": rng.randrange(10**4), "note": "x" * 40},
    }


def _frame(bug: int, k: int, rng: random.Random) -> dict[str, Any]:
    """A frame as sentry_sdk sends it: source context lines and local variables."""
    module = f"svc{bug % 7}.module{k}"
    return {
        "filename": f"svc{bug % 7}/module{k}.py",
        "abs_path": f"/srv/app/svc{bug % 7}/module{k}.py",
        "module": module,
        "function": f"fn_{bug}_{k}",
        "lineno": 10 + k,
        "in_app": k > 2,
        "pre_context": [f"    step_{j} = prepare_{j}(request, order)" for j in range(3)],
        "context_line": f"    result = handler_{k}(request, amount=amount)",
        "post_context": [
            f"    log.info('step {j} done', extra={{'order': order}})" for j in range(3)
        ],
        "vars": {
            "amount": str(rng.randrange(10**4)),
            "order": f"'ord_{rng.randrange(10**8)}'",
            "request": "<Request 'POST /api/v1/orders'>",
            "token": "'sk_live_abcdef0123456789'",
        },
    }


def _sentry_event(rng: random.Random) -> dict[str, Any]:
    """A realistic sentry_sdk error event: FRAMES frames, breadcrumbs, request, contexts,
    modules; about EVENT_BYTES of JSON (the hardening issue's "~8 KB, 10 frames, 20 groups")."""
    bug = rng.randrange(BUGS)
    return {
        "event_id": uuid.uuid4().hex,
        "level": "error",
        "platform": "python",
        "timestamp": datetime.now(UTC).isoformat(),
        "release": "payments@1.4.0",
        "environment": "production",
        "server_name": f"web-{rng.randrange(8)}",
        "tags": {"service": "payments", "region": "eu-west-2"},
        "user": {"id": f"u{rng.randrange(2000)}", "ip_address": "10.0.0.1"},
        "contexts": {
            "trace": {"trace_id": uuid.uuid4().hex, "span_id": uuid.uuid4().hex[:16]},
            "runtime": {"name": "CPython", "version": "3.11.7"},
            "os": {"name": "Linux", "version": "6.1.0"},
        },
        "request": {
            "method": "POST",
            "url": f"https://shop.example.com/api/v1/orders/{rng.randrange(10**5)}",
            "query_string": "expand=items&currency=GBP",
            "headers": {
                "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
                "Accept": "application/json",
                "Authorization": "Bearer abc.def.ghi",
                "X-Request-Id": uuid.uuid4().hex,
            },
            "data": {"items": [{"sku": f"SKU-{i}", "qty": i} for i in range(3)]},
        },
        "breadcrumbs": {
            "values": [
                {
                    "timestamp": "2026-06-06T12:00:00Z",
                    "category": "httplib" if i % 2 else "query",
                    "message": f"GET /api/v1/orders/{rng.randrange(10**6)} -> 200",
                    "level": "info",
                }
                for i in range(5)
            ]
        },
        "modules": {f"package{i}": f"{i}.{i % 7}.{i % 3}" for i in range(20)},
        "sdk": {"name": "sentry.python.fastapi", "version": "2.75.0"},
        "exception": {
            "values": [
                {
                    "type": f"Error{bug}",
                    "value": f"order {rng.randrange(10**6)} failed",
                    "module": f"svc{bug % 7}.errors",
                    "mechanism": {"type": "fastapi", "handled": False},
                    "stacktrace": {"frames": [_frame(bug, k, rng) for k in range(FRAMES)]},
                }
            ]
        },
    }


def _envelope(event: dict[str, Any]) -> bytes:
    payload = orjson.dumps(event)
    header = orjson.dumps({"event_id": event["event_id"], "sent_at": "2026-06-06T12:00:00Z"})
    item = orjson.dumps({"type": "event", "length": len(payload)})
    return gzip.compress(header + b"\n" + item + b"\n" + payload + b"\n")


def _sender(
    port: int, path: str, headers: dict[str, str], bodies: list[bytes], per_request: int
) -> tuple[int, int, list[float], float, float]:
    """One keep-alive connection posting `bodies` in turn until DURATION_S or they run out."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    stored = failed = 0
    latencies: list[float] = []
    first = time.monotonic()  # CLOCK_MONOTONIC is system-wide: comparable across processes
    deadline = first + DURATION_S
    for body in bodies:
        if time.monotonic() >= deadline:
            break
        start = time.perf_counter()
        conn.request("POST", path, body=body, headers=headers)
        reply = conn.getresponse()
        reply.read()
        latencies.append(time.perf_counter() - start)
        if reply.status in (200, 202):
            stored += per_request
        else:
            failed += 1
    return stored, failed, latencies, first, time.monotonic()


def _client(port: int, key: str, kind: str, seed: int, results: Any, ready: Any) -> None:
    """Puts (stored, failed, latencies, first, last, CPU seconds this process spent sending:
    the senders share the 2 cores with the API and Postgres, so their cost is reported).
    `ready`: a barrier of all client processes, passed once the bodies are built, so that no
    client sends while another still builds (and gzips) its bodies on the same cores."""
    rng = random.Random(seed)
    if kind == "own":
        batches = [orjson.dumps([_item(rng) for _ in range(BATCH)]) for _ in range(6)]
        headers = {"Content-Type": "application/json", "X-API-Key": key}
        ready.wait()
        cpu = time.process_time()
        outcome = _sender(port, "/api/monitoring/errors", headers, batches * 100, BATCH)
        results.put((*outcome, time.process_time() - cpu))
        return
    # Many SDKs at once (each sends one event per request, one request at a time): threads
    # with a connection each. Fresh event ids everywhere (resent ids would be deduplicated).
    headers = {
        "Content-Type": "application/x-sentry-envelope",
        "Content-Encoding": "gzip",
        "X-Sentry-Auth": f"Sentry sentry_key={key}, sentry_version=7",
    }
    per_thread = [
        [_envelope(_sentry_event(rng)) for _ in range(ENVELOPES_PER_SDK)]
        for _ in range(SDKS_PER_CLIENT)
    ]
    ready.wait()
    cpu = time.process_time()  # the bodies are built: from here on, sending only
    with ThreadPoolExecutor(SDKS_PER_CLIENT) as pool:
        futures = [
            pool.submit(_sender, port, "/api/1/envelope/", headers, bodies, 1)
            for bodies in per_thread
        ]
        outcomes = [f.result() for f in futures]
    results.put(
        (
            sum(o[0] for o in outcomes),
            sum(o[1] for o in outcomes),
            [x for o in outcomes for x in o[2]],
            min(o[3] for o in outcomes),
            max(o[4] for o in outcomes),
            time.process_time() - cpu,
        )
    )


def _api_cpu(api: subprocess.Popen[bytes]) -> float:
    """CPU seconds used so far by the API's processes (the uvicorn parent and its workers)."""
    total = 0.0
    root = psutil.Process(api.pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def _postgres_cpu() -> float:
    """CPU seconds used so far by the benchmark cluster's Postgres (postmaster and backends;
    a backend that ended in between is missed, which the API's pooled connections do not)."""
    total = 0.0
    data_dir = str(ROOT / ".data" / "bench-errors")
    for proc in psutil.process_iter(["cmdline"]):
        if data_dir not in " ".join(proc.info["cmdline"] or []):
            continue
        for p in [proc, *proc.children(recursive=True)]:
            try:
                times = p.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
    return total


class PeakRss:
    """Samples the RSS of the API's processes (the uvicorn parent and its workers) every 50 ms
    in a thread; `peak_mb` is the highest any one of them reached."""

    def __init__(self, pid: int) -> None:
        self._proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self._proc, *self._proc.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for proc in procs:
                try:
                    self.peak = max(self.peak, proc.memory_info().rss)
                except psutil.NoSuchProcess:
                    pass
            self._stop.wait(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


def http_rate(port: int, key: str, kind: str, api: subprocess.Popen[bytes]) -> dict[str, float]:
    cpu_before, pg_before = _api_cpu(api), _postgres_cpu()
    results: Any = mp.Queue()
    ready = mp.Barrier(CLIENTS)
    clients = [
        mp.Process(target=_client, args=(port, key, kind, n, results, ready))
        for n in range(CLIENTS)
    ]
    with PeakRss(api.pid) as rss:
        for c in clients:
            c.start()
        outcomes = [results.get(timeout=600) for _ in clients]
        for c in clients:
            c.join()
    # From the first client's first request to the last client's last reply (bodies are built
    # before that, so their cost is not counted against the server).
    window = max(o[4] for o in outcomes) - min(o[3] for o in outcomes)
    stored = sum(o[0] for o in outcomes)
    latencies = sorted(x for o in outcomes for x in o[2])
    return {
        "events_per_s": stored / window,
        # Robust to the shared machine's load: what one core of API work stores per second.
        "events_per_cpu_s": stored / max(_api_cpu(api) - cpu_before, 1e-9),
        "pg_us_per_event": (_postgres_cpu() - pg_before) / max(stored, 1) * 1e6,
        "client_us_per_request": sum(o[5] for o in outcomes) / max(len(latencies), 1) * 1e6,
        "requests": len(latencies),
        "failed": sum(o[1] for o in outcomes),
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p95_ms": latencies[int(len(latencies) * 0.95)] * 1000,
        "rss_mb": rss.peak_mb,
    }


def prepare_rate() -> float:
    """Own-API items: validate + scrub + fingerprint + classify, per second on one core."""
    rng = random.Random(1)
    items = [_item(rng) for _ in range(PREPARE_EVENTS)]
    now = datetime.now(UTC)
    scrubber = Scrubber()
    start = time.perf_counter()
    events = parse_error_items(items, now=now)
    for e in events:
        prepare(e, scrubber=scrubber, tz=TZ)
    return PREPARE_EVENTS / (time.perf_counter() - start)


def sentry_prepare_rate() -> tuple[float, float, list[Any]]:
    """The same kind of gzip envelopes as the senders post: (events/s decoded + parsed +
    mapped + scrubbed + grouped on one core, mean event bytes before gzip, the prepared
    events for the COPY baseline)."""
    rng = random.Random(2)
    events = [_sentry_event(rng) for _ in range(SENTRY_PREPARE_EVENTS)]
    bodies = [_envelope(e) for e in events]
    now = datetime.now(UTC)
    scrubber = Scrubber()
    start = time.perf_counter()
    prepared = []
    for body in bodies:
        envelope = parse_envelope(decompress(body, "gzip", max_bytes=5 * 2**20))
        for item in envelope.items:
            error = event_to_error(item.json(), project_id="1", now=now)
            prepared.append(prepare(error, scrubber=scrubber, tz=TZ))
    rate = len(bodies) / (time.perf_counter() - start)
    return rate, sum(len(orjson.dumps(e)) for e in events) / len(events), prepared


def copy_rate(url: str, prepared: list[Any]) -> float:
    """Raw binary COPY of these prepared rows (the database floor), events per second."""
    engine = make_engine(url)
    rows = (prepared * (COPY_EVENTS // len(prepared) + 1))[:COPY_EVENTS]
    for p in rows:
        p.group_id = 1
    start = time.perf_counter()
    with engine.begin() as conn:
        insert_events(conn, rows)
    rate = COPY_EVENTS / (time.perf_counter() - start)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE error_events"))
    engine.dispose()
    return rate


def _line(name: str, r: dict[str, float]) -> str:
    return (
        f"  {r['events_per_s']:>10,.0f} events/s {name} ({r['requests']} requests, "
        f"{r['failed']} failed, p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms); "
        f"{r['events_per_cpu_s']:,.0f} per CPU-second of the API processes, "
        f"Postgres CPU {r['pg_us_per_event']:,.0f} µs an event, the senders' "
        f"{r['client_us_per_request']:,.0f} µs a request; "
        f"largest API process peak RSS {r['rss_mb']:.0f} MB"
    )


def main() -> None:
    url = database_url(DB_NAME, cluster="bench-errors")
    engine = make_engine(url)
    migrate(engine, now=datetime.now(UTC), days_back=1)
    with engine.begin() as conn:
        key = create_api_key(
            conn, name="bench", scope=ApiScope.INGEST, rate_limit_per_minute=0, points_per_minute=0
        )  # a benchmark measures the server, not the per-key rate limits
    engine.dispose()
    senders = CLIENTS * SDKS_PER_CLIENT
    print(
        f"{WORKERS} uvicorn workers, {CLIENTS} client processes, {DURATION_S:.0f} s per route; "
        f"{os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.1f}"
    )
    prep = prepare_rate()
    print(f"  {prep:>10,.0f} events/s own API: validate + scrub + fingerprint + classify, one core")
    sentry_prep, event_bytes, prepared = sentry_prepare_rate()
    print(
        f"  {sentry_prep:>10,.0f} events/s Sentry envelopes ({event_bytes:,.0f} bytes of JSON "
        f"an event, {FRAMES} frames, {BUGS} groups): gunzip + parse + map + scrub + group, one core"
    )
    copy = copy_rate(url, prepared)
    print(f"  {copy:>10,.0f} events/s raw binary COPY of those prepared rows (the DB floor)")
    api, port = start_api(url, WORKERS)
    try:
        own = http_rate(port, key, "own", api)
        print(_line(f"POST /api/monitoring/errors, batches of {BATCH}", own))
        env = http_rate(port, key, "envelope", api)
        print(_line(f"POST /api/1/envelope/, gzip, one event each, {senders} senders", env))
    finally:
        api.terminate()
        api.wait(timeout=30)
    one = env
    if WORKERS > 1:  # the baseline: the same envelopes through one API process
        api, port = start_api(url, 1)
        try:
            one = http_rate(port, key, "envelope", api)
            print(
                _line(f"POST /api/1/envelope/ through 1 process (baseline), {senders} senders", one)
            )
        finally:
            api.terminate()
            api.wait(timeout=30)
        print(
            f"  envelopes: {WORKERS} processes {env['events_per_s'] / one['events_per_s']:.2f}x one"
        )
    print(
        f"  own API is {own['events_per_s'] / 5000:.1f}x the 5,000/s target; envelopes "
        f"{env['events_per_s'] / 1000:.2f}x the 1,000/s target (wall clock), "
        f"{env['events_per_s'] / copy:.1%} of raw COPY and "
        f"{env['events_per_s'] / sentry_prep:.0%} of the one-core pipeline without HTTP"
    )
    print(
        f"  per API CPU-second: own API {own['events_per_cpu_s'] / 5000 * WORKERS:.1f}x and "
        f"envelopes {env['events_per_cpu_s'] / 1000 * WORKERS:.1f}x their targets if the API's "
        f"{WORKERS} process(es) had a core each to themselves"
    )
    with psycopg.connect(
        make_url(url).set(drivername="postgresql", database="postgres").render_as_string(False),
        autocommit=True,
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    print(
        json.dumps(
            {
                "own_api_events_per_s": round(own["events_per_s"]),
                "envelope_events_per_s": round(env["events_per_s"]),
                "api_processes": WORKERS,
                "envelope_one_process_events_per_s": round(one["events_per_s"]),
                "prepare_events_per_s": round(prep),
                "sentry_prepare_events_per_s": round(sentry_prep),
                "copy_events_per_s": round(copy),
                "own_api_events_per_api_cpu_s": round(own["events_per_cpu_s"]),
                "envelope_events_per_api_cpu_s": round(env["events_per_cpu_s"]),
                "envelope_postgres_cpu_us_per_event": round(env["pg_us_per_event"]),
                "envelope_sender_cpu_us_per_request": round(env["client_us_per_request"]),
                "envelope_p95_ms": round(env["p95_ms"], 1),
                "event_bytes": round(event_bytes),
                "senders": senders,
                "api_peak_rss_mb": round(max(own["rss_mb"], env["rss_mb"], one["rss_mb"])),
                "own_api_target_ratio": round(own["events_per_s"] / 5000, 2),
                "envelope_target_ratio": round(env["events_per_s"] / 1000, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
