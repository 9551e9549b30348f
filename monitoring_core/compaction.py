"""Compaction: raw metric points older than the horizon become compressed series chunks.

Once the metric rollups have passed a stretch of raw points and it is older than
`COMPACT_AFTER` (2 h), each series' points of that stretch (`STRETCH`, 2 h aligned to
2000-01-01 UTC, so a stretch never straddles a day) are encoded into one `metric_chunks` row
(chunks/codec.py: delta-of-delta timestamps, decimal or XOR values, zstd; lossless) and the
rows are deleted. `points_reader.read_points` reads both forms.

Two paths. A past day whose rows the rollups have all passed is compacted whole
(`compact_day`): its partition is locked, read once in a few batches packed per series by
Postgres, every series of a batch encoded at once (`chunks.batch.encode_many`) in a second
thread while Postgres reads the next batch, and TRUNCATEd, which frees rows and index pages at
once (deleting millions of rows one by one costs far more than encoding them). Today's stretches go one by one (`compact_batch`, `DELETE … RETURNING`); the
dead rows they leave are reclaimed when the day is over, by the same truncate.

Safety:
- **Crash**: one transaction per whole day, or per batch of series of one stretch, doing `DELETE … RETURNING`
  the rows, merging them with the stretch's existing chunk (row-locked), deleting that chunk
  and inserting the new one. It commits whole or not at all: a crash loses nothing and
  doubles nothing; the next run does the work again.
- **Two workers** (or a worker and the demo loader): each transaction takes the metric
  rollup's advisory lock (the rollup job's own), so compactions and metric rollups run one
  at a time. A second compactor of the same stretch finds the rows already deleted (DELETE
  re-checks rows another transaction deleted) and writes nothing.
- **Idempotent**: only rows with `ingested_at` at or below the rollup watermark are taken;
  a stretch with no such rows is left alone, so re-running changes nothing.
- **Late points**: a point landing in a compacted stretch stays a row (every read sees it
  with the chunk). Before the rollup recomputes its minute it expands the chunk back into rows
  (`chunks.store.expand_touched`), so the rollup sees every point; the next pass here writes
  the merged chunk.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from monitoring_core.chunks.batch import encode_many
from monitoring_core.chunks.codec import decode, encode
from monitoring_core.chunks.store import (
    PG_EPOCH_US,
    Chunk,
    delete_chunks,
    from_us,
    insert_chunks,
    lock_chunks,
    rows_from_packed,
    to_us,
)
from monitoring_core.chunks.timings import COLUMNS as TIMING_COLUMNS
from monitoring_core.chunks.timings import (
    PACK,
    PACK_NAMES,
    SPARSE,
    pack_columns_sql,
    unpacked_sql,
)
from monitoring_core.partitions import list_partitions, partition_name
from monitoring_core.points_reader import read_points_us
from monitoring_core.rollups import FAMILIES, rollup_lock_key

__all__ = [
    "API_PACK_AFTER",
    "COMPACT_AFTER",
    "PackReport",
    "pack_api_timings",
    "STRETCH",
    "CompactionReport",
    "compact",
    "compact_batch",
    "compactable_until",
    "pending_stretches",
    "verify_chunks",
]

COMPACT_AFTER = timedelta(hours=2)
STRETCH = timedelta(hours=2)
BATCH_SERIES = 500
MAX_DAYS = 7  # whole days per run
DAY_BATCH_ROWS = 2_000_000  # rows a day's batch aggregates in Postgres' memory (~70 MB)
DAY_READ_WORKERS = 0  # Postgres parallel workers reading a day (the second core encodes)
MAX_STRETCHES = 48  # per run: a backlog (first run after an upgrade) catches up over runs
_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
_FAMILY = FAMILIES[0].name  # "metric_points": its watermark and its advisory lock

# psycopg placeholders: run on the driver's binary cursor (`_fetch`).
_COMPACT = """
    WITH d AS (
        DELETE FROM metric_points
        WHERE series_id = ANY(%(ids)s) AND time >= %(lo)s AND time < %(hi)s
          AND ingested_at <= %(w)s
        RETURNING series_id, time, value
    )
    SELECT series_id,
           string_agg(timestamptz_send(time), ''::bytea) AS t,
           string_agg(float8send(value), ''::bytea) AS v
    FROM d GROUP BY series_id
    """
# Every series of one stretch at once: for a heap in time order (live ingest), whose BRIN index
# on time takes the scan straight to the stretch's pages.
_COMPACT_ALL = """
    WITH d AS (
        DELETE FROM metric_points
        WHERE time >= %(lo)s AND time < %(hi)s AND ingested_at <= %(w)s
        RETURNING series_id, time, value
    )
    SELECT series_id,
           string_agg(timestamptz_send(time), ''::bytea) AS t,
           string_agg(float8send(value), ''::bytea) AS v
    FROM d GROUP BY series_id
    """
# One batch of a day's partition (its name is our own identifier, the condition our own text).
_READ_DAY = (
    "SELECT series_id, string_agg(timestamptz_send(time), ''::bytea) AS t, "
    "string_agg(float8send(value), ''::bytea) AS v FROM \"{partition}\" "
    "WHERE {condition} GROUP BY series_id"
)


@dataclass
class CompactionReport:
    stretches: int = 0
    series: int = 0
    points: int = 0
    chunks: int = 0
    merged: int = 0  # chunks rewritten with late points
    whole_days: int = 0  # partitions compacted whole and truncated
    reclaimed: int = 0  # emptied partitions truncated (their dead rows and index pages freed)
    busy_days: int = 0  # days skipped: their partition's lock was not granted in time
    seconds: float = 0.0
    pending: list[datetime] = field(default_factory=list)  # stretches left for the next run

    def summary(self) -> str:
        rate = self.points / self.seconds if self.seconds else 0.0
        left = f", {len(self.pending)} stretches left" if self.pending else ""
        return (
            f"compacted {self.points} points of {self.series} series-stretches into "
            f"{self.chunks} chunks ({self.merged} merged, {self.whole_days} whole days, "
            f"{self.reclaimed} emptied partitions truncated) in {self.seconds:.2f}s "
            f"({rate:,.0f} points/s){left}"
        )


def _floor(moment: datetime) -> datetime:
    return _ORIGIN + ((moment - _ORIGIN) // STRETCH) * STRETCH


def rollup_watermark(conn: Connection) -> datetime | None:
    return conn.execute(
        text("SELECT watermark FROM rollup_watermarks WHERE name = :n"), {"n": _FAMILY}
    ).scalar()


def compactable_until(
    now: datetime, watermark: datetime | None, after: timedelta = COMPACT_AFTER
) -> datetime | None:
    """Pure: stretches ending at or before this instant may be compacted (None: none yet)."""
    if watermark is None:
        return None
    return _floor(min(now - after, watermark))


def pending_stretches(conn: Connection, until: datetime, watermark: datetime) -> list[datetime]:
    """Starts of the stretches before `until` that hold rows the rollups have passed."""
    return list(
        conn.execute(
            text(
                "SELECT DISTINCT date_bin(CAST(:stretch AS interval), time, :origin) AS s "
                "FROM metric_points WHERE time < :until AND ingested_at <= :w ORDER BY s"
            ),
            {"stretch": STRETCH, "origin": _ORIGIN, "until": until, "w": watermark},
        ).scalars()
    )


def compact_batch(
    conn: Connection, series_ids: Sequence[int] | None, lo: datetime, watermark: datetime
) -> tuple[int, int, int]:
    """Compact the stretch [lo, lo + STRETCH) of these series, or of every series (None: for
    a partition in time order, see `_time_ordered`) (caller commits): (points taken from
    rows, chunks written, chunks merged).

    Takes the metric rollup's advisory lock in shared mode: batches run side by side (one per
    core, see `compact`), the rollup (exclusive) waits for them and they for it."""
    conn.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": rollup_lock_key(_FAMILY)})
    hi = lo + STRETCH
    if series_ids is None:
        conn.execute(text("SET LOCAL work_mem = '256MB'"))  # a stretch's rows, aggregated
        rows = _fetch(conn, _COMPACT_ALL, {"lo": lo, "hi": hi, "w": watermark})
    else:
        params = {"ids": list(series_ids), "lo": lo, "hi": hi, "w": watermark}
        rows = _fetch(conn, _COMPACT, params)
    if not rows:
        return 0, 0, 0
    old = _old_chunks(lock_chunks(conn, sorted(r[0] for r in rows), lo, hi))
    new, replaced = _chunks_of(rows, old)
    delete_chunks(conn, replaced)
    insert_chunks(conn, new)
    return sum(c.count for c in new) - sum(c.count for c in replaced), len(new), len(replaced)


_STRETCH_US = int(STRETCH.total_seconds() * 1_000_000)
Packed = tuple[int, bytes, bytes]  # series id, its timestamptz_send and float8send bytes


def _fetch(conn: Connection, sql: str, params: dict[str, Any]) -> list[Packed]:
    """Run a statement giving (series_id, packed times, packed values) rows on the driver's
    binary cursor (the byte strings come as they are: no hex text made by Postgres and parsed
    here), in the connection's transaction."""
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor(binary=True) as cursor:
        return [(int(sid), t, v) for sid, t, v in cursor.execute(sql, params).fetchall()]


