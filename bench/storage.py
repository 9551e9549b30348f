"""Disk per metric point before and after compaction, compaction speed, raw read speed.

Builds its own database `bench_storage` on the embedded Postgres under .data/bench:
All of it over one calendar day already past the compaction horizon (the day before the one
two hours ago), so compaction meets what its job meets the morning after: a past day.
- the **realistic set**: 1,000 series scraped every 15 s for 24 h (5.76 M points), like a
  Prometheus-style scrape: timestamps in milliseconds, a fixed offset per target and a few ms
  of jitter; 40 % counters (integer totals), 30 % gauges with one or two decimals
  (percentages), 20 % integer gauges (connections, queue depth), 10 % full-precision floats
  (latencies in seconds with noise in every bit);
- the **queries benchmark's shape** (bench/queries.py: 10 s, microsecond-random timestamps,
  full-precision normal noise on every value) for 100 series over 24 h, as the worst case;
- 500,000 API timings (20 endpoints) over the same 24 h, as rows and then packed.

Then, in the same run: the row form's bytes per point (`pg_total_relation_size` of every
`metric_points` partition: heap, indexes, TOAST, maps) and its read speed (today's row read —
`array_agg` per series, as the alert engine read raw windows — and `points_reader` on rows);
compaction of everything, timed apart for the day's first four 2-hour stretches by the path
today's stretches take (`DELETE … RETURNING` per batch of series) and then for the other
16 hours whole (`compact_day`: read once, partition truncated; `compaction_samples_per_s`);
the chunks' bytes per point (`metric_chunks` with its TOAST and indexes) and `points_reader`'s
read speed over them; peak RSS of this process. Reads are 24 h of the 1,000 series, median of 3.
Before compaction the real rollup job runs over everything (`run_rollups`), and the 1-minute
metric rows are measured as stored (empty `hist_counts` for one-entry-per-point rows) and as
they were before (an array of ones: its extra bytes computed per row with `pg_column_size`).
Compaction's CPU is counted too (this process and the database backends of this database,
from /proc), because wall-clock rates on a shared machine follow the load more than the code.
The API timings are packed (`pack_api_timings`, the API watermark set to the end) and
`api_timing_packs` measured against the rows. Then sparse keys: 40 endpoints at 13 requests
per half hour each (the demo's rate) over the same day, packed per half hour and then into day
packs (`repack_sparse_days`), the table's growth measured after each (VACUUM FULL after the
repack, whose deleted half-hour packs would otherwise still hold their pages).
Last line: JSON.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from sqlalchemy import Engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._bench_db import database_url  # noqa: E402
from bench.queries import ENDPOINTS, _block, _copy, _pg_time  # noqa: E402
from monitoring_core.compaction import (  # noqa: E402
    COMPACT_AFTER,
    compact,
    pack_api_timings,
    repack_sparse_days,
)
from monitoring_core.db import make_engine  # noqa: E402
from monitoring_core.migrate import migrate  # noqa: E402
from monitoring_core.points_reader import read_points  # noqa: E402
from monitoring_core.retention import DEFAULT_RETENTION_DAYS  # noqa: E402
from monitoring_core.rollups import run_rollups  # noqa: E402
from monitoring_core.storage import TableFigure, project_year, storage_figures  # noqa: E402

DB_NAME = "bench_storage"
SERIES, HOURS, EVERY_S = 1_000, 24, 15
NOISY_SERIES, NOISY_EVERY_S = 100, 10
API_ROWS = 500_000
SPARSE_PER_HALF_HOUR = 13
READS = 3

_ROW_READ = """
SELECT p.series_id, array_agg(date_part('epoch', p.time) ORDER BY p.time),
       array_agg(p.value ORDER BY p.time)
