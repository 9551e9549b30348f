"""Compressed series chunks: a lossless codec, and compaction that is idempotent, crash-safe,
safe with two workers, merges late points, and leaves every raw read's answer unchanged."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text

from monitoring_core import compaction
from monitoring_core.chunks.codec import decode, encode
from monitoring_core.compaction import STRETCH, compact, compactable_until
from monitoring_core.points_reader import read_points
from monitoring_core.rollups import run_rollups
from tests.rollup_fixtures import add_points, add_series

EPOCH_US = 1_767_225_600_000_000  # 2026-01-01


# ---------------------------------------------------------------- codec (pure)
@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10**12),
            st.one_of(
                st.floats(allow_nan=True, allow_infinity=True),
                st.integers(min_value=-(10**9), max_value=10**9).map(float),
                st.integers(min_value=-(10**6), max_value=10**6).map(lambda i: i / 100),
            ),
        ),
        min_size=1,
        max_size=300,
    )
)
def test_codec_round_trip_is_bit_exact(points: list[tuple[int, float]]) -> None:
    t = np.array([EPOCH_US + p[0] for p in points], dtype=np.int64)
    v = np.array([p[1] for p in points], dtype=np.float64)
    order = np.lexsort((v, t))
    times, vals = encode(t, v)
    t2, v2 = decode(times, vals, len(t))
    assert t2.tolist() == t[order].tolist()
    assert v2.view(np.int64).tolist() == v[order].view(np.int64).tolist()


def test_codec_sizes_regular_scrapes() -> None:
    n = 480
    t = EPOCH_US + np.arange(n, dtype=np.int64) * 15_000_000
    counter = np.cumsum(np.random.default_rng(1).poisson(40, n)).astype(np.float64)
    times, vals = encode(t, counter)
    assert len(times) < 40  # deltas of deltas are all zero
    assert (len(times) + len(vals)) / n < 2.0


def test_codec_refuses_a_wrong_count() -> None:
    times, vals = encode(np.array([EPOCH_US, EPOCH_US + 1]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        decode(times, vals, 3)


# ---------------------------------------------------------------- compaction on Postgres
_ROW_READ = text(  # today's row read, the reference the points reader must equal
    "SELECT p.series_id, array_agg(date_part('epoch', p.time) ORDER BY p.time, p.value), "
    "array_agg(p.value ORDER BY p.time, p.value) FROM metric_points p "
    "WHERE p.series_id = ANY(:ids) AND p.time > :s AND p.time <= :e GROUP BY p.series_id"
)


def _row_read(conn: Any, ids: list[int], start: datetime, end: datetime) -> dict[int, Any]:
    return {
        sid: (list(ts), [float(x).hex() for x in vs])
        for sid, ts, vs in conn.execute(_ROW_READ, {"ids": ids, "s": start, "e": end})
    }


def _reader(conn: Any, ids: list[int], start: datetime, end: datetime) -> dict[int, Any]:
    return {
        sid: (t.tolist(), [float(x).hex() for x in v])
        for sid, (t, v) in read_points(conn, ids, start, end).items()
    }


def _random_points(rng: random.Random, now: datetime, hours: int) -> list[tuple[datetime, float]]:
    start = now - timedelta(hours=hours)
    kind = rng.choice(["regular", "jitter", "random"])
    points = []
    moment = start
    while moment < now - timedelta(minutes=1):
        if kind == "regular":
            step = timedelta(seconds=15)
        elif kind == "jitter":
            step = timedelta(seconds=15, milliseconds=rng.randint(-40, 40))
        else:
            step = timedelta(microseconds=rng.randint(1, 90_000_000))
        moment += step
        value = rng.choice(
            [
                float(rng.randint(0, 10**6)),
                round(rng.gauss(50, 10), 2),
                rng.gauss(0, 1e6),
                rng.random(),
            ]
        )
        points.append((moment, value))
        if rng.random() < 0.02:  # two points at one instant
            points.append((moment, value + 1))
    return points


def _load(engine: Engine, now: datetime, series: int, hours: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    ids = []
    with engine.begin() as conn:
        for i in range(series):
            sid = add_series(conn, "diff_metric", {"i": str(i)})
            ids.append(sid)
            points = _random_points(rng, now, hours)
            # ingested a second after the point, like a live scrape
            for j in range(0, len(points), 500):
                part = points[j : j + 500]
                add_points(conn, sid, part, ingested_at=part[-1][0] + timedelta(seconds=1))
    return ids


def _roll(engine: Engine, now: datetime) -> None:
    run_rollups(engine, now, safety_lag=timedelta(0))


def _spans(rng: random.Random, now: datetime, hours: int) -> list[tuple[datetime, datetime]]:
    spans = [(now - timedelta(hours=hours + 1), now), (now - timedelta(hours=3), now)]
    for _ in range(8):
        a = now - timedelta(seconds=rng.uniform(0, hours * 3600))
        b = a + timedelta(seconds=rng.uniform(1, 4 * 3600))
        spans.append((a, b))
    return spans


def _chunk_count(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        chunks = conn.execute(text("SELECT count(*), coalesce(sum(count), 0) FROM metric_chunks"))
        return tuple(chunks.one())  # type: ignore[return-value]


def test_points_reader_equals_row_reads_on_random_data(engine: Engine, now: datetime) -> None:
    hours = 12
    ids = _load(engine, now, series=6, hours=hours, seed=16)
    spans = _spans(random.Random(7), now, hours)
    with engine.connect() as conn:
        before = [_row_read(conn, ids, a, b) for a, b in spans]
        total = conn.execute(text("SELECT count(*) FROM metric_points")).scalar_one()
        assert [_reader(conn, ids, a, b) for a, b in spans] == before
    _roll(engine, now)
    report = compact(engine, now)
    assert report.points > 0 and report.chunks > 0
    chunks, chunked_points = _chunk_count(engine)
    with engine.connect() as conn:
        rows_left = conn.execute(text("SELECT count(*) FROM metric_points")).scalar_one()
        assert rows_left + chunked_points == total  # nothing lost, nothing doubled
        assert (
            conn.execute(
                text("SELECT count(*) FROM metric_points WHERE time < :h"),
                {"h": compactable_until(now, now)},
            ).scalar_one()
            == 0
        )
        assert [_reader(conn, ids, a, b) for a, b in spans] == before
    # Idempotent: a second pass finds nothing to do and changes nothing.
    again = compact(engine, now)
    assert (again.points, again.chunks) == (0, 0)
    assert _chunk_count(engine) == (chunks, chunked_points)


def test_late_points_are_merged_without_loss(engine: Engine, now: datetime) -> None:
    ids = _load(engine, now, series=2, hours=8, seed=3)
    _roll(engine, now)
    compact(engine, now)
    late_at = now - timedelta(hours=6, minutes=30, seconds=7)
    minute = late_at.replace(second=0, microsecond=0)
    with engine.begin() as conn:
        minute_before = (
            conn.execute(
                text("SELECT count FROM metric_rollup_1m WHERE series_id = :s AND bucket = :b"),
                {"s": ids[0], "b": minute},
            ).scalar_one_or_none()
            or 0
        )
        add_points(
            conn,
            ids[0],
            [(late_at, 123.25), (late_at, 123.25)],
            ingested_at=now + timedelta(milliseconds=500),
        )
    spans = _spans(random.Random(11), now, 8)
    with engine.connect() as conn:
        seen = [_reader(conn, ids, a, b) for a, b in spans]  # chunk + late rows
        assert 123.25 in [float.fromhex(x) for x in _reader(conn, [ids[0]], minute, now)[ids[0]][1]]
    # The rollup turns the touched chunk back into rows and counts every point of the minute.
    _roll(engine, now + timedelta(seconds=1))
    with engine.connect() as conn:
        rolled = conn.execute(
            text("SELECT count FROM metric_rollup_1m WHERE series_id = :s AND bucket = :b"),
            {"s": ids[0], "b": minute},
        ).scalar_one()
        assert rolled == minute_before + 2
        assert [_reader(conn, ids, a, b) for a, b in spans] == seen
    report = compact(engine, now + timedelta(seconds=1))
    assert report.points > 0
    with engine.connect() as conn:
        assert [_reader(conn, ids, a, b) for a, b in spans] == seen
        assert (
            conn.execute(
                text("SELECT count(*) FROM metric_points WHERE time < :h"),
                {"h": now - 2 * STRETCH},
            ).scalar_one()
            == 0
        )


def test_a_failure_between_delete_and_insert_loses_nothing(
    engine: Engine, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _load(engine, now, series=3, hours=6, seed=5)
    _roll(engine, now)
    with engine.connect() as conn:
        before = _row_read(conn, ids, now - timedelta(hours=7), now)
    calls = []

    def failing_insert(conn: Any, chunks: Any) -> None:
        calls.append(len(chunks))
        raise RuntimeError("worker killed between the DELETE and the INSERT")

    monkeypatch.setattr(compaction, "insert_chunks", failing_insert)
    with pytest.raises(RuntimeError):
        compact(engine, now)
    assert calls  # the rows had been deleted in that transaction when it failed
    assert _chunk_count(engine) == (0, 0)
    with engine.connect() as conn:
        assert _row_read(conn, ids, now - timedelta(hours=7), now) == before
    monkeypatch.undo()
    compact(engine, now)
    with engine.connect() as conn:
        assert _reader(conn, ids, now - timedelta(hours=7), now) == before


def test_two_workers_compact_at_once_without_doubling(engine: Engine, now: datetime) -> None:
    ids = _load(engine, now, series=8, hours=10, seed=9)
    _roll(engine, now)
    with engine.connect() as conn:
        before = _row_read(conn, ids, now - timedelta(hours=11), now)
        total = conn.execute(text("SELECT count(*) FROM metric_points")).scalar_one()
    barrier, errors = threading.Barrier(2), []

    def worker() -> None:
        try:
            barrier.wait()
            compact(engine, now, batch_series=3)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with engine.connect() as conn:
        rows_left = conn.execute(text("SELECT count(*) FROM metric_points")).scalar_one()
        dup = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT series_id, date_bin('2 hours', start_time, "
                "TIMESTAMPTZ '2000-01-01 00:00:00+00') FROM metric_chunks GROUP BY 1, 2 "
                "HAVING count(*) > 1) x"
            )
        ).scalar_one()
        assert dup == 0
        assert _reader(conn, ids, now - timedelta(hours=11), now) == before
    assert rows_left + _chunk_count(engine)[1] == total


def test_nothing_is_compacted_before_the_rollups_pass(engine: Engine, now: datetime) -> None:
    _load(engine, now, series=1, hours=6, seed=1)
    assert compact(engine, now).points == 0  # no rollup watermark yet
    assert compactable_until(now, None) is None
    old_watermark = now - timedelta(hours=5)
    assert compactable_until(now, old_watermark) <= old_watermark
    assert compactable_until(now, now) <= now - compaction.COMPACT_AFTER
    assert compactable_until(now, now).tzinfo is not None
    assert compactable_until(datetime(2026, 1, 1, 3, 5, tzinfo=UTC), None) is None


def test_alert_raw_window_and_live_points_are_unchanged_by_compaction(
    engine: Engine, now: datetime
) -> None:
    from monitoring_core.alerts.raw import read_raw
    from monitoring_core.metrics_query import live_points

    _load(engine, now, series=4, hours=8, seed=21)

    def reads() -> tuple[Any, ...]:
        with engine.connect() as conn:
            since = {"diff_metric": now - timedelta(hours=7), "absent": now - timedelta(hours=1)}
            raw = read_raw(conn, since, now=now, limit=1_000_000)
            over = read_raw(conn, since, now=now, limit=10)
            metric = raw["diff_metric"]
            assert metric is not None and len(metric.t) > 10
            order = np.lexsort((metric.v, metric.t, metric.s))
            dims = [metric.dims[i]["i"] for i in metric.s[order]]
            live = live_points(conn, "diff_metric", timedelta(hours=6), now=now, limit=5_000)
            return (
                metric.t[order].tolist(),
                metric.v[order].tolist(),
                dims,
                over["diff_metric"],
                len(raw["absent"].t),  # type: ignore[union-attr]
                live["time"].tolist(),
                live["value"].tolist(),
                live["series_id"].tolist(),
            )

    before = reads()
    _roll(engine, now)
    assert compact(engine, now).points > 0
    assert reads() == before


def test_retention_keeps_chunks_their_setting_then_deletes_them(
    engine: Engine, now: datetime
) -> None:
    from monitoring_core.retention import (
        DEFAULT_RETENTION_DAYS,
        FOREVER_DAYS,
        merge_retention,
        prune_chunks,
    )

    assert DEFAULT_RETENTION_DAYS["metric_chunks"] == 30
    assert DEFAULT_RETENTION_DAYS["rollup_1h"] == DEFAULT_RETENTION_DAYS["rollup_6h"] == 395
    assert DEFAULT_RETENTION_DAYS["rollup_1d"] == FOREVER_DAYS
    assert merge_retention({"metric_chunks": 7})["metric_chunks"] == 7
    _load(engine, now, series=2, hours=8, seed=4)
    _roll(engine, now)
    compact(engine, now)
    chunks, _ = _chunk_count(engine)
    assert chunks >= 4
    with engine.begin() as conn:
        newest_compacted = conn.execute(text("SELECT max(end_time) FROM metric_chunks")).scalar()
        assert prune_chunks(conn, now - timedelta(hours=8)) == 0
        # chunks ending before the cutoff go, the rest stay
        cut = newest_compacted - timedelta(minutes=1)
        gone = prune_chunks(conn, cut)
        assert 0 < gone < chunks
        assert (
            conn.execute(
                text("SELECT count(*) FROM metric_chunks WHERE end_time < :c"), {"c": cut}
            ).scalar_one()
            == 0
        )


def test_newest_point_of_a_stopped_series_is_found_in_chunks(engine: Engine, now: datetime) -> None:
    from monitoring_core.alerts.last_seen import newest_points

    _load(engine, now, series=3, hours=9, seed=8)
    with engine.begin() as conn:  # one series stopped 5 h ago
        conn.execute(
            text("DELETE FROM metric_points WHERE series_id = 1 AND time > :t"),
            {"t": now - timedelta(hours=5)},
        )
    instants = [now, now - timedelta(hours=5, minutes=30), now - timedelta(hours=7, seconds=13)]

    def seen() -> list[Any]:
        with engine.connect() as conn:
            return [
                sorted(
                    (d["i"], t)
                    for d, t in newest_points(conn, names=["diff_metric"], now=at)["diff_metric"]
                )
                for at in instants
            ]

    before = seen()
    assert before[0][0][1] <= now - timedelta(hours=5)
    _roll(engine, now)
    assert compact(engine, now).chunks > 0
    assert seen() == before


def test_a_past_day_is_compacted_whole_and_its_partition_truncated(
    engine: Engine, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitoring_core.partitions import partition_name

    hours = 40
    ids = _load(engine, now, series=3, hours=hours, seed=12)
    spans = _spans(random.Random(5), now, hours)
    yesterday = (now - timedelta(days=1)).astimezone(UTC).date()
    partition = partition_name("metric_points", yesterday)
    size = text(f"SELECT pg_relation_size('{partition}')")
    with engine.connect() as conn:
        before = [_row_read(conn, ids, a, b) for a, b in spans]
        total = conn.execute(text("SELECT count(*) FROM metric_points")).scalar_one()
        assert conn.execute(size).scalar_one() > 0
    _roll(engine, now)

    def failing_truncate(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed before the TRUNCATE")

    with monkeypatch.context() as patch:  # a crash inside the whole-day transaction
        patch.setattr(compaction, "insert_chunks", failing_truncate)
        with pytest.raises(RuntimeError):
            compact(engine, now)
    assert _chunk_count(engine) == (0, 0)
    report = compact(engine, now)
    assert report.whole_days >= 1
    with engine.connect() as conn:  # one chunk per series and stretch
        stretch = "date_bin('2 hours', {}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"
        one_each = text(
            f"SELECT count(*) FROM (SELECT series_id, {stretch.format('start_time')} "  # noqa: S608 - constants
            f"FROM metric_chunks WHERE {stretch.format('start_time')} = "
            f"{stretch.format('end_time')} GROUP BY 1, 2 HAVING count(*) = 1) x"
        )
        chunks_now = conn.execute(text("SELECT count(*) FROM metric_chunks")).scalar_one()
        assert conn.execute(one_each).scalar_one() == chunks_now
    with engine.connect() as conn:
        assert conn.execute(size).scalar_one() == 0  # rows and index pages freed at once
        rows_left = conn.execute(text("SELECT count(*) FROM metric_points")).scalar_one()
        assert rows_left + _chunk_count(engine)[1] == total
        assert [_reader(conn, ids, a, b) for a, b in spans] == before
    # A late point into the truncated day is still taken and merged.
    late_at = datetime(yesterday.year, yesterday.month, yesterday.day, 20, 0, 5, tzinfo=UTC)
    with engine.begin() as conn:
        add_points(conn, ids[1], [(late_at, 7.5)], ingested_at=now + timedelta(seconds=1))
    _roll(engine, now + timedelta(seconds=2))
    compact(engine, now + timedelta(seconds=2))
    with engine.connect() as conn:
        got = _reader(conn, [ids[1]], late_at - timedelta(seconds=1), late_at)
        assert (7.5).hex() in got[ids[1]][1]
        assert conn.execute(size).scalar_one() == 0
        rows_left = conn.execute(text("SELECT count(*) FROM metric_points")).scalar_one()
    assert rows_left + _chunk_count(engine)[1] == total + 1


def test_verify_recomputes_sampled_chunks_against_the_rollups(
    engine: Engine, now: datetime
) -> None:
    from monitoring_core.compaction import verify_chunks

    _load(engine, now, series=3, hours=7, seed=30)
    _roll(engine, now)
    compact(engine, now)
    with engine.connect() as conn:
        report = verify_chunks(conn, sample=50)
    assert report.chunks >= 6 and report.minutes > 100 and report.problems == []
    assert "all agree" in report.summary()
    with engine.begin() as conn:  # a point lost from a chunk is found
        sid, start, count, times, vals = conn.execute(
            text("SELECT series_id, start_time, count, times, vals FROM metric_chunks LIMIT 1")
        ).one()
        t, v = decode(bytes(times), bytes(vals), count)
        t2, v2 = encode(t[:-1], v[:-1])
        conn.execute(
            text(
                "UPDATE metric_chunks SET count = :n, times = :t, vals = :v, end_time = :e "
                "WHERE series_id = :s AND start_time = :st"
            ),
            {"n": count - 1, "t": t2, "v": v2, "s": sid, "st": start,
             "e": datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(t[-2]))},
        )  # fmt: skip
        report = verify_chunks(conn, sample=1_000)
    assert len(report.problems) == 1 and "differs from its rollup" in report.problems[0]


def test_the_cli_compacts_and_verifies(engine: Engine, now: datetime, database_url: str) -> None:
    from tests.test_cli import cli

    _load(engine, now, series=2, hours=6, seed=2)
    _roll(engine, now)
    result = cli("compact", "--verify", "--sample", "20", url=database_url)
    assert result.returncode == 0, result.stderr
    assert "compacted" in result.stdout and "all agree" in result.stdout
    assert _chunk_count(engine)[0] > 0


def test_a_day_whose_partition_stays_locked_is_left_for_the_next_run(
    engine: Engine, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitoring_core.partitions import partition_name

    _load(engine, now, series=1, hours=30, seed=6)
    _roll(engine, now)
    yesterday = (now - timedelta(days=1)).astimezone(UTC).date()
    real_execute = Connection.execute

    def short_timeout(self: Any, statement: Any, *args: Any, **kwargs: Any) -> Any:
        if "lock_timeout" in str(statement):
            statement = text("SET LOCAL lock_timeout = '50ms'")
        return real_execute(self, statement, *args, **kwargs)

    monkeypatch.setattr(Connection, "execute", short_timeout)
    with engine.connect() as holder:  # an ingest transaction that does not end
        holder.execute(
            text(f'LOCK TABLE "{partition_name("metric_points", yesterday)}" IN ROW EXCLUSIVE MODE')
        )
        report = compact(engine, now)
        holder.rollback()
    assert report.busy_days == 1 and report.whole_days == 0
    assert compact(engine, now).whole_days == 1
