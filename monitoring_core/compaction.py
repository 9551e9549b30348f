"""Compaction: raw metric points older than the horizon become compressed series chunks.

Once the metric rollups have passed a stretch of raw points and it is older than
`COMPACT_AFTER` (2 h), each series' points of that stretch (`STRETCH`, 2 h aligned to
2000-01-01 UTC, so a stretch never straddles a day) are encoded into one `metric_chunks` row
(chunks/codec.py: delta-of-delta timestamps, decimal or XOR values, zstd; lossless) and the
rows are deleted. `points_reader.read_points` reads both forms.

Safety:
- **Crash**: one transaction per batch of series of one stretch, doing `DELETE … RETURNING`
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

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import Connection, Engine, text

from monitoring_core.chunks.store import (
    Chunk,
    delete_chunks,
    insert_chunks,
    lock_chunks,
    rows_from_packed,
)
from monitoring_core.rollups import FAMILIES, rollup_lock_key

__all__ = [
    "COMPACT_AFTER",
    "STRETCH",
    "CompactionReport",
    "compact",
    "compact_batch",
    "compactable_until",
    "pending_stretches",
]

COMPACT_AFTER = timedelta(hours=2)
STRETCH = timedelta(hours=2)
BATCH_SERIES = 500
MAX_STRETCHES = 48  # per run: a backlog (first run after an upgrade) catches up over runs
_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
_FAMILY = FAMILIES[0].name  # "metric_points": its watermark and its advisory lock

_COMPACT = text(
    """
    WITH d AS (
        DELETE FROM metric_points
        WHERE series_id = ANY(:ids) AND time >= :lo AND time < :hi AND ingested_at <= :w
        RETURNING series_id, time, value
    )
    SELECT series_id,
           string_agg(timestamptz_send(time), ''::bytea ORDER BY time, value) AS t,
           string_agg(float8send(value), ''::bytea ORDER BY time, value) AS v
    FROM d GROUP BY series_id
    """
)


@dataclass
class CompactionReport:
    stretches: int = 0
    series: int = 0
    points: int = 0
    chunks: int = 0
    merged: int = 0  # chunks rewritten with late points
    seconds: float = 0.0
    pending: list[datetime] = field(default_factory=list)  # stretches left for the next run

    def summary(self) -> str:
        rate = self.points / self.seconds if self.seconds else 0.0
        left = f", {len(self.pending)} stretches left" if self.pending else ""
        return (
            f"compacted {self.points} points of {self.series} series-stretches into "
            f"{self.chunks} chunks ({self.merged} merged) in {self.seconds:.2f}s "
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
    conn: Connection, series_ids: Sequence[int], lo: datetime, watermark: datetime
) -> tuple[int, int, int]:
    """Compact the stretch [lo, lo + STRETCH) of these series (caller commits):
    (points taken from rows, chunks written, chunks merged)."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": rollup_lock_key(_FAMILY)})
    hi = lo + STRETCH
    params = {"ids": list(series_ids), "lo": lo, "hi": hi, "w": watermark}
    taken = {int(sid): rows_from_packed(t, v) for sid, t, v in conn.execute(_COMPACT, params).all()}
    if not taken:
        return 0, 0, 0
    old = lock_chunks(conn, sorted(taken), lo, hi)
    for chunk in old:
        taken[chunk.series_id] = _concat(taken[chunk.series_id], chunk.points())
    delete_chunks(conn, old)
    new = [Chunk.of(sid, t, v) for sid, (t, v) in sorted(taken.items())]
    insert_chunks(conn, new)
    return sum(len(t) for t, _ in taken.values()) - sum(c.count for c in old), len(new), len(old)


def _concat(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple:
    return np.concatenate((a[0], b[0])), np.concatenate((a[1], b[1]))


def compact(
    engine: Engine,
    now: datetime,
    *,
    after: timedelta = COMPACT_AFTER,
    batch_series: int = BATCH_SERIES,
    max_stretches: int = MAX_STRETCHES,
) -> CompactionReport:
    """Compact every stretch the rollups have passed and older than `after`, oldest first."""
    started, report = time.perf_counter(), CompactionReport()
    with engine.connect() as conn:
        watermark = rollup_watermark(conn)
        until = compactable_until(now, watermark, after)
        if watermark is None or until is None:
            return report
        stretches = pending_stretches(conn, until, watermark)
    report.pending = stretches[max_stretches:]
    for lo in stretches[:max_stretches]:
        with engine.connect() as conn:
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
        for i in range(0, len(ids), batch_series):
            with engine.begin() as conn:
                points, chunks, merged = compact_batch(
                    conn, ids[i : i + batch_series], lo, watermark
                )
            report.points += points
            report.chunks += chunks
            report.merged += merged
            report.series += chunks
    report.seconds = time.perf_counter() - started
    return report
