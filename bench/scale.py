"""Past one machine: alert rules split across two workers, worker failover, API processes.

Part 1 — rules across workers. Database `bench_scale` on the embedded Postgres under
.data/bench gets bench/alerts.py's data set (40 metrics x 25 series, a point every 10 s for
2 hours, rolled up) and RULES enabled rules (threshold grouped/filtered, rate of change,
absence). Baseline, same run: one worker evaluates all of them (`run_evaluation` with its
worker id, alone in `worker_heartbeats`). Then two worker processes, both live, run the same
cycles side by side; for each cycle: the wall time (first start to last end), the rules each
evaluated, and whether any rule was evaluated twice (their sum against the rule count, and the
claims in `shard_claims`).

Part 2 — failover. Two real workers (`python -m jobs.worker --only alerts`,
MONITORING_EVAL_INTERVAL_S=5) on the same database; once both have claimed rules, one is
killed with SIGKILL; the time until every rule has been claimed again in a cycle that started
after the kill is measured (target: within 30 s).

Part 3 — API processes: ingest through 1 and through 2 uvicorn processes (bench/ingest.py's
clients and batches), per-key limits on.

Peak RSS of the worker processes is reported. `--rules-only` runs part 1 alone. Last line: JSON.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from sqlalchemy import Engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._bench_db import database_url  # noqa: E402
from bench.alerts import build, tick  # noqa: E402
from monitoring_core.alerts.store import create_rule  # noqa: E402
from monitoring_core.db import make_engine  # noqa: E402
from monitoring_core.flows.alert_cycle import run_evaluation  # noqa: E402
from monitoring_core.migrate import migrate  # noqa: E402

DB_NAME = "bench_scale"
RULES = 10_000
METRICS, KEYS = 40, 25
CYCLES = 3  # timed cycles per part (median; each is printed)
INTERVAL_S = 15.0
TZ_NAME = "Europe/London"


def make_rules(engine: Engine, now: datetime, count: int) -> None:
    rng = np.random.default_rng(11)
    with engine.begin() as conn:
        for i in range(count):
            m = int(rng.integers(METRICS))
            if i % 10 < 7:
                cfg: dict[str, Any] = {"type": "threshold", "metric": f"m{m}",
                                       "aggregation": ["avg", "max", "p95"][i % 3],
                                       "operator": "greater_than", "value": float(rng.uniform(400, 1500)),
                                       "duration_minutes": 2, "window_minutes": 5}  # fmt: skip
                cfg.update({"group_by": ["k"]} if i % 2 else {"filters": {"k": f"k{i % KEYS}"}})
            elif i % 10 < 9:
                cfg = {"type": "rate_of_change", "metric": f"m{m}", "aggregation": "avg",
                       "operator": "greater_than", "value": 50, "window_minutes": 10}  # fmt: skip
            else:
                cfg = {"type": "absence", "metric": f"m{m}", "window_minutes": 15}
            create_rule(conn, body={"alert_name": f"rule {i}", "severity_level": "medium",
                                    "condition_config": cfg}, created_by="bench", now=now)  # fmt: skip


def beat(engine: Engine, worker: str, at: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO worker_heartbeats (worker_id, hostname, pid, started_at, last_seen,"
                " status) VALUES (:w, 'bench', 0, :at, :at, '{}'::jsonb) ON CONFLICT (worker_id)"
                " DO UPDATE SET last_seen = :at, status = '{}'::jsonb"
            ),
            {"w": worker, "at": at},
        )


def _one_worker(url: str, worker: str, moments: list[datetime], go: Any, out: Any) -> None:
    """A worker process: evaluate its share at each moment, after the others are ready."""
    from zoneinfo import ZoneInfo

    engine = make_engine(url)
    tz = ZoneInfo(TZ_NAME)
    for at in moments:
        go.wait()
        started, cpu = time.perf_counter(), time.process_time()
        report = run_evaluation(engine, at, tz=tz, public_url="http://localhost:8501",
                                worker_id=worker, interval_s=INTERVAL_S)  # fmt: skip
        ended, cpu = time.perf_counter(), time.process_time() - cpu
        out.put((worker, at.isoformat(), started, ended, report.rules, len(report.invalid),
                 psutil.Process().memory_info().rss, cpu))  # fmt: skip
    engine.dispose()


def run_workers(
    url: str,
    workers: list[str],
    moments: list[datetime],
    *,
    before: Callable[[datetime], None] | None = None,
    untimed: int = 0,
) -> list[dict[str, Any]]:
    """Each worker process evaluates its share at every moment, side by side; `before(at)`
    runs here between cycles (a new point per series); the first `untimed` moments are left
    out of the figures (processes live on from cycle to cycle, as a worker does, so what a
    worker keeps between cycles counts as it does live)."""
    ctx = mp.get_context("spawn")
    go, out = ctx.Barrier(len(workers) + 1), ctx.Queue()
    procs = [ctx.Process(target=_one_worker, args=(url, w, moments, go, out)) for w in workers]
    for p in procs:
        p.start()
    rows = []
    for at in moments:
        if before is not None:
            before(at)
        go.wait()  # release the workers for this moment
        rows += [out.get(timeout=600) for _ in workers]
    for p in procs:
        p.join(60)
    cycles = []
    for i, at in enumerate(moments):
        mine = [r for r in rows if r[1] == at.isoformat()]
        cycles.append({
            "timed": i >= untimed,
            "at": at.isoformat(),
            "wall_s": max(r[3] for r in mine) - min(r[2] for r in mine),
            "each_s": {r[0]: round(r[3] - r[2], 3) for r in mine},
            "rules": {r[0]: r[4] + r[5] for r in mine},
            "peak_rss_mb": max(r[6] for r in mine) / 2**20,
            "cpu_s": {r[0]: round(r[7], 3) for r in mine},
        })  # fmt: skip
    return cycles  # the untimed ones too, marked (printed apart, not in the medians)


def part_one(url: str, engine: Engine, now: datetime) -> dict[str, Any]:
    rng = np.random.default_rng(5)
    enabled = int(engine.connect().execute(text("SELECT count(*) FROM alert_rules")).scalar_one())
    # Cycles 2 minutes on (pending keys fire), each after a new point per series, as live.
    moments = [now + timedelta(minutes=2, seconds=INTERVAL_S * i) for i in range(1, CYCLES + 2)]

    def fresh(workers: list[str], first: datetime) -> None:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM worker_heartbeats"))
            conn.execute(text("DELETE FROM shard_claims"))
        for w in workers:
            beat(engine, w, first)

    def new_point(at: datetime) -> None:
        if at > now:  # not before the first cycle, which creates the instances
            tick(engine, at - timedelta(seconds=5), rng)

    fresh(["solo"], now)
    solo_moments = moments[:CYCLES]
    # first cycle creates the instances (not timed)
    solo = run_workers(url, ["solo"], [now, *solo_moments], before=new_point, untimed=1)[1:]
    for c in solo:
        print(f"  1 worker:  {c['wall_s'] * 1000:.0f} ms, {c['rules']} rules, CPU s {c['cpu_s']}")
    # Two workers, the next cycles of the same clock (claims need a new cycle number each
    # time), a new point per series before each as live (a gap in the data would send every
    # threshold rule to no data and back: not a steady cycle).
    first = solo_moments[-1] + timedelta(seconds=INTERVAL_S)
    pair_moments = [first + timedelta(seconds=INTERVAL_S * i) for i in range(1, CYCLES + 1)]
    fresh(["w1", "w2"], first)
    for at in pair_moments:
        beat(engine, "w1", at)
        beat(engine, "w2", at)

    # A first cycle where every rule is an orphan (nobody claimed the previous cycle): each
    # worker claims its own share first, and the orphans only after (none are left then). It is
    # the processes' first cycle too (rules parsed, caches cold): printed apart, not in medians.
    cold, *pair = run_workers(url, ["w1", "w2"], [first, *pair_moments], before=new_point,
                              untimed=1)  # fmt: skip
    print(f"  2 workers, first cycle (cold processes, nothing claimed before): "
          f"{cold['wall_s'] * 1000:.0f} ms wall, rules {cold['rules']}, CPU s {cold['cpu_s']}")  # fmt: skip
    twice = max(sum(cold["rules"].values()) - enabled, 0)
    for c in pair:
        total = sum(c["rules"].values())
        twice += max(total - enabled, 0)
        print(f"  2 workers: {c['wall_s'] * 1000:.0f} ms wall, each {c['each_s']} s, rules {c['rules']} "
              f"(sum {total} of {enabled}), CPU s {c['cpu_s']}")  # fmt: skip
    solo_ms = statistics.median(c["wall_s"] for c in solo) * 1000
    pair_ms = statistics.median(c["wall_s"] for c in pair) * 1000
    pair_cpu = statistics.median(max(c["cpu_s"].values()) for c in pair) * 1000
    print(f"{enabled:,} rules: 1 worker {solo_ms:.0f} ms/cycle, 2 workers {pair_ms:.0f} ms/cycle "
          f"({solo_ms / pair_ms:.2f}x), the busier worker's CPU {pair_cpu:.0f} ms; "
          f"evaluated twice: {twice}")  # fmt: skip
    return {"rules": enabled, "one_worker_cycle_ms": solo_ms, "two_workers_cycle_ms": pair_ms,
            "speedup": solo_ms / pair_ms, "evaluated_twice": twice,
            "two_workers_cpu_ms": pair_cpu, "two_workers_first_cycle_ms": cold["wall_s"] * 1000,
            "two_workers_first_cycle_rules": cold["rules"],
            "worker_peak_rss_mb": max(c["peak_rss_mb"] for c in solo + pair)}  # fmt: skip


def part_two(url: str, engine: Engine) -> dict[str, Any]:
    """Two real workers; SIGKILL one; time until every rule is claimed again after the kill."""
    env = {**os.environ, "DATABASE_URL": url, "MONITORING_EVAL_INTERVAL_S": "5", "DEMO": "0",
           "MONITORING_TZ": TZ_NAME}  # fmt: skip
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM worker_heartbeats"))
        conn.execute(text("DELETE FROM shard_claims"))
        conn.execute(text("UPDATE alert_rules SET is_enabled = id % 10 = 0"))  # 1,000 rules
        enabled = int(
            conn.execute(text("SELECT count(*) FROM alert_rules WHERE is_enabled")).scalar_one()
        )
    cmd = [sys.executable, "-m", "jobs.worker", "--only", "alerts"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(2)]  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # both live and each owning rules
            with engine.connect() as conn:
                owners = conn.execute(text(
                    "SELECT count(DISTINCT worker_id) FROM shard_claims WHERE kind = 'alert_rules'"
                    " AND claimed_at > now() - interval '10 seconds'")).scalar_one()  # fmt: skip
            if owners >= 2:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError("the two workers never both claimed rules")
        victim = procs[0]
        victim.send_signal(signal.SIGKILL)
        killed = time.time()
        killed_at = datetime.now(UTC)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                stale = conn.execute(text(
                    "SELECT count(*) FROM alert_rules r LEFT JOIN shard_claims c ON c.kind ="
                    " 'alert_rules' AND c.item_id = r.id WHERE r.is_enabled AND"
                    " (c.claimed_at IS NULL OR c.claimed_at <= :k)"), {"k": killed_at}).scalar_one()  # fmt: skip
            if stale == 0:
                break
            time.sleep(0.25)
        took = time.time() - killed
        print(f"failover: {enabled:,} rules, every one evaluated again {took:.1f} s after SIGKILL "
              f"of one of two workers (eval interval 5 s, lease 15 s)")  # fmt: skip
        return {"failover_s": took, "failover_rules": enabled}
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(15)


def part_three(url: str, engine: Engine) -> dict[str, Any]:
    """Ingest through 1 and 2 API processes (bench/ingest.py's clients), limits on and shared:
    the key's rates are set high enough not to refuse, so the limiter and its sync run."""
    from bench import ingest
    from monitoring_core.accounts import create_api_key
    from monitoring_core.enums import ApiScope

    with engine.begin() as conn:
        key = create_api_key(conn, name="bench-scale", scope=ApiScope.INGEST,
                             rate_limit_per_minute=1_000_000, points_per_minute=1_000_000_000)  # fmt: skip
    rates = {}
    for processes in (1, 2):
        ingest.WORKERS = processes
        result = ingest.http_rate(url, key)
        rates[processes] = result
        print(f"ingest, {processes} API process(es): {result['points_per_s']:,.0f} points/s, "
              f"p95 {result['p95_ms']:.0f} ms, API RSS {result['rss_mb']:.0f} MB "
              f"(largest process {result['worker_rss_mb']:.0f} MB), failed {result['failed']}")  # fmt: skip
    ratio = rates[2]["points_per_s"] / rates[1]["points_per_s"]
    print(f"2 processes / 1 process: {ratio:.2f}x")
    return {"ingest_1_process_points_s": rates[1]["points_per_s"],
            "ingest_2_processes_points_s": rates[2]["points_per_s"], "ingest_ratio": ratio,
            "api_rss_mb_2_processes": rates[2]["rss_mb"]}  # fmt: skip


def main() -> None:
    url = database_url(DB_NAME)
    engine = make_engine(url)
    migrate(engine, now=datetime.now(UTC), days_back=30)
    now = datetime.now(UTC).replace(microsecond=0)
    built = build(engine, now)
    print(f"built {built['points']:,.0f} points in {built['load_s']:.1f} s")
    make_rules(engine, now, RULES)
    result: dict[str, Any] = {"bench": "scale"}
    result |= part_one(url, engine, now)
    if "--rules-only" not in sys.argv:  # part 1 alone: the cycle timing, before/after a change
        result |= part_two(url, engine)
        result |= part_three(url, engine)
    engine.dispose()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