def _old_chunks(chunks: Sequence[Chunk]) -> dict[tuple[int, int], list[Chunk]]:
    """Existing chunks by (series id, stretch number counted from 2000-01-01)."""
    out: dict[tuple[int, int], list[Chunk]] = {}
    for chunk in chunks:
        out.setdefault((chunk.series_id, (chunk.start_us - PG_EPOCH_US) // _STRETCH_US), []).append(
            chunk
        )
    return out


def _chunks_of(
    rows: Sequence[Packed], old: dict[tuple[int, int], list[Chunk]]
) -> tuple[list[Chunk], list[Chunk]]:
    """Pure: series' packed rows (any order within a series) and the existing chunks they merge
    with -> (new chunks, one per series and stretch; the old chunks they replace).

    All series at once: the points are laid end to end, sorted by (time, value) within each
    series only where they are not already (rows come in the heap's order, which is time
    order for live ingest), cut at every change of series or stretch, and encoded together
    (`encode_many`, the codec's bytes exactly). A (series, stretch) with an existing chunk
    (late points) is merged with it and encoded alone."""
    assert _ORIGIN == datetime(2000, 1, 1, tzinfo=UTC)  # stretch numbers count from PG's epoch
    if not rows:
        return [], []
    counts = np.array([len(t) // 8 for _, t, _ in rows], dtype=np.int64)
    times, values = rows_from_packed(b"".join(r[1] for r in rows), b"".join(r[2] for r in rows))
    series_of = np.repeat(np.arange(len(rows)), counts)
    same = series_of[1:] == series_of[:-1]
    ordered = (times[1:] > times[:-1]) | ((times[1:] == times[:-1]) & (values[1:] >= values[:-1]))
    bounds = np.r_[0, np.cumsum(counts)]
    for s in np.unique(series_of[1:][same & ~ordered]).tolist():
        a, b = bounds[s], bounds[s + 1]
        order = np.lexsort((values[a:b], times[a:b]))
        times[a:b], values[a:b] = times[a:b][order], values[a:b][order]
    stretch = (times - PG_EPOCH_US) // _STRETCH_US
    cut = np.flatnonzero(~same | (stretch[1:] != stretch[:-1])) + 1
    starts, ends = np.r_[0, cut], np.r_[cut, len(times)]
    sids = np.array([r[0] for r in rows], dtype=np.int64)[series_of[starts]].tolist()
    keys = list(zip(sids, stretch[starts].tolist(), strict=True))
    plain = [i for i, key in enumerate(keys) if key not in old]
    encoded = encode_many(times, values, starts[plain], ends[plain])
    new = [
        Chunk(sids[i], int(times[starts[i]]), int(times[ends[i] - 1]), int(ends[i] - starts[i]), *e)
        for i, e in zip(plain, encoded, strict=True)
    ]
    replaced: list[Chunk] = []
    for i, key in enumerate(keys):
        if key in old:
            t, v = times[starts[i] : ends[i]], values[starts[i] : ends[i]]
            for chunk in old[key]:
                t, v = _concat((t, v), chunk.points())
                replaced.append(chunk)
            new.append(Chunk.of(sids[i], t, v))
    return new, replaced


def _concat(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple:
    return np.concatenate((a[0], b[0])), np.concatenate((a[1], b[1]))


def _extend(into: tuple[list[Chunk], list[Chunk]], more: tuple[list[Chunk], list[Chunk]]) -> None:
    into[0].extend(more[0])
    into[1].extend(more[1])


_LOCK_DAY = text(
    "SELECT series_id, start_time, end_time, count, times, vals FROM metric_chunks "
    "WHERE series_id = ANY(:ids) AND start_time >= :lo AND start_time < :hi FOR UPDATE"
)


def _day_batches(
    conn: Connection, partition: str, day_start: datetime, batch_rows: int
) -> list[tuple[str, dict[str, Any]]]:
    """(WHERE condition, parameters) of batches of about `batch_rows` rows that together read
    the partition once: one batch when it is small; else windows of whole stretches when the
    heap is in time order (live ingest: each window reads its own pages through the BRIN
    index on time), or series-id ranges when it is not (a bulk load per series: each range
    reads its own pages through the (series_id, time) index)."""
    stats = text(
        "SELECT c.reltuples, s.correlation, pg_relation_size(c.oid) FROM pg_class c "
        "LEFT JOIN pg_stats s ON s.schemaname = current_schema() AND s.tablename = c.relname "
        "AND s.attname = 'time' WHERE c.oid = CAST(:p AS regclass)"
    )
    rows, correlation, size = conn.execute(stats, {"p": partition}).one()
    if rows < 0 or correlation is None:  # never analyzed: a sample of 30,000 rows is cheap
        conn.execute(text(f'ANALYZE "{partition}"'))  # (a role not owning it: a warning only)
        rows, correlation, size = conn.execute(stats, {"p": partition}).one()
    if rows < 0:  # still unknown: from its size (a row takes ~50 bytes of heap)
        rows = size / 50
    parts = max(1, math.ceil(float(rows) / batch_rows))
    if parts == 1:
        return [("TRUE", {})]
    if correlation is not None and abs(correlation) >= 0.5:
        stretches = round(timedelta(days=1) / STRETCH)
        per = math.ceil(stretches / min(parts, stretches))
        return [
            ("time >= %(lo)s AND time < %(hi)s",
             {"lo": day_start + i * STRETCH, "hi": day_start + min(i + per, stretches) * STRETCH})
            for i in range(0, stretches, per)
        ]  # fmt: skip
    first, last = conn.execute(
        text(f'SELECT min(series_id), max(series_id) FROM "{partition}"')  # noqa: S608
    ).one()
    if first is None:
        return []
    width = math.ceil((last - first + 1) / parts)
    return [
        ("series_id BETWEEN %(first)s AND %(last)s", {"first": a, "last": min(a + width, last + 1) - 1})
        for a in range(first, last + 1, width)
    ]  # fmt: skip


def compact_day(
    conn: Connection, day: date, watermark: datetime, *, batch_rows: int | None = None
) -> tuple[int, int, int] | None:
    """Compact a whole past day's partition at once and TRUNCATE it (caller commits):
    (points, chunks written, chunks merged), or None when the day holds rows the rollups have
    not passed (the caller then goes stretch by stretch). Deleting millions of rows one by one
    is what makes the stretch path slow; a truncate frees them at once, indexes included.

    The partition is read once, in a few batches (`_day_batches`), each aggregated per series
    by Postgres into packed byte strings (one hash aggregate in memory, no sort, no parallel
    workers: the second core encodes). Encoding (`_chunks_of`) runs in a second thread while
    Postgres reads the next batch; every statement stays on this connection, in this one
    transaction."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": rollup_lock_key(_FAMILY)})
    partition = partition_name("metric_points", day)
    # Ingest of late points into this day waits for the commit; nothing else writes here.
    conn.execute(text(f'LOCK TABLE "{partition}" IN ACCESS EXCLUSIVE MODE'))
    if conn.execute(
        text(f'SELECT EXISTS (SELECT 1 FROM "{partition}" WHERE ingested_at > :w)'),  # noqa: S608
        {"w": watermark},
    ).scalar():
        return None
    conn.execute(text("SET LOCAL work_mem = '256MB'"))
    conn.execute(text(f"SET LOCAL max_parallel_workers_per_gather = {int(DAY_READ_WORKERS)}"))
    day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    day_end = day_start + timedelta(days=1)
    points = 0
    new: list[Chunk] = []
    replaced: list[Chunk] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: Future[tuple[list[Chunk], list[Chunk]]] | None = None
        batches = _day_batches(conn, partition, day_start, batch_rows or DAY_BATCH_ROWS)
        for condition, params in batches:
            read = _READ_DAY.format(partition=partition, condition=condition)
            rows = _fetch(conn, read, params)
            points += sum(len(t) // 8 for _, t, _ in rows)
            old = _old_chunks(
                [
                    Chunk(sid, to_us(start), to_us(end), count, bytes(t), bytes(v))
                    for sid, start, end, count, t, v in conn.execute(
                        _LOCK_DAY, {"ids": [r[0] for r in rows], "lo": day_start, "hi": day_end}
                    )
                ]
                if rows
                else []
            )
            if pending is not None:
                _extend((new, replaced), pending.result())
            pending = pool.submit(_chunks_of, rows, old)
        if pending is not None:
            _extend((new, replaced), pending.result())
    # Written at the end in key order (a day's chunks are ~3 B a point: a few MB), so the
    # primary key's index fills its pages in order instead of splitting them batch by batch.
    new.sort(key=lambda c: (c.series_id, c.start_us))
    delete_chunks(conn, replaced)
    insert_chunks(conn, new)
    conn.execute(text(f'TRUNCATE "{partition}"'))
    return points, len(new), len(replaced)


def _time_ordered(conn: Connection, day: date) -> bool:
    """Whether the day's partition of metric_points is laid out in time order (as live ingest
    writes it), by its statistics: a stretch is then best deleted for every series at once (its
    pages found by the BRIN index); otherwise series by series through the btree (unknown
    statistics count as not in order)."""
    correlation = conn.execute(
        text(
            "SELECT correlation FROM pg_stats WHERE schemaname = current_schema() "
            "AND tablename = :p AND attname = 'time'"
        ),
        {"p": partition_name("metric_points", day)},
    ).scalar()
    return correlation is not None and abs(correlation) >= 0.5


def _days_to_truncate(
    conn: Connection, until: datetime, table: str = "metric_points"
) -> list[date]:
    """Days whose partition of `table` ended by `until` and still has pages (rows, or the dead
    rows and index pages the stretch path left behind)."""
    sizes: dict[str, int] = dict(
        conn.execute(
            text(
                "SELECT c.relname, pg_relation_size(c.oid) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST(:parent AS regclass)"
            ),
            {"parent": table},
        ).all()
    )
    return [
        day
        for day in list_partitions(conn, table)
        if datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1) <= until
        and sizes.get(partition_name(table, day), 0) > 0
    ]


def compact(
    engine: Engine,
    now: datetime,
    *,
    after: timedelta = COMPACT_AFTER,
    batch_series: int = BATCH_SERIES,
    max_stretches: int = MAX_STRETCHES,
    max_days: int = MAX_DAYS,
    workers: int = 2,
) -> CompactionReport:
    """Compact every stretch the rollups have passed and older than `after`, oldest first:
    whole past days at once (`compact_day`, truncating their partition), then the stretches
    left (today's, and days holding rows the rollups have not passed yet)."""
    started, report = time.perf_counter(), CompactionReport()
    with engine.connect() as conn:
        watermark = rollup_watermark(conn)
        until = compactable_until(now, watermark, after)
        if watermark is None or until is None:
            return report
        days = _days_to_truncate(conn, until)
    for day in days[:max_days]:
        try:
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '10s'"))
                done = compact_day(conn, day, watermark)
        except OperationalError as exc:  # the partition stayed busy: the next run tries again
            if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
                raise
            report.busy_days += 1
            continue
        if done is not None:
            report.whole_days += 1
            report.reclaimed += not done[0]
            report.points += done[0]
            report.chunks += done[1]
            report.series += done[1]
            report.merged += done[2]
    with engine.connect() as conn:
        stretches = pending_stretches(conn, until, watermark)
    report.pending = stretches[max_stretches:]
    tasks: list[tuple[datetime, list[int] | None]] = []
    with engine.connect() as conn:
        ordered: dict[date, bool] = {}
        for lo in stretches[:max_stretches]:
            day = lo.astimezone(UTC).date()
            if ordered.setdefault(day, _time_ordered(conn, day)):
                report.stretches += 1
                tasks.append((lo, None))  # every series at once, through the BRIN index
                continue
            ids = list(
                conn.execute(
                    text(
                        "SELECT DISTINCT series_id FROM metric_points WHERE time >= :lo "
                        "AND time < :hi AND ingested_at <= :w ORDER BY 1"
                    ),
                    {"lo": lo, "hi": lo + STRETCH, "w": watermark},
                ).scalars()
            )
            report.stretches += 1
            tasks += [(lo, ids[i : i + batch_series]) for i in range(0, len(ids), batch_series)]

    def run(task: tuple[datetime, list[int] | None]) -> tuple[int, int, int]:
        with engine.begin() as conn:
            return compact_batch(conn, task[1], task[0], watermark)

    # Two batches at once, each in its own transaction on its own connection: Postgres deletes
    # and aggregates one batch's rows while the other is encoded here (2 cores).
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for points, chunks, merged in pool.map(run, tasks):
            report.points += points
            report.chunks += chunks
            report.merged += merged
            report.series += chunks
    report.seconds = time.perf_counter() - started
    return report


@dataclass
class VerifyReport:
    chunks: int = 0
    points: int = 0
    minutes: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        state = f"{len(self.problems)} PROBLEMS" if self.problems else "all agree"
        return (
            f"verified {self.chunks} chunks ({self.points} points, {self.minutes} minutes "
            f"against metric_rollup_1m): {state}"
        )


_SAMPLE = text(
    "SELECT series_id, start_time, end_time, count, times, vals FROM metric_chunks "
    "ORDER BY random() LIMIT :n"
)
_MINUTES = text(
    "SELECT bucket, count, sum, min, max FROM metric_rollup_1m "
    "WHERE series_id = :s AND bucket >= :lo AND bucket <= :hi ORDER BY bucket"
)


def verify_chunks(conn: Connection, sample: int = 100) -> VerifyReport:
    """Decode a random sample of chunks and check them from nothing: the stored count, first
    and last instants, one stretch, time order, a bit-exact re-encoding round trip, and per
    minute the count, min, max and sum of every raw point (chunk and rows) against the
    1-minute rollups, which were computed from the rows before they were compacted."""
    report = VerifyReport()
    for sid, start, end, count, times, vals in conn.execute(_SAMPLE, {"n": sample}):
        report.chunks += 1
        name = f"chunk ({sid}, {start.isoformat()})"
        t, v = decode(bytes(times), bytes(vals), count)
        report.points += len(t)
        if len(t) != count or int(t[0]) != to_us(start) or int(t[-1]) != to_us(end):
            report.problems.append(f"{name}: count or first/last instant differ from its row")
        if _floor(start) != _floor(end) or (len(t) > 1 and not (t[1:] >= t[:-1]).all()):
            report.problems.append(f"{name}: spans two stretches or is out of order")
        t2, v2 = decode(*encode(t, v), len(t))
        if not (np.array_equal(t, t2) and np.array_equal(v.view(np.int64), v2.view(np.int64))):
            report.problems.append(f"{name}: re-encoding does not give the same points")
        lo = _floor(start)  # every minute of the chunk's stretch, rows included
        hi = lo + STRETCH - timedelta(minutes=1)
        span = (lo - timedelta(microseconds=1), lo + STRETCH - timedelta(microseconds=1))
        points = read_points_us(conn, [sid], *span)
        pt, pv = points.get(int(sid), (np.empty(0, np.int64), np.empty(0)))
        minute_of = (pt - to_us(lo)) // 60_000_000
        for bucket, n, total, low, high in conn.execute(_MINUTES, {"s": sid, "lo": lo, "hi": hi}):
            report.minutes += 1
            mine = pv[minute_of == (to_us(bucket) - to_us(lo)) // 60_000_000]
            ok = (
                len(mine) == n
                and len(mine)
                and mine.min() == low
                and mine.max() == high
                and abs(float(mine.sum()) - total) <= 1e-9 * max(1.0, abs(total))
            )
            if not ok:
                report.problems.append(
                    f"{name}: minute {from_us(to_us(bucket)).isoformat()} differs from its rollup"
                )
    return report


# ---------------------------------------------------------------- API timings
API_PACK_AFTER = timedelta(days=1)
_API_FAMILY = FAMILIES[1].name  # "api_timings": its watermark and its advisory lock


@dataclass
class PackReport:
    requests: int = 0
    packs: int = 0
    whole_days: int = 0  # partitions packed whole and truncated
    busy_days: int = 0
    day_packs: int = 0  # sparse keys' days merged into one pack each
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"packed {self.requests} API timings into {self.packs} packs "
            f"({self.whole_days} whole days, {self.busy_days} busy; {self.day_packs} day packs "
            f"of sparse keys) in {self.seconds:.2f}s"
        )


def _half_hour_floor(moment: datetime) -> datetime:
    return _ORIGIN + ((moment - _ORIGIN) // PACK) * PACK


def _insert_packs(
    conn: Connection, rows: str, params: dict[str, object], with_sql: str = "", *, day: bool = False
) -> tuple[int, int]:
    """INSERT the packs of `rows` (a FROM item with the api_timings columns, maybe defined by
    `with_sql`, a WITH clause) in one statement: (requests, packs) written."""
    statement = (
        f"{with_sql}INSERT INTO api_timing_packs ({PACK_NAMES}, packed_at) "  # noqa: S608
        f"SELECT {PACK_NAMES}, clock_timestamp() FROM ({pack_columns_sql(rows, day=day)}) packed "
        "RETURNING count"
    )
    counts = conn.execute(text(statement), params).scalars().all()
    return int(sum(counts)), len(counts)


def pack_day(conn: Connection, day: date, watermark: datetime) -> tuple[int, int] | None:
    """Pack a whole past day's `api_timings` partition and TRUNCATE it (caller commits):
    (requests, packs), or None when it holds rows the API rollup has not passed yet."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": rollup_lock_key(_API_FAMILY)})
    partition = partition_name("api_timings", day)  # our own identifier
    conn.execute(text(f'LOCK TABLE "{partition}" IN ACCESS EXCLUSIVE MODE'))
    if conn.execute(
        text(f'SELECT EXISTS (SELECT 1 FROM "{partition}" WHERE ingested_at > :w)'),  # noqa: S608
        {"w": watermark},
    ).scalar():
        return None
    conn.execute(text("SET LOCAL work_mem = '256MB'"))
    done = _insert_packs(conn, f'"{partition}"', {})
    conn.execute(text(f'TRUNCATE "{partition}"'))
    return done


def pack_before(conn: Connection, until: datetime, watermark: datetime) -> tuple[int, int]:
    """Pack the rows with time before `until` that the API rollup has passed, deleting them in
    the same statement (caller commits): (requests, packs)."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": rollup_lock_key(_API_FAMILY)})
    conn.execute(text("SET LOCAL work_mem = '256MB'"))
    taken = (
        "WITH d AS (DELETE FROM api_timings WHERE time < :until AND ingested_at <= :w "  # noqa: S608
        f"RETURNING {', '.join(TIMING_COLUMNS)}) "
    )
    return _insert_packs(conn, "d", {"until": until, "w": watermark}, taken)


# The sparse keys' half-hour packs of past days (packs per key and day, requests per pack).
_SPARSE_DAYS = text(
    """
    SELECT d FROM (
        SELECT date_bin('1 day', start_time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS d,
               count(*) AS n, sum(count) AS c
        FROM api_timing_packs
        WHERE slots IS NULL AND start_time >= :since AND start_time < :until
        GROUP BY 1, method, endpoint, status_code
    ) k WHERE n > 1 AND c < :sparse * n GROUP BY d ORDER BY d
    """
)


def repack_sparse_day(conn: Connection, day_start: datetime) -> tuple[int, int]:
    """Merge the half-hour packs of one past day's sparse keys (fewer than `SPARSE` requests
    per pack on average) into one day pack per key, in one statement (caller commits):
    (requests, day packs written). The reads (`chunks.timings.source_sql`) give the same rows
    before and after; a key with one pack in the day, or already in a day pack, is left."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": rollup_lock_key(_API_FAMILY)})
    conn.execute(text("SET LOCAL work_mem = '256MB'"))
    in_day = "p.start_time >= :lo AND p.start_time < :hi AND p.slots IS NULL"
    taken = (
        "WITH k AS (SELECT method, endpoint, status_code FROM api_timing_packs p "  # noqa: S608
        f"WHERE {in_day} GROUP BY 1, 2, 3 HAVING count(*) > 1 AND sum(count) < :sparse * count(*)), "
        f"d AS (DELETE FROM api_timing_packs p USING k WHERE {in_day} AND p.method = k.method "
        "AND p.endpoint = k.endpoint AND p.status_code = k.status_code RETURNING p.*), "
        f"r AS ({unpacked_sql('d')}) "
    )
    params = {"lo": day_start, "hi": day_start + timedelta(days=1), "sparse": SPARSE}
    return _insert_packs(conn, "r", params, taken, day=True)


def repack_sparse_days(engine: Engine, until: datetime, max_days: int = MAX_DAYS) -> int:
    """Day packs for the sparse keys of the days wholly before `until` (the last `max_days`
    of them), a transaction per day: day packs written."""
    until_day = _ORIGIN + ((until - _ORIGIN) // timedelta(days=1)) * timedelta(days=1)
    with engine.connect() as conn:
        days = list(
            conn.execute(
                _SPARSE_DAYS,
                {"since": until_day - timedelta(days=max_days), "until": until_day,
                 "sparse": SPARSE},
            ).scalars()
        )  # fmt: skip
    written = 0
    for day_start in days:
        with engine.begin() as conn:
            written += repack_sparse_day(conn, day_start)[1]
    return written


def pack_api_timings(
    engine: Engine,
    now: datetime,
    *,
    after: timedelta = API_PACK_AFTER,
    max_days: int = MAX_DAYS,
    repack: bool = True,
) -> PackReport:
    """Pack the API timings older than `after` that the API rollup has passed: whole past days
    at once (their partition truncated), then the rest of the stretch before the horizon;
    then (`repack`) the half-hour packs of sparse keys of the days wholly before the horizon
    become one day pack per key (`repack_sparse_days`).

    Safe like `compact`: each transaction takes the API rollup's advisory lock (so two workers,
    or a worker and a rollup, go one at a time), rows are deleted and their pack inserted in
    one statement or one transaction (a crash loses and doubles nothing), and only rows the
    rollup has passed are taken (re-running packs nothing new). A late request landing in a
    packed half hour stays a row until the next pass packs it into a second pack of that key;
    every read (`chunks.timings.source_sql`) sees both, and the rollup recomputes its minute
    from both."""
    started, report = time.perf_counter(), PackReport()
    with engine.connect() as conn:
        watermark = conn.execute(
            text("SELECT watermark FROM rollup_watermarks WHERE name = :n"), {"n": _API_FAMILY}
        ).scalar()
        if watermark is None:
            return report
        until = _half_hour_floor(min(now - after, watermark))
        days = _days_to_truncate(conn, until, "api_timings")
    for day in days[:max_days]:
        try:
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '10s'"))
                done = pack_day(conn, day, watermark)
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
                raise
            report.busy_days += 1
            continue
        if done is not None:
            report.whole_days += 1
            report.requests += done[0]
            report.packs += done[1]
    with engine.begin() as conn:
        requests, packs = pack_before(conn, until, watermark)
    report.requests += requests
    report.packs += packs
    if repack:  # sparse keys' past days into day packs
        report.day_packs = repack_sparse_days(engine, until, max_days)
    report.seconds = time.perf_counter() - started
    return report