FROM metric_points p
WHERE p.series_id = ANY(%(ids)s::bigint[]) AND p.time > %(start)s AND p.time <= %(end)s
GROUP BY p.series_id
"""


def _realistic(rng: np.random.Generator, start: float, sid: int) -> tuple[np.ndarray, np.ndarray]:
    n = HOURS * 3600 // EVERY_S
    offset_ms = rng.integers(0, EVERY_S * 1000)
    t_ms = int(start) * 1000 + offset_ms + np.arange(n) * EVERY_S * 1000 + rng.integers(-3, 4, n)
    t = t_ms / 1000.0
    kind = sid % 10
    daily = np.sin(((t % 86400) / 3600 - 8) / 24 * 2 * np.pi)
    if kind < 4:  # counters: requests, bytes
        rate = rng.uniform(1, 500) * (1.2 + daily)
        values = np.cumsum(rng.poisson(rate * EVERY_S)).astype(np.float64)
    elif kind < 7:  # percentages with one or two decimals
        raw = np.clip(
            40 + 25 * daily + np.cumsum(rng.normal(0, 0.5, n)) + rng.normal(0, 3, n), 0, 100
        )
        values = np.round(raw, 1 + kind % 2)
    elif kind < 9:  # integer gauges
        values = np.maximum(0, np.round(20 + 10 * daily + np.cumsum(rng.normal(0, 1, n))))
    else:  # latency seconds, every bit noisy
        values = rng.lognormal(np.log(0.12), 0.4, n) * (1.1 + 0.3 * daily)
    return t, values


def _noisy(rng: np.random.Generator, start: float, sid: int) -> tuple[np.ndarray, np.ndarray]:
    """bench/queries.py's generator, 24 h."""
    seconds = start + np.arange(0, HOURS * 3600, NOISY_EVERY_S, dtype=np.float64)
    daily = np.sin(((seconds % 86400) / 3600 - 8) / 24 * 2 * np.pi)
    t = seconds + rng.uniform(0, NOISY_EVERY_S, seconds.size)
    values = np.maximum(0, 40 + 25 * daily + rng.normal(0, 8, seconds.size) + sid % 7)
    return t, values


def _metric_blocks(
    rng: np.random.Generator, start: float, ids: list[int], make: Callable[..., Any]
) -> Iterator[bytes]:
    for sid in ids:
        t, values = make(rng, start, sid)
        pg_t = _pg_time(t)
        if make is _realistic:  # exact milliseconds (float seconds would round off a few µs)
            pg_t = np.round(pg_t / 1000).astype(np.int64) * 1000
            # the day's first and last point keep to the day despite their few ms of jitter
            day = _pg_time(np.array([start, start + HOURS * 3600.0]))
            pg_t = np.clip(pg_t, day[0], day[1] - 1000)
        yield _block(
            [(">i8", pg_t), (">i8", sid), (">f8", values), (">i8", pg_t + 1_000_000)], t.size
        )


def _api_blocks(rng: np.random.Generator, start: float) -> Iterator[bytes]:
    per = API_ROWS // len(ENDPOINTS)
    for method, path, median, sigma, err in ENDPOINTS:
        t = np.sort(start + rng.uniform(0, HOURS * 3600, per))
        latency = rng.lognormal(np.log(median), sigma, per)
        status = np.where(rng.uniform(0, 1, per) < err, 503, 200)
        pg_t = _pg_time(t)
        yield _block(
            [(">i8", pg_t), (f"S{len(method)}", method.encode()), (f"S{len(path)}", path.encode()),
             (">i2", status), (">f8", latency), (">i8", pg_t + 500_000)],
            per,
        )  # fmt: skip


