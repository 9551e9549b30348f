"""Packed API timings (compaction.pack_api_timings, chunks/timings.py): every reader of raw API
timings gives the same answer over packs as over rows (differential, random data with ties and
optional columns), packing is idempotent, safe with two workers and crash-safe, late requests
merge, the size is what bench/storage.py claims, retention removes old packs."""

from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from monitoring_core.alerts import signals_read
from monitoring_core.chunks.timings import COLUMNS, source_sql
from monitoring_core.compaction import pack_api_timings, pack_before
from monitoring_core.performance.queries import endpoint_table, latency_trend
from monitoring_core.retention import prune_api_timing_packs, retention_days
from monitoring_core.rollups import run_rollups
from monitoring_core.timerange import TimeRange

HOURS = 40
_INSERT = text(
    "INSERT INTO api_timings (time, method, endpoint, status_code, response_time_ms, "
    "user_type, database_query_time_ms, external_api_time_ms, cache_hit, request_id, "
    "ingested_at) VALUES (:time, :method, :endpoint, :status, :ms, :ut, :db, :ex, :ch, :rid, "
    ":ingested)"
)


def _random_rows(rng: random.Random, now: datetime, n: int) -> list[dict[str, Any]]:
    start = now - timedelta(hours=HOURS)
    rows = []
    for _ in range(n):
        moment = start + timedelta(microseconds=rng.randrange(HOURS * 3_600_000_000))
        extras = rng.random() < 0.2
        row = {
            "time": moment,
            "method": rng.choice(["GET", "POST"]),
            "endpoint": rng.choice(["/api/a", "/api/b", "/api/ü/c"]),
            "status": rng.choice([200, 200, 200, 201, 404, 500, 503]),
            "ms": rng.choice([rng.lognormvariate(4, 1), float(rng.randint(1, 900)), 0.0]),
            "ut": rng.choice(["guest", "couple", None]) if extras else None,
            "db": rng.random() * 50 if extras and rng.random() < 0.5 else None,
            "ex": rng.random() * 90 if extras and rng.random() < 0.5 else None,
            "ch": rng.choice([True, False, None]) if extras else None,
            "rid": f"req-{rng.randrange(10**9)}" if extras and rng.random() < 0.5 else None,
            "ingested": moment + timedelta(seconds=1),
        }
        rows.append(row)
        if rng.random() < 0.03:  # the same request twice, and a tie on time
            rows.append(dict(row))
            rows.append({**row, "ms": row["ms"] + 1})
    return rows


def _everything(engine: Engine, lo: datetime, hi: datetime) -> list[tuple[Any, ...]]:
    cols = ", ".join(c for c in COLUMNS if c != "ingested_at")
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT {cols} FROM {source_sql(':lo', ':hi')} x"),  # noqa: S608
            {"lo": lo, "hi": hi},
        ).all()
    return sorted((tuple(r) for r in rows), key=repr)


def _signal_read(engine: Engine, ranges: list[tuple[datetime, datetime]]) -> list[Any]:
    """The alert engine's own statement for windowed API signals."""
    params = {
        "los": [lo for lo, _ in ranges],
        "his": [hi for _, hi in ranges],
        "earliest": min(lo for lo, _ in ranges),
        "latest": max(hi for _, hi in ranges),
    }
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cursor:
            rows = cursor.execute(signals_read._SQL["api"], params).fetchall()
    return sorted((m, e, s, sorted(zip(ts, vs, strict=True))) for m, e, s, ts, vs in rows)


def _load(engine: Engine, now: datetime, n: int, seed: int) -> int:
    rows = _random_rows(random.Random(seed), now, n)
    with engine.begin() as conn:
        conn.execute(_INSERT, rows)
    run_rollups(engine, now, safety_lag=timedelta(0))
    return len(rows)


def _rollups(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT bucket, method, endpoint, count, min, max, error_count, "
                    "client_error_count, hist_keys, hist_counts FROM api_rollup_1m "
                    "ORDER BY bucket, method, endpoint"
                )
            )
        ]


