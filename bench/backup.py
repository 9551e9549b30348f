"""Backup and restore of the queries benchmark's database (#17: report the times; restore must
not need more than the dump's size in free memory).

Uses `bench_queries` (built by bench/queries.py; built here the same way when missing or stale:
~10 M metric points, ~5 M API timings, ~0.5 M Web Vitals and their rollups), then:
- baseline: binary `COPY … TO STDOUT` of every table's rows into nothing, the least work any
  dump does;
- `monitoring_core.backup.backup` (pg_dump, custom format) to a file: time, size, the largest
  child RSS;
- `monitoring_core.backup.restore` (pg_restore, one transaction) into a fresh database: time,
  the largest child RSS; row counts compared table by table.
Last line: JSON.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import queries  # noqa: E402
from bench._bench_db import database_url  # noqa: E402
from monitoring_core.backup import backup, restore, table_counts  # noqa: E402
from monitoring_core.db import make_engine  # noqa: E402
from monitoring_core.rollups import run_rollups  # noqa: E402

RESTORED = "bench_restored"


def _children_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _copy_out_s(url: str, tables: list[str]) -> tuple[float, int]:
    """Seconds and bytes of binary COPY of every table to nowhere (the baseline)."""
    libpq = url.replace("postgresql+psycopg://", "postgresql://", 1)
    started, size = time.perf_counter(), 0
    with psycopg.connect(libpq) as conn, conn.cursor() as cur:
        for table in tables:
            with cur.copy(f'COPY "{table}" TO STDOUT (FORMAT binary)') as copy:
                for block in copy:
                    size += len(block)
    return time.perf_counter() - started, size


def main() -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    engine = queries._reusable(now)
    if engine is None:
        engine = queries._database(now)
        queries.build(engine, now)
        run_rollups(engine, datetime.now(UTC), safety_lag=timedelta(0))
    url = engine.url.render_as_string(hide_password=False)
    with engine.connect() as conn:
        counts = table_counts(conn)
        db_bytes = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
        leaves = list(
            conn.execute(
                text(
                    "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace"
                    " AND c.relkind = 'r'"
                )
            ).scalars()
        )
    rows = sum(counts.values())
    print(f"database bench_queries: {db_bytes / 2**20:,.0f} MB, {rows:,} rows in "
          f"{len(counts)} tables; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    copy_s, copy_bytes = _copy_out_s(url, leaves)
    print(
        f"baseline: binary COPY of every row to nowhere {copy_s:.1f} s ({copy_bytes / 2**20:,.0f} MB)"
    )
    with tempfile.TemporaryDirectory(dir=ROOT / ".data") as folder:
        dump = Path(folder) / "bench.dump"
        done = backup(url, dump)
        dump_peak = _children_peak_mb()
        print(f"backup: {done.seconds:.1f} s -> {done.bytes / 2**20:,.0f} MB file; "
              f"pg_dump peak RSS {dump_peak:.0f} MB")  # fmt: skip
        target = database_url(RESTORED)
        restore_s = restore(target, dump)
        restore_peak = _children_peak_mb()  # the larger of pg_dump's and pg_restore's
        restored = make_engine(target)
        with restored.connect() as conn:
            again = table_counts(conn)
        restored.dispose()
        print(f"restore: {restore_s:.1f} s; largest child RSS so far {restore_peak:.0f} MB "
              f"(dump file {done.bytes / 2**20:,.0f} MB)")  # fmt: skip
    same = again == counts
    print(f"row counts after restore: {'identical' if same else 'DIFFERENT'} ({rows:,} rows)")
    engine.dispose()
    print(json.dumps({
        "database_mb": round(db_bytes / 2**20), "rows": rows,
        "copy_out_s": round(copy_s, 1), "backup_s": round(done.seconds, 1),
        "dump_mb": round(done.bytes / 2**20), "pg_dump_peak_rss_mb": round(dump_peak),
        "restore_s": round(restore_s, 1), "children_peak_rss_mb": round(restore_peak),
        "counts_identical": same,
        "restore_memory_within_dump_size": restore_peak <= done.bytes / 2**20,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