def build(engine: Engine, url: str, start: datetime) -> dict[str, list[int]]:
    rng = np.random.default_rng(16)
    with engine.begin() as conn:
        ids = {
            kind: list(
                conn.execute(
                    text(
                        "INSERT INTO metric_series (name, dimensions) SELECT :n, "
                        "jsonb_build_object('instance', 'host-' || i) "
                        "FROM generate_series(1, :c) i RETURNING id"
                    ),
                    {"n": f"bench_{kind}", "c": count},
                ).scalars()
            )
            for kind, count in (("realistic", SERIES), ("noisy", NOISY_SERIES))
        }
    copy_points = (
        "COPY metric_points (time, series_id, value, ingested_at) FROM STDIN (FORMAT BINARY)"
    )
    copy_api = (
        "COPY api_timings (time, method, endpoint, status_code, response_time_ms, ingested_at) "
        "FROM STDIN (FORMAT BINARY)"
    )
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as pg:
        first = start.timestamp()
        _copy(pg, copy_points, _metric_blocks(rng, first, ids["realistic"], _realistic))
        _copy(pg, copy_points, _metric_blocks(rng, first, ids["noisy"], _noisy))
        _copy(pg, copy_api, _api_blocks(rng, first))
        pg.execute("VACUUM ANALYZE metric_points")
        pg.execute("VACUUM ANALYZE api_timings")
    return ids


def _partitions_bytes(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0) FROM pg_inherits i "
                    "WHERE i.inhparent = CAST(:t AS regclass)"
                ),
                {"t": table},
            ).scalar_one()
        )


def _bytes_of_series(engine: Engine, ids: list[int]) -> tuple[int, int]:
    """(bytes of the rows of these series, their count), the partitions' size shared out by
    row count (both series sets live in the same partitions)."""
    with engine.connect() as conn:
        total = conn.execute(text("SELECT count(*) FROM metric_points")).scalar_one()
        mine = conn.execute(
            text("SELECT count(*) FROM metric_points WHERE series_id = ANY(:ids)"), {"ids": ids}
        ).scalar_one()
    return round(_partitions_bytes(engine, "metric_points") * mine / total), mine


def _chunk_bytes(engine: Engine, ids: list[int]) -> tuple[int, int]:
    """(bytes of these series' chunks — heap, TOAST and indexes shared out by chunk bytes —,
    their points)."""
    with engine.connect() as conn:
        total = conn.execute(text("SELECT pg_total_relation_size('metric_chunks')")).scalar_one()
        everything, mine, points = conn.execute(
            text(
                "SELECT sum(pg_column_size(c.*)), "
                "sum(pg_column_size(c.*)) FILTER (WHERE series_id = ANY(:ids)), "
                "sum(count) FILTER (WHERE series_id = ANY(:ids)) FROM metric_chunks c"
            ),
            {"ids": ids},
        ).one()
    return round(total * mine / everything), int(points)


def _median_ms(fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(READS):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _row_read(url: str, ids: list[int], start: datetime, end: datetime) -> int:
    with psycopg.connect(url.replace("+psycopg", "")) as pg, pg.cursor(binary=True) as cur:
        rows = cur.execute(_ROW_READ, {"ids": ids, "start": start, "end": end}).fetchall()
        arrays = [(np.asarray(t), np.asarray(v)) for _, t, v in rows]
    return sum(len(t) for t, _ in arrays)


def _reader(engine: Engine, ids: list[int], start: datetime, end: datetime) -> int:
    with engine.connect() as conn:
        return sum(len(t) for t, _ in read_points(conn, ids, start, end).values())


def _cpu_s(url: str) -> float:
    """CPU seconds of this process and of the database's backends (from /proc)."""
    own = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as pg:
        pids = [
            r[0]
            for r in pg.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            ).fetchall()
        ]
    backends = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        backends += (int(fields[11]) + int(fields[12])) / tick
    return own + backends


