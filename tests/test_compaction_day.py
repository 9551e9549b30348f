"""Whole-day compaction in batches (compaction.compact_day): the partition read once in time
windows or series-id ranges, all series encoded at once (chunks.batch.encode_many, the
codec's bytes exactly), a crash between batches losing and doubling nothing."""

from __future__ import annotations

import random
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, text

from monitoring_core import compaction
from monitoring_core.chunks.batch import encode_many
from monitoring_core.chunks.codec import encode
from monitoring_core.compaction import compact
from monitoring_core.partitions import partition_name
from monitoring_core.points_reader import read_points
from monitoring_core.rollups import run_rollups


# ---------------------------------------------------------------- encode_many (pure)
def _random_chunk(rng: np.random.Generator, kind: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    base = 1_767_225_600_000_000 + int(rng.integers(0, 10**10))
    step = [15_000_000, 15_000_000, 1_000, 1][kind % 4]
    t = base + np.cumsum(rng.integers(0, 3, n) * step + (kind % 3 == 1) * rng.integers(-40, 40, n))
    values = [
        np.cumsum(rng.poisson(20, n)).astype(np.float64),  # counter
        np.round(rng.normal(50, 10, n), 2),  # two decimals
        rng.normal(0, 1e6, n),  # every bit noisy
        np.round(rng.normal(0, 1, n), 9) * 1e12,  # decimals beyond 2**53 when scaled
    ][kind % 4]
    if kind % 5 == 0:
        values[int(rng.integers(0, n))] = rng.choice([np.nan, np.inf, -0.0])
    order = np.lexsort((values, t))
    return t[order], values[order]


def test_encode_many_gives_the_codecs_bytes_exactly() -> None:
    rng = np.random.default_rng(16)
    chunks = [
        _random_chunk(rng, kind, n)
        for kind in range(20)
        for n in (1, 2, 3, 17, 120, 120, 121, int(rng.integers(4, 700)))
    ]
    times = np.concatenate([t for t, _ in chunks])
    values = np.concatenate([v for _, v in chunks])
    ends = np.cumsum([len(t) for t, _ in chunks])
    starts = ends - [len(t) for t, _ in chunks]
    assert encode_many(times, values, starts, ends) == [encode(t, v) for t, v in chunks]
    with pytest.raises(ValueError):
        encode_many(times, values, np.array([3]), np.array([3]))


# ---------------------------------------------------------------- a day on Postgres
def _day_of(now: datetime) -> date:
    """The day before yesterday: past the compaction horizon at any instant of today."""
    return (now - timedelta(days=2)).astimezone(UTC).date()


def _load_day(engine: Engine, now: datetime, *, series: int, time_order: bool) -> list[int]:
    """A past day of points (15 s, jitter, a few instants twice, some noisy values) written in
    time order (as live ingest writes) or series by series (as a bulk load), then ANALYZEd."""
    day = _day_of(now)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    rng = random.Random(series * 7 + time_order)
    with engine.begin() as conn:
        ids = [
            int(
                conn.execute(
                    text(
                        "INSERT INTO metric_series (name, dimensions) VALUES ('day_metric', "
                        "jsonb_build_object('i', CAST(:i AS text))) RETURNING id"
                    ),
                    {"i": i},
                ).scalar_one()
            )
            for i in range(series)
        ]
        rows = []
        for sid in ids:
            moment = start + timedelta(milliseconds=rng.randint(0, 14_999))
            while moment < start + timedelta(days=1):
                value = rng.choice([float(rng.randint(0, 999)), round(rng.gauss(5, 2), 2)])
                rows.append((moment, sid, value if sid % 3 else rng.gauss(0, 1e6)))
                if rng.random() < 0.01:
                    rows.append((moment, sid, value - 1))
                moment += timedelta(seconds=15, milliseconds=rng.randint(-30, 30))
        if time_order:
            rows.sort(key=lambda r: r[0])
        conn.execute(
            text(
                "INSERT INTO metric_points (time, series_id, value, ingested_at) "
                "SELECT t, s, v, t + interval '1 second' FROM unnest(CAST(:t AS timestamptz[]), "
                "CAST(:s AS bigint[]), CAST(:v AS float8[])) AS r(t, s, v)"
            ),
            {"t": [r[0] for r in rows], "s": [r[1] for r in rows], "v": [r[2] for r in rows]},
        )
    with engine.connect() as conn:
        conn.execute(text(f'ANALYZE "{partition_name("metric_points", day)}"'))
        conn.commit()
    return ids


def _everything(engine: Engine, ids: list[int], now: datetime) -> dict[int, Any]:
    with engine.connect() as conn:
        points = read_points(conn, ids, now - timedelta(days=3), now)
    return {sid: (t.tolist(), [float(x).hex() for x in v]) for sid, (t, v) in points.items()}


def _counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM metric_points), "
                    "(SELECT count(*) FROM metric_chunks), "
                    "(SELECT coalesce(sum(count), 0) FROM metric_chunks)"
                )
            ).one()
        )  # type: ignore[return-value]


