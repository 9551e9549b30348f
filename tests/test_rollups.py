"""Rollups against exact SQL aggregates on the raw rows: values, late points, idempotence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from monitoring_core import histogram
from monitoring_core.rollups import contiguous_ranges, run_rollups
from tests.rollup_fixtures import (
    add_points,
    add_series,
    add_timings,
    add_vitals,
    random_timings,
    roll_up_now,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def start(now: datetime) -> datetime:
    """Three hours ago, on a whole hour: inside the partitions the test database has."""
    return (now - timedelta(hours=3)).replace(minute=0, second=0)


def _api_rows(engine: Engine, table: str) -> dict[tuple, tuple]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT bucket, method, endpoint, count, sum, min, max, error_count, "  # noqa: S608
                f"client_error_count, hist_keys, hist_counts FROM {table}"
            )
        ).all()
    return {tuple(r[:3]): tuple(r[3:]) for r in rows}


def _exact_api(engine: Engine, unit: str) -> dict[tuple, tuple]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT date_trunc(:u, time, 'UTC'), method, endpoint, count(*), "
                "sum(response_time_ms), min(response_time_ms), max(response_time_ms), "
                "count(*) FILTER (WHERE status_code >= 500), "
                "count(*) FILTER (WHERE status_code BETWEEN 400 AND 499) "
                "FROM api_timings GROUP BY 1, 2, 3"
            ),
            {"u": unit},
        ).all()
    return {tuple(r[:3]): tuple(r[3:]) for r in rows}


def test_it_matches_exact_aggregates(engine: Engine, start: datetime) -> None:
    with engine.begin() as conn:
        add_timings(conn, random_timings(start, minutes=150, per_minute=12))
    roll_up_now(engine)
    for unit, table in [("minute", "api_rollup_1m"), ("hour", "api_rollup_1h"),
                        ("day", "api_rollup_1d")]:  # fmt: skip
        rolled, exact = _api_rows(engine, table), _exact_api(engine, unit)
        assert rolled.keys() == exact.keys(), table
        for key, (count, total, lo, hi, errors, client_errors, keys, counts) in rolled.items():
            e_count, e_sum, e_min, e_max, e_err, e_client = exact[key]
            assert (count, errors, client_errors) == (e_count, e_err, e_client), (table, key)
            assert total == pytest.approx(e_sum) and (lo, hi) == (e_min, e_max)
            # empty counts: one per key (1-minute rows with one entry per request)
            assert (sum(counts) if counts else len(keys)) == count and keys == sorted(keys)


def test_it_keeps_all_endpoint_totals(engine: Engine, start: datetime) -> None:
    with engine.begin() as conn:
        add_timings(conn, random_timings(start, minutes=150, per_minute=12))
    roll_up_now(engine)
    for unit in ("minute", "hour", "day"):
        _check_totals(engine, unit)


def _check_totals(engine: Engine, unit: str) -> None:
    with engine.connect() as conn:
        got = conn.execute(
            text(
                f"SELECT bucket, count, sum, error_count, client_error_count, hist_counts "  # noqa: S608
                f"FROM api_total_1{unit[0]} ORDER BY bucket"
            )
        ).all()
        exact = conn.execute(
            text(
                "SELECT date_trunc(:u, time, 'UTC'), count(*), sum(response_time_ms), "
                "count(*) FILTER (WHERE status_code >= 500), "
                "count(*) FILTER (WHERE status_code BETWEEN 400 AND 499) "
                "FROM api_timings GROUP BY 1 ORDER BY 1"
            ),
            {"u": unit},
        ).all()
    assert [(g[0], g[1], g[3], g[4]) for g in got] == [(e[0], e[1], e[3], e[4]) for e in exact]
    assert [g[2] for g in got] == pytest.approx([e[2] for e in exact])
    assert all(sum(g[5]) == g[1] for g in got)


def test_it_gives_percentiles_within_one_percent_of_percentile_cont(
    engine: Engine, start: datetime
) -> None:
    with engine.begin() as conn:
        add_timings(conn, random_timings(start, minutes=120, per_minute=60, seed=3))
    roll_up_now(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT hist_keys, hist_counts FROM api_rollup_1h WHERE endpoint = '/api/vendors'")
        ).all()
        exact = conn.execute(
            text(
                "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP "
                "(ORDER BY response_time_ms) FROM api_timings WHERE endpoint = '/api/vendors'"
            )
        ).scalar_one()
    keys, counts = histogram.merge(*[(r[0], r[1]) for r in rows])
    for q, expected in zip((0.5, 0.95, 0.99), exact, strict=True):
        assert histogram.quantile(keys, counts, q) == pytest.approx(expected, rel=0.015)


def test_it_includes_late_points_in_old_buckets(engine: Engine, start: datetime) -> None:
    with engine.begin() as conn:
        add_timings(conn, [(start + timedelta(minutes=5), "GET", "/a", 200, 10.0)])
    roll_up_now(engine)
    late = [(start + timedelta(minutes=5, seconds=30), "GET", "/a", 503, 30.0)]
    with engine.begin() as conn:
        add_timings(conn, late)
    roll_up_now(engine)
    rolled = _api_rows(engine, "api_rollup_1m")
    assert rolled[(start + timedelta(minutes=5), "GET", "/a")][:5] == (2, 40.0, 10.0, 30.0, 1)
    assert _api_rows(engine, "api_rollup_1h")[(start, "GET", "/a")][:5] == (2, 40.0, 10.0, 30.0, 1)


def test_it_is_idempotent_when_a_window_is_rolled_again(engine: Engine, start: datetime) -> None:
    with engine.begin() as conn:
        add_timings(conn, random_timings(start, minutes=30, per_minute=5))
    roll_up_now(engine)
    first = (_api_rows(engine, "api_rollup_1m"), _api_rows(engine, "api_rollup_1h"))
    with engine.begin() as conn:
        conn.execute(text("UPDATE rollup_watermarks SET watermark = '1970-01-01Z'"))
    roll_up_now(engine)
    roll_up_now(engine)
    assert (_api_rows(engine, "api_rollup_1m"), _api_rows(engine, "api_rollup_1h")) == first


def test_it_leaves_rows_newer_than_the_safety_lag_for_the_next_run(
    engine: Engine, start: datetime
) -> None:
    with engine.begin() as conn:
        add_timings(conn, [(start, "GET", "/a", 200, 5.0)], ingested_at=start + timedelta(hours=1))
    run_rollups(engine, start + timedelta(hours=1, seconds=10), safety_lag=timedelta(seconds=15))
    assert _api_rows(engine, "api_rollup_1m") == {}
    run_rollups(engine, start + timedelta(hours=1, seconds=20), safety_lag=timedelta(seconds=15))
    assert _api_rows(engine, "api_rollup_1m")[(start, "GET", "/a")][0] == 1


def test_it_keeps_the_last_value_and_histogram_of_metric_points(
    engine: Engine, start: datetime
) -> None:
    with engine.begin() as conn:
        sid = add_series(conn, "queue_depth", {"queue": "email"})
        add_points(conn, sid, [(start + timedelta(seconds=s), v) for s, v in
                               [(50, 7.0), (10, 3.0), (70, 0.0), (130, -2.0), (125, 4.0)]])  # fmt: skip
    roll_up_now(engine)
    with engine.connect() as conn:
        minutes = conn.execute(
            text(
                "SELECT bucket, count, sum, min, max, last, hist_keys FROM metric_rollup_1m "
                "ORDER BY bucket"
            )  # fmt: skip
        ).all()
        hour = conn.execute(text("SELECT count, sum, min, max, last FROM metric_rollup_1h")).one()
    assert [tuple(m[1:6]) for m in minutes] == [
        (2, 10.0, 3.0, 7.0, 7.0), (1, 0.0, 0.0, 0.0, 0.0), (2, 2.0, -2.0, 4.0, -2.0)
    ]  # fmt: skip
    assert minutes[1].hist_keys == [0] and minutes[2].hist_keys[0] < 0
    assert tuple(hour) == (5, 12.0, -2.0, 7.0, -2.0)


def test_it_rolls_web_vitals_per_hour_with_rating_counts(engine: Engine, start: datetime) -> None:
    rows = [
        (start + timedelta(minutes=m), "LCP", v, r, "/venues", "mobile")
        for m, v, r in [(1, 1200.0, "good"), (2, 3000.0, "needs-improvement"), (70, 5000.0, "poor")]
    ]
    with engine.begin() as conn:
        add_vitals(conn, rows)
    roll_up_now(engine)
    with engine.connect() as conn:
        got = conn.execute(
            text(
                "SELECT bucket, count, good, needs_improvement, poor, max "
                "FROM web_vitals_rollup_1h ORDER BY bucket"
            )  # fmt: skip
        ).all()
    assert [tuple(g) for g in got] == [
        (start, 2, 1, 1, 0, 3000.0), (start + timedelta(hours=1), 1, 0, 0, 1, 5000.0)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        ([], []),
        ([0, 1, 2], [(0, 3)]),
        ([0, 4, 20], [(0, 5), (20, 21)]),  # a gap of <= 5 minutes is bridged, 15 is not
        ([2, 0, 1, 1], [(0, 3)]),
        (list(range(0, 30)), [(0, 12), (12, 24), (24, 30)]),  # ranges are at most 12 minutes
    ],
)
def test_it_groups_touched_buckets_into_ranges(minutes: list[int], expected: list) -> None:
    m = timedelta(minutes=1)
    got = contiguous_ranges((T0 + k * m for k in minutes), m, 5 * m, 12 * m)
    assert got == [(T0 + a * m, T0 + b * m) for a, b in expected]


D, H_, M_ = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (T0, T0, []),
        (T0 + 5 * M_, T0 + 50 * M_, [(2, T0 + 5 * M_, T0 + 50 * M_)]),
        (T0, T0 + 2 * H_, [(1, T0, T0 + 2 * H_)]),
        (T0 + 30 * M_, T0 + 2 * H_ + 10 * M_,
         [(2, T0 + 30 * M_, T0 + H_), (1, T0 + H_, T0 + 2 * H_), (2, T0 + 2 * H_, T0 + 2 * H_ + 10 * M_)]),
        (T0 - 90 * M_, T0 + D + 61 * M_,
         [(2, T0 - 90 * M_, T0 - H_), (1, T0 - H_, T0), (0, T0, T0 + D), (1, T0 + D, T0 + D + H_),
          (2, T0 + D + H_, T0 + D + 61 * M_)]),
    ],
)  # fmt: skip
def test_it_cuts_ranges_into_days_hours_and_minutes(
    lo: datetime, hi: datetime, expected: list
) -> None:
    from monitoring_core.rollup_read import segments

    assert segments(lo, hi, [D, H_, M_]) == expected


def test_it_merges_repeated_keys_of_busy_metric_minutes(engine: Engine, start: datetime) -> None:
    busy = [(start + timedelta(seconds=s), 5.0 if s % 2 else 9.0) for s in range(40)]
    quiet = [(start + timedelta(minutes=1, seconds=s), 5.0) for s in range(3)]
    with engine.begin() as conn:
        sid = add_series(conn, "requests_in_flight")
        add_points(conn, sid, busy + quiet)
    roll_up_now(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT hist_keys, hist_counts FROM metric_rollup_1m ORDER BY bucket")
        ).all()
    k5, k9 = histogram.bucket_key(5.0), histogram.bucket_key(9.0)
    # the quiet minute keeps one entry per point, its counts empty (a count of 1 each)
    assert [tuple(r) for r in rows] == [([k5, k9], [20, 20]), ([k5, k5, k5], [])]


def test_it_keeps_six_hour_rows_for_long_charts(engine: Engine, start: datetime) -> None:
    # 13 hours of points cross at least two 6-hour boundaries.
    with engine.begin() as conn:
        add_timings(
            conn, random_timings(start - timedelta(hours=10), minutes=13 * 60, per_minute=2)
        )
    roll_up_now(engine)
    with engine.connect() as conn:
        exact = conn.execute(
            text(
                "SELECT date_bin('6 hours', time, TIMESTAMPTZ '2000-01-01Z') AS b, method, "
                "endpoint, count(*), min(response_time_ms), max(response_time_ms), "
                "count(*) FILTER (WHERE status_code >= 500) FROM api_timings GROUP BY 1, 2, 3"
            )
        ).all()
        totals = dict(
            conn.execute(
                text(
                    "SELECT date_bin('6 hours', time, TIMESTAMPTZ '2000-01-01Z'), count(*) "
                    "FROM api_timings GROUP BY 1"
                )
            ).all()
        )
        total_rows = dict(conn.execute(text("SELECT bucket, count FROM api_total_6h")).all())
    rolled = _api_rows(engine, "api_rollup_6h")
    assert len({r[0] for r in exact}) >= 2
    assert rolled.keys() == {tuple(r[:3]) for r in exact}
    for b, method, endpoint, count, lo, hi, errors in exact:
        r_count, _, r_lo, r_hi, r_errors, _, keys, counts = rolled[(b, method, endpoint)]
        assert (r_count, r_lo, r_hi, r_errors) == (count, lo, hi, errors)
        assert sum(counts) == count and keys == sorted(keys)
    assert total_rows == totals
    # ...and the readers use them: a 6-hour chart gives the exact request counts.
    from monitoring_core.performance.queries import latency_trend
    from monitoring_core.timerange import TimeRange

    first, last = min(totals), max(totals)
    with engine.connect() as conn:
        trend = latency_trend(conn, TimeRange(first, last + timedelta(hours=6)), "6h")
    assert dict(zip(trend["bucket"], trend["requests"], strict=True)) == totals