def _rollup_1m(engine: Engine) -> tuple[float, float, float]:
    """metric_rollup_1m: (bytes per row as stored, bytes per row with an array of ones in
    place of each empty hist_counts — the encoding before —, bytes per point as stored)."""
    with engine.connect() as conn:
        conn.execute(text("ANALYZE metric_rollup_1m"))
        size = conn.execute(text("SELECT pg_total_relation_size('metric_rollup_1m')")).scalar_one()
        rows, points, extra = conn.execute(
            text(
                "SELECT count(*), sum(count), sum(CASE WHEN cardinality(hist_counts) = 0 THEN "
                "pg_column_size(array_fill(1::bigint, ARRAY[cardinality(hist_keys)])) "
                "- pg_column_size(hist_counts) ELSE 0 END) FROM metric_rollup_1m"
            )
        ).one()
    return size / rows, (size + int(extra)) / rows, size / int(points)


def _year(engine: Engine, now: datetime, rows: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """A year at the data set's rate (1,100 series, 500,000 API timings a day over 20
    endpoints) from the bytes per sample measured here: the storage figures of this database,
    with the row forms measured before compaction (`rows`: table -> (bytes, samples))."""
    with engine.connect() as conn:
        for table in ("metric_rollup_1m", "metric_rollup_1h", "metric_rollup_6h",
                      "metric_rollup_1d", "api_rollup_1m", "api_rollup_1h", "api_total_1m",
                      "api_total_1h"):  # fmt: skip
            conn.execute(text(f"ANALYZE {table}"))
        figures = storage_figures(conn, now)
    figures.tables = [
        TableFigure(t.table, t.tier, t.unit, *rows[t.table]) if t.table in rows else t
        for t in figures.tables
    ]
    figures.metric_points_per_s = (SERIES * HOURS * 3600 / EVERY_S + NOISY_SERIES * HOURS * 3600
                                   / NOISY_EVERY_S) / 86_400  # fmt: skip
    figures.api_requests_per_s = API_ROWS / 86_400
    figures.metric_series, figures.api_keys = SERIES + NOISY_SERIES, len(ENDPOINTS)
    total, unmeasured = project_year(figures, DEFAULT_RETENTION_DAYS)
    short, _ = project_year(figures, {**DEFAULT_RETENTION_DAYS, "rollup_1m": 7})
    assert not unmeasured, unmeasured
    return {"year_bytes": total, "year_bytes_rollup_1m_7d": short}


def _sparse_api(engine: Engine, url: str, now: datetime, start: datetime) -> dict[str, float]:
    """Bytes per request of sparse keys (40 endpoints x 13 requests a half hour for the day):
    the growth of api_timing_packs by their half-hour packs, then by their day packs."""
    rng = np.random.default_rng(17)
    keys, per = 40, SPARSE_PER_HALF_HOUR * 48
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as pg:
        size = "SELECT pg_total_relation_size('api_timing_packs')"
        pg.execute("VACUUM FULL api_timing_packs")  # as after the repack below
        before = pg.execute(size).fetchone()[0]  # type: ignore[index]
        blocks = []
        for i in range(keys):
            t = np.sort(start.timestamp() + rng.uniform(0, HOURS * 3600, per))
            pg_t, path = _pg_time(t), f"/api/sparse/{i:02d}".encode()
            blocks.append(_block(
                [(">i8", pg_t), ("S3", b"GET"), (f"S{len(path)}", path), (">i2", 200),
                 (">f8", rng.lognormal(np.log(40), 0.6, per)), (">i8", pg_t + 500_000)],
                per,
            ))  # fmt: skip
        _copy(
            pg,
            "COPY api_timings (time, method, endpoint, status_code, response_time_ms, "
            "ingested_at) FROM STDIN (FORMAT BINARY)",
            iter(blocks),
        )
        half = pack_api_timings(engine, now, after=timedelta(hours=2), repack=False)
        half_hour_bytes = pg.execute(size).fetchone()[0] - before  # type: ignore[index]
        day_packs = repack_sparse_days(engine, now - timedelta(hours=2))
        pg.execute("VACUUM FULL api_timing_packs")
        after = pg.execute(size).fetchone()[0]  # type: ignore[index]
    requests = keys * per
    assert half.requests == requests and day_packs == keys, (half, day_packs)
    return {
        "api_timing_sparse_requests_per_key_half_hour": SPARSE_PER_HALF_HOUR,
        "api_timing_sparse_half_hour_bytes_per_row": round(half_hour_bytes / requests, 2),
        "api_timing_sparse_bytes_per_row": round((after - before) / requests, 2),
    }


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    started = time.perf_counter()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = (now - COMPACT_AFTER).replace(hour=0) - timedelta(days=1)  # a past calendar day
    end = start + timedelta(hours=HOURS)
    url = database_url(DB_NAME)
    engine = make_engine(url)
    migrate(engine, now=now, days_back=3)
    ids = build(engine, url, start)
    built_s = time.perf_counter() - started
    real, noisy = ids["realistic"], ids["noisy"]
    row_bytes, row_points = _bytes_of_series(engine, real)
    noisy_row_bytes, noisy_points = _bytes_of_series(engine, noisy)
    api_bytes = _partitions_bytes(engine, "api_timings")
    span = (start - timedelta(seconds=1), end + timedelta(seconds=1))
    row_read_ms = _median_ms(lambda: _row_read(url, real, *span))
    reader_rows_ms = _median_ms(lambda: _reader(engine, real, *span))
    rss_before = _rss_mb()

    rollup_started = time.perf_counter()
    run_rollups(engine, now, safety_lag=timedelta(0))  # every point and timing rolled up
    rollup_s = time.perf_counter() - rollup_started
    rollup_row, rollup_row_before, rollup_per_point = _rollup_1m(engine)

    cpu_before = _cpu_s(url)
    # the day's first stretch as today's stretches go (DELETE … RETURNING), then the day whole
    stretches = compact(engine, now, max_days=0, max_stretches=4)
    cpu_between = _cpu_s(url)
    days = compact(engine, now, max_stretches=0)
    compaction_cpu = _cpu_s(url) - cpu_between
    stretch_cpu = cpu_between - cpu_before
    assert days.whole_days == 1 and stretches.stretches == 4, (days, stretches)
    # every timing packed (the job's horizon is a day; the bench's timings end 2 h ago or more)
    packed = pack_api_timings(engine, now, after=timedelta(hours=2))
    with engine.connect() as conn:
        pack_bytes = conn.execute(
            text("SELECT pg_total_relation_size('api_timing_packs')")
        ).scalar_one()
    assert packed.requests == API_ROWS, "API timings left as rows"
    sparse = _sparse_api(engine, url, now, start)
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as pg:
        pg.execute("VACUUM ANALYZE metric_points")
        pg.execute("VACUUM ANALYZE metric_chunks")
        left = pg.execute("SELECT count(*) FROM metric_points").fetchone()
    chunk_bytes, chunk_points = _chunk_bytes(engine, real)
    noisy_chunk_bytes, noisy_chunk_points = _chunk_bytes(engine, noisy)
    assert chunk_points == row_points and noisy_chunk_points == noisy_points, "points lost"
    assert _reader(engine, real, *span) == row_points
    reader_chunks_ms = _median_ms(lambda: _reader(engine, real, *span))
    partitions_after = _partitions_bytes(engine, "metric_points")
    year = _year(
        engine,
        now,
        {"metric_points": (row_bytes + noisy_row_bytes, row_points + noisy_points),
         "api_timings": (api_bytes, API_ROWS)},
    )  # fmt: skip

    out = {
        "points": row_points,
        "series": SERIES,
        "metric_row_bytes_per_sample": round(row_bytes / row_points, 2),
        "metric_bytes_per_sample": round(chunk_bytes / chunk_points, 3),
        "noisy_row_bytes_per_sample": round(noisy_row_bytes / noisy_points, 2),
        "noisy_bytes_per_sample": round(noisy_chunk_bytes / noisy_chunk_points, 3),
        "api_timing_bytes_per_row": round(pack_bytes / packed.requests, 2),
        "api_timing_row_bytes_per_row": round(api_bytes / API_ROWS, 1),
        "api_pack_s": round(packed.seconds, 2),
        **sparse,
        "metric_rollup_1m_bytes_per_row": round(rollup_row, 1),
        "metric_rollup_1m_bytes_per_row_before": round(rollup_row_before, 1),
        "metric_rollup_1m_bytes_per_point": round(rollup_per_point, 2),
        "rollup_s": round(rollup_s, 1),
        "compaction_cpu_s": round(compaction_cpu, 2),
        "compaction_samples_per_cpu_s": round(days.points / compaction_cpu),
        "load_average_1m": round(os.getloadavg()[0], 1),
        "compaction_samples_per_s": round(days.points / days.seconds),
        "compaction_s": round(days.seconds, 2),
        "compaction_whole_day_samples_per_s": round(days.points / days.seconds),
        "compaction_whole_day_points": days.points,
        "compaction_stretch_samples_per_s": round(stretches.points / stretches.seconds),
        "compaction_stretch_samples_per_cpu_s": round(stretches.points / stretch_cpu),
        "compaction_stretch_points": stretches.points,
        "chunks": days.chunks + stretches.chunks,
        "rows_left_after_compaction": left[0] if left else None,
        "partitions_bytes_after_vacuum": partitions_after,
        "raw_read_24h_1000_series_ms": round(reader_chunks_ms, 1),
        "raw_read_24h_1000_series_row_form_ms": round(row_read_ms, 1),
        "points_reader_on_rows_ms": round(reader_rows_ms, 1),
        "year_gb": round(year["year_bytes"] / 1e9, 2),
        "year_gb_rollup_1m_7d": round(year["year_bytes_rollup_1m_7d"] / 1e9, 2),
        "peak_rss_mb_before_compaction": round(rss_before, 1),
        "peak_rss_mb": round(_rss_mb(), 1),
        "build_s": round(built_s, 1),
        "total_s": round(time.perf_counter() - started, 1),
    }
    print(
        f"realistic: {row_points:,} points, rows {out['metric_row_bytes_per_sample']} B/point "
        f"-> chunks {out['metric_bytes_per_sample']} B/point; queries-bench noise: "
        f"{out['noisy_row_bytes_per_sample']} -> {out['noisy_bytes_per_sample']} B/point; "
        f"compaction of the past day {out['compaction_samples_per_s']:,} points/s "
        f"({days.points:,} in {days.seconds:.2f} s; {out['compaction_samples_per_cpu_s']:,} per "
        f"CPU-second), a stretch as today's go {out['compaction_stretch_samples_per_s']:,}/s "
        f"({out['compaction_stretch_samples_per_cpu_s']:,} per CPU-second), load "
        f"{out['load_average_1m']}; API timings "
        f"{out['api_timing_row_bytes_per_row']} -> {out['api_timing_bytes_per_row']} B/request "
        f"(sparse keys at 13 a half hour: {out['api_timing_sparse_half_hour_bytes_per_row']} "
        f"-> {out['api_timing_sparse_bytes_per_row']} B/request in day packs); "
        f"1-minute rollup rows {out['metric_rollup_1m_bytes_per_row_before']} -> "
        f"{out['metric_rollup_1m_bytes_per_row']} B/row; a year {out['year_gb']} GB "
        f"({out['year_gb_rollup_1m_7d']} GB with 1-minute rollups kept 7 days); "
        "24 h x 1,000 series read: "
        f"rows {row_read_ms:.0f} ms (today's read), {reader_rows_ms:.0f} ms (reader on rows), "
        f"{reader_chunks_ms:.0f} ms (reader on chunks)"
    )
    print(json.dumps(out))
    engine.dispose()


if __name__ == "__main__":
    main()
