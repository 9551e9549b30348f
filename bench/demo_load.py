"""Demo data: load 30 days (`monitoring_core demo-data`) and roll it up; the budget is 90 s.

Runs on a database of its own (`bench_demo` on the embedded `.data/bench` cluster), dropped
and recreated each run. Baseline measured in the same run: binary COPY of as many narrow rows
as there are API timings, i.e. what the performance loader would cost if generating the data
were free. Last line: {"days", "api_timings", "load_s", "rollup_s", "performance_loader_s",
"total_s", "budget_ratio", ...}; every domain's seconds are printed above it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import psycopg
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._bench_db import database_url  # noqa: E402
from monitoring_core.db import make_engine  # noqa: E402
from monitoring_core.demo import load_demo_data  # noqa: E402
from monitoring_core.migrate import migrate  # noqa: E402

NAME, DAYS, BUDGET_S = "bench_demo", 30, 90.0


def _copy_baseline(url: str, rows: int) -> float:
    """Seconds to binary-COPY `rows` rows of (time, text, float) into a temp table."""
    now = datetime.now(UTC)
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        conn.execute("CREATE TEMP TABLE t (time timestamptz, endpoint text, ms float8)")
        started = time.perf_counter()
        with conn.cursor().copy("COPY t FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["timestamptz", "text", "float8"])
            for i in range(rows):
                copy.write_row((now, "/api/suppliers/search", float(i)))
        return time.perf_counter() - started


def main() -> None:
    logging.disable(logging.INFO)
    url = database_url(NAME)
    engine = make_engine(url)
    now = datetime.now(UTC)
    migrate(engine, now=now)
    started = time.perf_counter()
    summary = load_demo_data(engine, days=DAYS, now=now, only_if_empty=False)
    total = time.perf_counter() - started
    print(summary)
    load_s, rollup_s = (float(x) for x in re.findall(r"in ([\d.]+) s", summary)[:2])
    domains = {name: float(x) for name, x in re.findall(r"(\w+) ([\d.]+) s[,;]", summary)}
    with engine.connect() as conn:
        timings = conn.execute(text("SELECT count(*) FROM api_timings")).scalar_one()
    engine.dispose()
    copy_s = _copy_baseline(url, timings)
    rss_mb = psutil.Process(os.getpid()).memory_info().rss / 2**20
    print(f"{DAYS} days: {timings:,} API timings; load {load_s:.1f} s + rollups {rollup_s:.1f} s")
    print(f"total {total:.1f} s = {total / BUDGET_S:.0%} of the {BUDGET_S:.0f} s budget")
    print("per domain: " + ", ".join(f"{name} {x:.1f} s" for name, x in domains.items()))
    perf_s = domains.get("performance", float("nan"))
    print(f"binary COPY of {timings:,} bare 3-column rows: {copy_s:.2f} s; the performance loader")
    print(f"(timings, vitals and gauges, generated and copied) took {perf_s / copy_s:.1f}x that")
    print(f"RSS {rss_mb:.0f} MB")
    result = {
        "days": DAYS,
        "api_timings": timings,
        "load_s": round(load_s, 2),
        "rollup_s": round(rollup_s, 2),
        "performance_loader_s": round(perf_s, 2),
        "total_s": round(total, 2),
        "budget_ratio": round(total / BUDGET_S, 3),
        "copy_baseline_s": round(copy_s, 2),
        "rss_mb": round(rss_mb, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
