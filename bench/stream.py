"""Live stream: an alert state change reaches 100 connected SSE clients how fast, and does the
API's memory stay flat while they listen.

Builds database `bench_stream` (.data/bench), starts the API as `--workers 2` uvicorn
processes (clients spread over both: each process polls the tables on its own), connects
CLIENTS `GET /api/monitoring/live/stream` clients (httpx, one thread each), then commits EVENTS
alert state changes (`alert_events` rows, what an evaluation cycle writes) one every
`--gap` seconds. Latency is commit → arrival at each client. RSS of the API processes is
sampled at the start and at the end of the streaming window. Last line: JSON.

    .venv/bin/python -m bench.stream [--clients 100] [--events 30] [--gap 1.0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from datetime import UTC, datetime

import httpx
import psutil
from sqlalchemy import insert

from bench._api import start_api
from bench._bench_db import database_url
from monitoring_core.accounts import create_api_key
from monitoring_core.db import make_engine
from monitoring_core.enums import ApiScope
from monitoring_core.migrate import migrate
from monitoring_core.schema import alert_events


def _listen(base: str, key: str, arrivals: dict[int, float], ready: threading.Event) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, timeout=httpx.Timeout(30, read=None)) as client:
        with client.stream("GET", "/api/monitoring/live/stream", headers=headers) as response:
            for line in response.iter_lines():
                if line.startswith("id:") and not ready.is_set():
                    ready.set()
                elif line.startswith("data:") and '"rule_id":' in line:
                    rule = json.loads(line[5:])["rule_id"]
                    arrivals[rule] = time.monotonic()
                    if rule < 0:
                        return


def _rss_mb(proc: psutil.Process) -> float:
    family = [proc, *proc.children(recursive=True)]
    return sum(p.memory_info().rss for p in family if p.is_running()) / 2**20


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--clients", type=int, default=100)
    args.add_argument("--events", type=int, default=30)
    args.add_argument("--gap", type=float, default=1.0)
    opts = args.parse_args()
    url = database_url("bench_stream")
    engine = make_engine(url)
    migrate(engine, now=datetime.now(UTC))
    with engine.begin() as conn:
        key = create_api_key(conn, name="bench-stream", scope=ApiScope.READ)
    api, port = start_api(url, workers=2)
    base = f"http://127.0.0.1:{port}"
    arrivals: list[dict[int, float]] = [{} for _ in range(opts.clients)]
    readies = [threading.Event() for _ in range(opts.clients)]
    threads = [
        threading.Thread(target=_listen, args=(base, key, arrivals[i], readies[i]), daemon=True)
        for i in range(opts.clients)
    ]
    try:
        for thread in threads:
            thread.start()
        for ready in readies:
            ready.wait(60)
        time.sleep(2)  # every process's poller running
        rss_start = _rss_mb(psutil.Process(api.pid))
        sent: dict[int, float] = {}
        for rule in [*range(1, opts.events + 1), -1]:  # -1: the end marker
            with engine.begin() as conn:
                conn.execute(
                    insert(alert_events).values(
                        rule_id=rule, time=datetime.now(UTC), from_status="ok", to_status="firing"
                    )
                )
            sent[rule] = time.monotonic()
            time.sleep(opts.gap)
        for thread in threads:
            thread.join(30)
        rss_end = _rss_mb(psutil.Process(api.pid))
    finally:
        api.terminate()
        api.wait(10)
        engine.dispose()
    latencies = sorted(
        got[rule] - sent[rule] for got in arrivals for rule in sent if rule > 0 and rule in got
    )
    expected = opts.clients * opts.events
    result = {
        "clients": opts.clients,
        "events": opts.events,
        "delivered": len(latencies),
        "expected": expected,
        "latency_p50_s": round(statistics.median(latencies), 3),
        "latency_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3),
        "latency_max_s": round(latencies[-1], 3),
        "api_rss_mb_start": round(rss_start, 1),
        "api_rss_mb_end": round(rss_end, 1),
        "streaming_s": round(opts.events * opts.gap, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
