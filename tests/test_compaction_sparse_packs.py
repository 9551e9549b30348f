"""Day packs of sparse API timing keys (compaction.repack_sparse_day): a past day's half-hour
packs of a key with few requests merged into one pack with slots; every read gives the same
rows, dense keys keep their half-hour packs, a crash or a second packer changes nothing."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from monitoring_core import compaction
from monitoring_core.chunks.timings import COLUMNS, source_sql
from monitoring_core.compaction import pack_api_timings, repack_sparse_day
from monitoring_core.retention import prune_api_timing_packs
from monitoring_core.rollups import run_rollups

_INSERT = text(
    "INSERT INTO api_timings (time, method, endpoint, status_code, response_time_ms, "
    "user_type, request_id, ingested_at) VALUES (:time, :method, :endpoint, :status, :ms, "
    ":ut, :rid, :time)"
)


def _day_start(now: datetime) -> datetime:
    """The day before yesterday (UTC): wholly past the packing horizon at any instant."""
    day = (now - timedelta(days=2)).astimezone(UTC)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _load(engine: Engine, now: datetime) -> int:
    """A day of timings: sparse keys (~13 requests a half hour, a few with the optional
    columns, ties on time and whole duplicates) and one dense key (~150 a half hour)."""
    rng = random.Random(29)
    start = _day_start(now)
    rows = []
    for endpoint, per_half_hour in (("/s/a", 13), ("/s/b", 13), ("/s/ü", 4), ("/dense", 150)):
        for status in (200, 503) if endpoint == "/s/a" else (200,):
            for _ in range(per_half_hour * 48 // (4 if status == 503 else 1)):
                moment = start + timedelta(microseconds=rng.randrange(86_400_000_000))
                extras = rng.random() < 0.05
                row = {"time": moment, "method": "GET", "endpoint": endpoint, "status": status,
                       "ms": rng.lognormvariate(4, 1), "ut": "guest" if extras else None,
                       "rid": f"r{rng.randrange(10**6)}" if extras else None}  # fmt: skip
                rows.append(row)
                if rng.random() < 0.02:
                    rows += [dict(row), {**row, "ms": row["ms"] + 1}]
    with engine.begin() as conn:
        conn.execute(_INSERT, rows)
    run_rollups(engine, now, safety_lag=timedelta(0))
    return len(rows)


def _read(engine: Engine, lo: datetime, hi: datetime, closed: str) -> list[tuple[Any, ...]]:
    cols = ", ".join(c for c in COLUMNS if c != "ingested_at")
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT {cols} FROM {source_sql(':lo', ':hi', closed=closed)} x"),  # noqa: S608
            {"lo": lo, "hi": hi},
        ).all()
    return sorted((tuple(r) for r in rows), key=repr)


def _spans(now: datetime) -> list[tuple[datetime, datetime, str]]:
    start, rng = _day_start(now), random.Random(5)
    spans = [(start - timedelta(hours=1), now, "left"), (start, start + timedelta(days=1), "right")]
    for _ in range(6):
        lo = start + timedelta(microseconds=rng.randrange(86_400_000_000))
        spans.append((lo, lo + timedelta(minutes=rng.choice([1, 30, 95, 600])), "left"))
        spans.append((lo, lo + timedelta(minutes=rng.choice([1, 45])), "right"))
    return spans


def _packs(engine: Engine, day: bool) -> list[tuple[str, int, int]]:
    """(endpoint, packs, requests) per key of the day's packs (day packs or half-hour packs)."""
    with engine.connect() as conn:
        return [
            tuple(r)  # type: ignore[misc]
            for r in conn.execute(
                text(
                    "SELECT endpoint, count(*), sum(count) FROM api_timing_packs "  # noqa: S608
                    f"WHERE slots IS {'NOT ' if day else ''}NULL "
                    "GROUP BY endpoint, status_code ORDER BY 1, 2"
                )
            )
        ]


def test_sparse_keys_get_day_packs_and_every_read_is_unchanged(
    engine: Engine, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    total = _load(engine, now)
    spans = _spans(now)
    before = [_read(engine, *span) for span in spans]

    # a crash in the middle of the repacking transaction: nothing changes
    with monkeypatch.context() as patch:
        patch.setattr(compaction, "repack_sparse_days", lambda *a, **k: 0)
        packed = pack_api_timings(engine, now)
    assert packed.requests == total and packed.day_packs == 0
    half_hour_sizes = _pack_bytes(engine, "/s/a")
    with engine.connect() as conn, pytest.raises(RuntimeError):
        with conn.begin():
            assert repack_sparse_day(conn, _day_start(now))[1] > 0
            raise RuntimeError("the worker dies before the commit")
    assert _packs(engine, day=True) == []
    assert [_read(engine, *span) for span in spans] == before

    # two packers at once: each day of each sparse key packed once
    reports: list[Any] = []
    threads = [
        threading.Thread(target=lambda: reports.append(pack_api_timings(engine, now)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    day_packs = _packs(engine, day=True)
    assert sum(r.day_packs for r in reports) == len(day_packs) > 0
    assert {e for e, _, _ in day_packs} == {"/s/a", "/s/b", "/s/ü"}  # the dense key is left
    assert all(n == 1 for _, n, _ in day_packs)  # one pack per key and day (the packed days)
    assert {e for e, _, _ in _packs(engine, day=False)} >= {"/dense"}
    assert [_read(engine, *span) for span in spans] == before  # every column, ties included
    with engine.connect() as conn:
        assert conn.execute(text("SELECT sum(count) FROM api_timing_packs")).scalar() == total
    assert pack_api_timings(engine, now).day_packs == 0  # idempotent

    # bytes per request of a sparse key's pack rows (pg_column_size: no index entries, line
    # pointers or page space, which the bench counts): the day pack is under 24 B and far
    # below its half-hour packs
    day_sizes = _pack_bytes(engine, "/s/a")
    assert day_sizes < 24 and day_sizes < half_hour_sizes / 1.5, (half_hour_sizes, day_sizes)

    # retention keeps a day pack until its last request is before the cutoff
    with engine.begin() as conn:
        last = conn.execute(
            text("SELECT max(end_time) FROM api_timing_packs WHERE slots IS NOT NULL")
        ).scalar_one()
        kept = conn.execute(text("SELECT count(*) FROM api_timing_packs")).scalar_one()
        assert prune_api_timing_packs(conn, last) < kept
        assert (
            conn.execute(
                text("SELECT count(*) FROM api_timing_packs WHERE end_time >= :l"), {"l": last}
            ).scalar_one()
            > 0
        )


def _pack_bytes(engine: Engine, endpoint: str) -> float:
    with engine.connect() as conn:
        size, requests = conn.execute(
            text(
                "SELECT sum(pg_column_size(p.*)), sum(count) FROM api_timing_packs p "
                "WHERE endpoint = :e"
            ),
            {"e": endpoint},
        ).one()
    return float(size) / int(requests)
