"""Pushgateway route throughput: text-format samples per second through the real API.

Starts the API (one uvicorn process) on the `bench_health` database; CLIENTS processes PUT a
prometheus_client-style body of SAMPLES samples (counters, gauges, a histogram) to
`/metrics/job/bench-<n>` for DURATION_S seconds. Baselines in the same run: the parser alone
in this process, and the same number of points as JSON through `POST /api/monitoring/metrics`.
Last line: JSON. Target: >= 50,000 samples/s.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import os
import time

import orjson
import psutil
from _bench_db import bench_database

from bench._api import start_api
from monitoring_core.accounts import create_api_key
from monitoring_core.enums import ApiScope
from monitoring_core.prometheus import parse_exposition

CLIENTS = 3
DURATION_S = 10.0
SERIES_PER_FAMILY = 100


def exposition_body() -> bytes:
    """~10,000 samples as prometheus_client writes them (HELP/TYPE lines, labels, histogram)."""
    lines = []
    for f in range(20):
        name = f"wedding_jobs_{f}_total"
        lines += [f"# HELP {name} Jobs of kind {f}.", f"# TYPE {name} counter"]
        lines += [f'{name}{{queue="q{i}",region="uk"}} {i * 3.0}' for i in range(SERIES_PER_FAMILY)]
    for f in range(20):
        name = f"wedding_queue_{f}_depth"
        lines += [f"# HELP {name} Depth.", f"# TYPE {name} gauge"]
        lines += [f'{name}{{queue="q{i}"}} {i}.5' for i in range(SERIES_PER_FAMILY)]
    lines += ["# HELP wedding_task_seconds Task time.", "# TYPE wedding_task_seconds histogram"]
    for i in range(SERIES_PER_FAMILY * 5):
        for le in ("0.1", "1.0", "+Inf"):
            lines.append(f'wedding_task_seconds_bucket{{task="t{i}",le="{le}"}} {i}.0')
        lines.append(f'wedding_task_seconds_sum{{task="t{i}"}} {i * 0.3}')
        lines.append(f'wedding_task_seconds_count{{task="t{i}"}} {i}.0')
    return ("\n".join(lines) + "\n").encode()


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _client(
    port: int, method: str, path: str, body: bytes, headers: dict, deadline: float, out: mp.Queue
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    accepted = failed = 0
    while time.monotonic() < deadline:
        conn.request(method, path, body=body, headers=headers)
        reply = conn.getresponse()
        payload = reply.read()
        if reply.status == 202:
            accepted += orjson.loads(payload)["accepted"]
        else:
            failed += 1
    out.put((accepted, failed))


def _drive(
    port: int, method: str, paths: list[str], body: bytes, headers: dict
) -> tuple[float, int]:
    out: mp.Queue = mp.Queue()
    start = time.monotonic()
    procs = [
        mp.Process(target=_client, args=(port, method, p, body, headers, start + DURATION_S, out))
        for p in paths
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    elapsed = time.monotonic() - start
    for p in procs:
        p.join()
    return sum(r[0] for r in results) / elapsed, sum(r[1] for r in results)


def main() -> None:
    url, engine = bench_database()
    with engine.begin() as conn:
        key = create_api_key(
            conn, name="bench", scope=ApiScope.INGEST, rate_limit_per_minute=0, points_per_minute=0
        )  # a benchmark measures the server, not the per-key rate limits
    body = exposition_body()
    start = time.perf_counter()
    samples = len(parse_exposition(body).samples)
    parse_rate = samples / (time.perf_counter() - start)
    json_body = orjson.dumps(
        [
            {
                "metric_name": f"bench_{i % 40}",
                "metric_value": i * 0.5,
                "dimensions": {"queue": f"q{i % 250}"},
            }
            for i in range(samples)
        ]
    )
    print(
        f"{os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.1f}; "
        f"{samples:,} samples per push"
    )
    print(f"  {parse_rate:>10,.0f} samples/s: the text parser alone (one process)")
    api, port = start_api(url)
    try:
        proc = psutil.Process(api.pid)
        auth = {"Authorization": f"Bearer {key}"}
        text_headers = {**auth, "Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        paths = [f"/metrics/job/bench-{c}/instance/host-{c}" for c in range(CLIENTS)]
        cpu = _cpu(proc)
        push_rate, push_failed = _drive(port, "PUT", paths, body, text_headers)
        push_cpu = (push_rate * DURATION_S) / max(_cpu(proc) - cpu, 1e-9)
        json_headers = {**auth, "Content-Type": "application/json"}
        cpu = _cpu(proc)
        json_rate, json_failed = _drive(
            port, "POST", ["/api/monitoring/metrics"] * CLIENTS, json_body, json_headers
        )
        json_cpu = (json_rate * DURATION_S) / max(_cpu(proc) - cpu, 1e-9)
    finally:
        api.terminate()
        api.wait(timeout=30)
    print(
        f"  {push_rate:>10,.0f} samples/s: Pushgateway PUT, {CLIENTS} clients ({push_failed} failed; target >= 50,000)"
    )
    print(
        f"  {json_rate:>10,.0f} points/s: the same count as JSON to /api/monitoring/metrics ({json_failed} failed)"
    )
    print(
        f"  Pushgateway is {push_rate / json_rate:.2f}x JSON ingest and {push_rate / parse_rate:.0%} of the bare parser"
    )
    print(
        f"  per CPU-second of the API process (robust to the load): {push_cpu:,.0f} samples "
        f"pushed vs {json_cpu:,.0f} points as JSON"
    )
    engine.dispose()
    print(
        json.dumps(
            {
                "push_samples_per_s": round(push_rate),
                "push_samples_per_api_cpu_s": round(push_cpu),
                "json_points_per_api_cpu_s": round(json_cpu),
                "json_points_per_s": round(json_rate),
                "parser_samples_per_s": round(parse_rate),
                "samples_per_push": samples,
            }
        )
    )


if __name__ == "__main__":
    main()