@pytest.mark.parametrize("time_order", [True, False], ids=["time-ordered", "series-ordered"])
def test_a_day_in_batches_survives_a_crash_between_batches(
    engine: Engine, now: datetime, monkeypatch: pytest.MonkeyPatch, time_order: bool
) -> None:
    ids = _load_day(engine, now, series=6, time_order=time_order)
    before = _everything(engine, ids, now)
    rows, _, _ = _counts(engine)
    run_rollups(engine, now, safety_lag=timedelta(0))
    monkeypatch.setattr(compaction, "DAY_BATCH_ROWS", 9_000)  # ~4 batches of the ~34,600 rows
    batches: list[list[tuple[str, dict[str, Any]]]] = []
    real_batches, real_chunks_of = compaction._day_batches, compaction._chunks_of
    monkeypatch.setattr(
        compaction, "_day_batches", lambda *a: batches.append(real_batches(*a)) or batches[-1]
    )
    calls: list[int] = []

    def dies_on_the_third_batch(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("worker killed in the middle of the day")
        return real_chunks_of(*args)

    with monkeypatch.context() as patch:
        patch.setattr(compaction, "_chunks_of", dies_on_the_third_batch)
        with pytest.raises(RuntimeError):
            compact(engine, now, max_stretches=0)
    assert _counts(engine) == (rows, 0, 0)  # nothing written, nothing deleted
    assert _everything(engine, ids, now) == before
    kind = "time >=" if time_order else "series_id BETWEEN"
    assert len(batches[0]) >= 3 and all(kind in condition for condition, _ in batches[0])

    report = compact(engine, now, max_stretches=0)
    assert report.whole_days == 1 and report.points == rows
    left, chunks, points = _counts(engine)
    assert (left, points) == (0, rows)  # nothing lost, nothing doubled
    with engine.connect() as conn:  # one chunk per series and 2-hour stretch, in one stretch
        assert (
            conn.execute(
                text(
                    "SELECT count(DISTINCT (series_id, date_bin('2 hours', start_time, "
                    "TIMESTAMPTZ '2000-01-01 00:00:00+00'))) FILTER (WHERE date_bin('2 hours', "
                    "start_time, TIMESTAMPTZ '2000-01-01 00:00:00+00') = date_bin('2 hours', "
                    "end_time, TIMESTAMPTZ '2000-01-01 00:00:00+00')) FROM metric_chunks"
                )
            ).scalar_one()
            == chunks
        )
    assert _everything(engine, ids, now) == before
    assert compact(engine, now, max_stretches=0).points == 0  # idempotent

    # Rows in two compacted stretches the rollups count as passed (as `expand_touched` leaves
    # them): merged with their stretch's chunk.
    day = _day_of(now)
    late = [datetime(day.year, day.month, day.day, h, 7, 1, tzinfo=UTC) for h in (3, 17)]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO metric_points (time, series_id, value, ingested_at) "
                "VALUES (:t, :s, 0.5, :i)"
            ),
            [{"t": t, "s": ids[1], "i": now - timedelta(hours=1)} for t in late],
        )
    merged = compact(engine, now, max_stretches=0)
    assert merged.whole_days == 1 and merged.merged == 2
    assert _counts(engine) == (0, chunks, rows + 2)
    after = _everything(engine, ids, now)
    assert after[ids[1]][0].count(late[0].timestamp()) >= 1 and (0.5).hex() in after[ids[1]][1]
    assert {k: v for k, v in after.items() if k != ids[1]} == {
        k: v for k, v in before.items() if k != ids[1]
    }


def test_stretches_of_a_time_ordered_day_go_every_series_at_once(
    engine: Engine, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stretch path (today's stretches) on a partition in time order: one DELETE per
    stretch for every series; a crash in the second stretch keeps the first and loses
    nothing; two workers double nothing."""
    ids = _load_day(engine, now, series=4, time_order=True)
    before = _everything(engine, ids, now)
    rows, _, _ = _counts(engine)
    run_rollups(engine, now, safety_lag=timedelta(0))
    taken: list[Any] = []
    real_batch, real_insert = compaction.compact_batch, compaction.insert_chunks
    monkeypatch.setattr(
        compaction,
        "compact_batch",
        lambda conn, sids, *a: taken.append(sids) or real_batch(conn, sids, *a),
    )

    def dies_on_the_second(conn: Any, chunks: Any) -> None:
        if len(taken) == 2:
            raise RuntimeError("worker killed in the second stretch")
        real_insert(conn, chunks)

    with monkeypatch.context() as patch:
        patch.setattr(compaction, "insert_chunks", dies_on_the_second)
        with pytest.raises(RuntimeError):
            compact(engine, now, max_days=0, max_stretches=2, workers=1)
    left, chunks, points = _counts(engine)
    assert taken[:2] == [None, None] and chunks == 4 and left + points == rows
    assert _everything(engine, ids, now) == before

    errors: list[BaseException] = []

    def worker() -> None:
        try:
            compact(engine, now, max_days=0, max_stretches=100)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    left, chunks, points = _counts(engine)
    assert (left, points) == (0, rows) and chunks == 4 * 12
    assert _everything(engine, ids, now) == before