def test_packed_reads_equal_row_reads(engine: Engine, now: datetime) -> None:
    total = _load(engine, now, 3_000, seed=7)
    wide = (now - timedelta(hours=HOURS + 1), now + timedelta(hours=1))
    windows = [
        (now - timedelta(hours=h, minutes=m), now - timedelta(hours=h - 1, minutes=m))
        for h, m in ((39, 7), (30, 0), (25, 13), (24, 1), (2, 0))
    ]
    before = _everything(engine, *wide)
    signals_before = _signal_read(engine, windows)
    tr = TimeRange(now - timedelta(hours=HOURS), now)
    with engine.connect() as conn:
        table_before = endpoint_table(conn, tr)
        trend_before = latency_trend(conn, tr, "30m")
    rollups_before = _rollups(engine)

    report = pack_api_timings(engine, now)

    with engine.connect() as conn:
        rows_left, old_rows = conn.execute(
            text("SELECT count(*), count(*) FILTER (WHERE time < :cut) FROM api_timings"),
            {"cut": now - timedelta(days=1) - timedelta(minutes=30)},
        ).one()
        packed = conn.execute(text("SELECT coalesce(sum(count), 0) FROM api_timing_packs")).scalar()
    assert report.requests == packed > total // 3
    assert old_rows == 0 and rows_left + packed == total
    assert _everything(engine, *wide) == before  # every column, bit for bit, ties included
    assert _signal_read(engine, windows) == signals_before
    with engine.connect() as conn:
        assert endpoint_table(conn, tr).equals(table_before)
        assert latency_trend(conn, tr, "30m").equals(trend_before)
    assert _rollups(engine) == rollups_before

    # idempotent: a second pass finds nothing to pack and changes nothing
    again = pack_api_timings(engine, now)
    assert again.requests == 0 and _everything(engine, *wide) == before

    # the rollup recomputes its minutes from packs and rows: drop an old day's minutes and
    # recompute them by a late request landing there
    with engine.connect() as conn:
        late_at = conn.execute(
            text("SELECT max(time) FROM " + source_sql(":lo", ":hi") + " x WHERE method = 'GET' "  # noqa: S608
                 "AND endpoint = '/api/a'"),
            {"lo": wide[0], "hi": now - timedelta(hours=30)},
        ).scalar_one()  # fmt: skip
    minute = late_at.replace(second=0, microsecond=0)
    with engine.begin() as conn:
        old = conn.execute(
            text("SELECT coalesce(sum(count), 0) FROM api_rollup_1m WHERE bucket = :m AND "
                 "method = 'GET' AND endpoint = '/api/a'"),
            {"m": minute},
        ).scalar()  # fmt: skip
        conn.execute(
            _INSERT,
            {"time": late_at, "method": "GET", "endpoint": "/api/a", "status": 200, "ms": 12.5,
             "ut": None, "db": None, "ex": None, "ch": None, "rid": None,
             "ingested": now + timedelta(milliseconds=500)},
        )  # fmt: skip
    run_rollups(engine, now + timedelta(seconds=1), safety_lag=timedelta(0))
    with engine.connect() as conn:
        new = conn.execute(
            text("SELECT count FROM api_rollup_1m WHERE bucket = :m AND method = 'GET' AND "
                 "endpoint = '/api/a'"),
            {"m": minute},
        ).scalar()  # fmt: skip
    assert old > 0 and new == old + 1
    # the late row is packed on the next pass, as a second pack of its key
    assert pack_api_timings(engine, now + timedelta(seconds=1)).requests == 1
    assert len(_everything(engine, *wide)) == total + 1


def test_two_packers_and_a_crash_lose_and_double_nothing(engine: Engine, now: datetime) -> None:
    total = _load(engine, now, 2_000, seed=11)
    wide = (now - timedelta(hours=HOURS + 1), now + timedelta(hours=1))
    before = _everything(engine, *wide)

    # a crash after packing, before the commit: nothing changes
    with engine.connect() as conn, pytest.raises(RuntimeError):
        with conn.begin():
            requests, _ = pack_before(conn, now - timedelta(days=1), now)
            assert requests > 0
            raise RuntimeError("the worker dies here")
    assert _everything(engine, *wide) == before
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM api_timing_packs")).scalar() == 0

    reports: list[Any] = []
    threads = [
        threading.Thread(target=lambda: reports.append(pack_api_timings(engine, now)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(reports) == 2
    with engine.connect() as conn:
        packed = conn.execute(text("SELECT coalesce(sum(count), 0) FROM api_timing_packs")).scalar()
        rows = conn.execute(text("SELECT count(*) FROM api_timings")).scalar()
    assert sum(r.requests for r in reports) == packed and packed + rows == total
    assert _everything(engine, *wide) == before


def test_pack_size_and_retention(engine: Engine, now: datetime) -> None:
    """Bytes per packed request (heap, TOAST and index) well under the 24-byte target at 1,250
    requests an hour per key (15.3 measured); retention removes packs with their day."""
    rng = random.Random(3)
    start = now - timedelta(hours=36)
    rows = [
        {"time": start + timedelta(microseconds=rng.randrange(12 * 3_600_000_000)),
         "method": "GET", "endpoint": f"/api/{i % 2}", "status": 200,
         "ms": rng.lognormvariate(4, 0.6), "ut": None, "db": None, "ex": None, "ch": None,
         "rid": None, "ingested": start}
        for i in range(30_000)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(_INSERT, rows)
    run_rollups(engine, now, safety_lag=timedelta(0))
    assert pack_api_timings(engine, now).requests == len(rows)
    with engine.connect() as conn:
        size = conn.execute(text("SELECT pg_total_relation_size('api_timing_packs')")).scalar()
        print(f"{size / len(rows):.2f} bytes per packed request")
        assert size / len(rows) < 16
    with engine.begin() as conn:  # (apply_retention would drop the shared test partitions)
        assert retention_days(conn)["api_timings"] == 14  # the packs' setting
        assert prune_api_timing_packs(conn, start) == 0  # the oldest half hour ends after it
        assert prune_api_timing_packs(conn, now) > 0
        assert conn.execute(text("SELECT count(*) FROM api_timing_packs")).scalar() == 0
