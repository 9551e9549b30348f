"""Pushgateway pushes: this API's `PUT /metrics/job/…` beside the real Prometheus Pushgateway.

Two push sizes — SMALL_SAMPLES (a service's default registry and a few metrics) and
LARGE_SAMPLES (a batch job dumping everything) — each PUT by SENDERS concurrent senders (one
keep-alive connection each, one grouping key each: `job/bench-<n>/instance/host-<n>`) for
DURATION_S after one untimed push each (the warm-up, which creates the series), first to the API (one uvicorn process on the `bench_health` database), then to
`prometheus-pushgateway` (Debian's package, in memory: no persistence file) on the same bodies.
Samples/s counts the samples of pushes answered 2xx. Peak RSS of the API process and of the
Pushgateway is sampled throughout. Baseline: the text parser alone, in this process.
Skips the real Pushgateway with a message when it is not installed
(`apt-get install prometheus-pushgateway`). Last line: JSON.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._api import free_port, start_api  # noqa: E402
from bench._bench_db import bench_database  # noqa: E402
from monitoring_core.accounts import create_api_key  # noqa: E402
from monitoring_core.enums import ApiScope  # noqa: E402
from monitoring_core.prometheus import parse_exposition  # noqa: E402

PUSHGATEWAY = "/usr/bin/prometheus-pushgateway"
CLIENTS = 4  # processes
SENDERS_PER_CLIENT = 8  # threads, one connection each: 32 senders
DURATION_S = 10.0
SMALL_SAMPLES = 210
LARGE_SAMPLES = 10_000
RSS_LIMIT_MB = 300


def exposition_body(samples: int) -> bytes:
    """`samples` samples as prometheus_client writes them: counter and gauge families of up to
    100 series, and a histogram (3 buckets, sum, count). Each metric keeps to at most 150
    series per grouping key, so 32 senders stay under the 10,000-series cap of a metric."""
    lines: list[str] = []
    histogram_tasks = max(1, min(60, samples // 30))
    left = samples - histogram_tasks * 5
    family = 0
    while left > 0:
        n = min(100, left)
        if family % 2 == 0:
            name = f"bench_jobs_{family}_total"
            lines += [f"# HELP {name} Jobs of kind {family}.", f"# TYPE {name} counter"]
            lines += [f'{name}{{queue="q{i}",region="uk"}} {i * 3.0}' for i in range(n)]
        else:
            name = f"bench_queue_{family}_depth"
            lines += [f"# HELP {name} Depth.", f"# TYPE {name} gauge"]
            lines += [f'{name}{{queue="q{i}"}} {i}.5' for i in range(n)]
        left -= n
        family += 1
    lines += ["# HELP bench_task_seconds Task time.", "# TYPE bench_task_seconds histogram"]
    for i in range(histogram_tasks):
        for le in ("0.1", "1.0", "+Inf"):
            lines.append(f'bench_task_seconds_bucket{{task="t{i}",le="{le}"}} {i}.0')
        lines.append(f'bench_task_seconds_sum{{task="t{i}"}} {i * 0.3}')
        lines.append(f'bench_task_seconds_count{{task="t{i}"}} {i}.0')
    return ("\n".join(lines) + "\n").encode()


class PeakRss:
    """The highest RSS of a process, sampled every 50 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self._proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self._proc.memory_info().rss)
            except psutil.NoSuchProcess:
                return
            self._stop.wait(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _sender(
    port: int, path: str, body: bytes, headers: dict[str, str], deadline: float
) -> tuple[int, int, list[float]]:
    """PUT `body` over one keep-alive connection until the deadline: (ok, failed, latencies)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    ok = failed = 0
    latencies: list[float] = []
    while time.monotonic() < deadline:
        start = time.perf_counter()
        conn.request("PUT", path, body=body, headers=headers)
        reply = conn.getresponse()
        reply.read()
        latencies.append(time.perf_counter() - start)
        if 200 <= reply.status < 300:
            ok += 1
        else:
            failed += 1
            retry = reply.getheader("Retry-After")
            if retry:  # what a polite client does with 429/503
                time.sleep(min(float(retry), 1.0))
    return ok, failed, latencies


def _client(
    port: int, first: int, body: bytes, headers: dict[str, str], deadline: float, out: Any
) -> None:
    paths = [
        f"/metrics/job/bench-{n}/instance/host-{n}"
        for n in range(first, first + SENDERS_PER_CLIENT)
    ]
    with ThreadPoolExecutor(len(paths)) as pool:
        results = list(pool.map(lambda p: _sender(port, p, body, headers, deadline), paths))
    out.put(
        (sum(r[0] for r in results), sum(r[1] for r in results), [x for r in results for x in r[2]])
    )


def _push_once(port: int, path: str, body: bytes, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request("PUT", path, body=body, headers=headers)
    reply = conn.getresponse()
    reply.read()
    conn.close()
    return reply.status


def warm_up(port: int, body: bytes, headers: dict[str, str]) -> tuple[float, int]:
    """Every sender's first push, all at once, not counted in the rate: for this API it
    creates the group's series (a job then pushes the same series again and again).
    (seconds, pushes not answered 2xx)."""
    start = time.monotonic()
    paths = [
        f"/metrics/job/bench-{n}/instance/host-{n}" for n in range(CLIENTS * SENDERS_PER_CLIENT)
    ]
    with ThreadPoolExecutor(len(paths)) as pool:
        statuses = list(pool.map(lambda p: _push_once(port, p, body, headers), paths))
    return time.monotonic() - start, sum(1 for s in statuses if not 200 <= s < 300)


def drive(
    port: int, body: bytes, samples: int, headers: dict[str, str], pid: int
) -> dict[str, Any]:
    """SENDERS concurrent senders for DURATION_S after a warm-up round: samples/s, failures,
    p95, peak RSS (warm-up included)."""
    with PeakRss(pid) as warm_rss:
        warm_s, warm_failed = warm_up(port, body, headers)
    out: Any = mp.Queue()
    start = time.monotonic()
    deadline = start + DURATION_S
    procs = [
        mp.Process(
            target=_client, args=(port, c * SENDERS_PER_CLIENT, body, headers, deadline, out)
        )
        for c in range(CLIENTS)
    ]
    with PeakRss(pid) as rss:
        for p in procs:
            p.start()
        results = [out.get(timeout=300) for _ in procs]
        elapsed = time.monotonic() - start
        for p in procs:
            p.join()
    latencies = sorted(x for r in results for x in r[2])
    return {
        "samples_per_s": sum(r[0] for r in results) * samples / elapsed,
        "pushes": sum(r[0] for r in results),
        "failed": sum(r[1] for r in results),
        "p95_ms": latencies[int(len(latencies) * 0.95)] * 1000 if latencies else 0.0,
        "rss_mb": max(rss.peak, warm_rss.peak) / 2**20,
        "warm_up_s": warm_s,
        "warm_up_refused": warm_failed,
    }


def start_pushgateway() -> tuple[subprocess.Popen[bytes], int] | None:
    if not shutil.which(PUSHGATEWAY):
        return None
    port = free_port()
    proc = subprocess.Popen(
        [
            PUSHGATEWAY,
            f"--web.listen-address=127.0.0.1:{port}",
            "--persistence.file=",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/-/ready")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("prometheus-pushgateway did not get ready within 30 s")


def _line(who: str, r: dict[str, Any]) -> str:
    return (
        f"    {who:<18} {r['samples_per_s']:>10,.0f} samples/s ({r['pushes']:,} pushes, "
        f"{r['failed']} refused, p95 {r['p95_ms']:,.0f} ms, peak RSS {r['rss_mb']:,.0f} MB; "
        f"first push of every sender: {r['warm_up_s']:.1f} s, {r['warm_up_refused']} refused)"
    )


def main() -> None:
    senders = CLIENTS * SENDERS_PER_CLIENT
    print(
        f"{os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.1f}; {senders} "
        f"senders, {DURATION_S:.0f} s per run"
    )
    bodies = {size: exposition_body(size) for size in (SMALL_SAMPLES, LARGE_SAMPLES)}
    for size, body in bodies.items():
        start = time.perf_counter()
        parsed = len(parse_exposition(body).samples)
        assert parsed == size, (size, parsed)
        rate = size / (time.perf_counter() - start)
        print(f"  {rate:>10,.0f} samples/s: the text parser alone on a {size:,}-sample push")
    text = {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    ours: dict[int, dict[str, Any]] = {}
    theirs: dict[int, dict[str, Any]] = {}
    url, engine = bench_database()
    with engine.begin() as conn:
        key = create_api_key(
            conn, name="bench", scope=ApiScope.INGEST, rate_limit_per_minute=0, points_per_minute=0
        )
    engine.dispose()
    api, port = start_api(url)
    try:
        for size, body in bodies.items():
            headers = {**text, "Authorization": f"Bearer {key}"}
            ours[size] = drive(port, body, size, headers, api.pid)
    finally:
        api.terminate()
        api.wait(timeout=30)
    real = start_pushgateway()
    if real is None:
        print(f"  {PUSHGATEWAY} not installed: apt-get install prometheus-pushgateway")
    else:
        gateway, gport = real
        try:
            for size, body in bodies.items():
                theirs[size] = drive(gport, body, size, text, gateway.pid)
        finally:
            gateway.terminate()
            gateway.wait(timeout=30)
    summary: dict[str, Any] = {"senders": senders}
    for size in bodies:
        print(f"  {size:,} samples a push:")
        print(_line("this API", ours[size]))
        label = "small" if size == SMALL_SAMPLES else "large"
        summary[f"{label}_samples_per_push"] = size
        summary[f"{label}_api_samples_per_s"] = round(ours[size]["samples_per_s"])
        summary[f"{label}_api_refused"] = ours[size]["failed"]
        summary[f"{label}_api_p95_ms"] = round(ours[size]["p95_ms"])
        summary[f"{label}_api_first_pushes_s"] = round(ours[size]["warm_up_s"], 1)
        summary[f"{label}_api_first_pushes_refused"] = ours[size]["warm_up_refused"]
        if size in theirs:
            print(_line("prometheus-pushgw", theirs[size]))
            ratio = ours[size]["samples_per_s"] / max(theirs[size]["samples_per_s"], 1e-9)
            print(f"    ratio this API / Pushgateway: {ratio:.2f}x")
            summary[f"{label}_pushgateway_samples_per_s"] = round(theirs[size]["samples_per_s"])
            summary[f"{label}_ratio"] = round(ratio, 2)
            summary[f"{label}_pushgateway_peak_rss_mb"] = round(theirs[size]["rss_mb"])
    peak = max(r["rss_mb"] for r in ours.values())
    print(f"  API peak RSS over both runs: {peak:,.0f} MB (target < {RSS_LIMIT_MB} MB)")
    summary["api_peak_rss_mb"] = round(peak)
    summary["rss_under_limit"] = peak < RSS_LIMIT_MB
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
