"""Health check rounds: 500 HTTP checks against a local server, bounded concurrency.

A separate process serves the checked endpoints (ThreadingHTTPServer; /ok answers at once,
/slow after 1.5 s). Measured in the same run: a sequential round of 50 checks (the baseline,
one at a time), then ROUNDS rounds of CHECKS checks with CONCURRENCY probes at a time, five of
them slow; and the worker's own CPU time per check, scaled to 100 checks/minute. Last line:
JSON. Target: a round in < 10 s; CPU < 25 % of one core at 100 checks/minute.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from _bench_db import bench_database
from sqlalchemy import Engine, insert, text

from monitoring_core.health.runner import run_due_checks
from monitoring_core.schema import health_checks

CHECKS = 500
SLOW = 5
ROUNDS = 3
CONCURRENCY = 32
BASELINE_CHECKS = 50


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(1.5)
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve(sock: socket.socket) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.request_queue_size = 512
    server.daemon_threads = True
    server.serve_forever()


def _add_checks(engine: Engine, base: str, count: int, slow: int, prefix: str) -> None:
    rows = [
        {
            "check_name": f"{prefix} {i}",
            "check_type": "http",
            "check_config": {"url": f"{base}/{'slow' if i < slow else 'ok'}/{i}", "keyword": "ok"},
            "check_frequency_seconds": 60,
            "timeout_seconds": 5,
        }
        for i in range(count)
    ]
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE health_checks RESTART IDENTITY CASCADE"))
        conn.execute(insert(health_checks), rows)


def _round(engine: Engine, now: datetime, workers: int) -> tuple[float, float, int, int]:
    wall, cpu = time.perf_counter(), time.process_time()
    report = run_due_checks(engine, now, max_workers=workers)
    return time.perf_counter() - wall, time.process_time() - cpu, report.checked, report.failed


def main() -> None:
    _, engine = bench_database()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = mp.Process(target=_serve, args=(sock,), daemon=True)
    server.start()
    print(f"{os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.1f}")
    now = datetime.now(UTC)
    _add_checks(engine, base, BASELINE_CHECKS, 0, "baseline")
    seq_wall, seq_cpu, _, _ = _round(engine, now, 1)
    per_check = seq_wall / BASELINE_CHECKS
    print(
        f"baseline: {BASELINE_CHECKS} checks one at a time in {seq_wall:.2f} s ({per_check * 1000:.1f} ms each)"
    )
    _add_checks(engine, base, CHECKS, SLOW, "check")
    rounds = []
    for r in range(ROUNDS):
        wall, cpu, checked, failed = _round(engine, now + timedelta(minutes=r + 1), CONCURRENCY)
        rounds.append((wall, cpu))
        print(
            f"round {r + 1}: {checked} checks ({SLOW} slow, {failed} failed) in {wall:.2f} s, worker CPU {cpu:.2f} s"
        )
    best = min(w for w, _ in rounds)
    cpu_per_check = sum(c for _, c in rounds) / (ROUNDS * CHECKS)
    cpu_share = cpu_per_check * 100 / 60  # 100 checks per minute, as a share of one core
    sequential_estimate = per_check * CHECKS + SLOW * 1.5
    print(
        f"best round {best:.2f} s (target < 10 s); one at a time it would take ~{sequential_estimate:.0f} s: {sequential_estimate / best:.1f}x faster"
    )
    print(
        f"worker CPU {cpu_per_check * 1000:.2f} ms per check -> {cpu_share:.1%} of one core at 100 checks/minute (target < 25 %)"
    )
    server.terminate()
    engine.dispose()
    print(
        json.dumps(
            {
                "checks": CHECKS,
                "round_s": round(best, 2),
                "sequential_estimate_s": round(sequential_estimate, 1),
                "speedup": round(sequential_estimate / best, 1),
                "cpu_ms_per_check": round(cpu_per_check * 1000, 2),
                "cpu_share_at_100_per_min": round(cpu_share, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
