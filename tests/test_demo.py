"""The demo data set: deterministic, shaped like a wedding platform, rolled up, loaded once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine, text

from monitoring_core.demo import load_demo_data, loader_rng, performance
from monitoring_core.demo.performance import ENDPOINTS, _apply_spells
from monitoring_core.demo.traffic import bad_spells, to_np, traffic_shape

# Sunday 01:00 in London: two days back covers all of Friday and Saturday (local time).
SUNDAY = datetime(2026, 6, 7, 0, 0, tzinfo=UTC)


def _fingerprint(engine: Engine) -> tuple[object, ...]:
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                text(
                    "SELECT (SELECT md5(string_agg(concat_ws('|', time, endpoint, status_code, "
                    "response_time_ms, request_id), ',' ORDER BY time, request_id)) "
                    "FROM api_timings), (SELECT md5(string_agg(concat_ws('|', time, name, value, "
                    "page_route, device_type), ',' ORDER BY time, name, session_id)) "
                    "FROM web_vitals), (SELECT sum(value) FROM metric_points)"
                )
            ).one()
        )


def _truncate(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE api_timings, web_vitals, metric_points, metric_series CASCADE"))


def _load_performance(engine: Engine, now: datetime) -> None:
    """The performance loader alone (no rollups), seeded as load_demo_data seeds it."""
    with engine.begin() as conn:
        performance.load(conn, days=1, now=now, rng=loader_rng(performance))


def test_it_loads_the_same_rows_for_the_same_now(engine: Engine, now: datetime) -> None:
    _load_performance(engine, now)
    first = _fingerprint(engine)
    _truncate(engine)
    _load_performance(engine, now)

    assert _fingerprint(engine) == first
    assert all(part is not None for part in first)


def test_it_has_saturday_peaks_worse_mobile_vitals_and_rollups(engine: Engine) -> None:
    summary = load_demo_data(engine, days=2, now=SUNDAY, only_if_empty=False)

    assert "api_timings" in summary and "web_vitals" in summary
    with engine.connect() as conn:
        per_day: dict[int, int] = dict(
            conn.execute(
                text(
                    "SELECT extract(isodow FROM time AT TIME ZONE 'Europe/London')::int, count(*) "
                    "FROM api_timings WHERE (time AT TIME ZONE 'Europe/London')::time >= '01:00' "
                    "GROUP BY 1"
                )
            ).all()
        )
        lcp: dict[str, float] = dict(
            conn.execute(
                text(
                    "SELECT device_type, percentile_cont(0.75) WITHIN GROUP (ORDER BY value) "
                    "FROM web_vitals WHERE name = 'LCP' GROUP BY 1"
                )
            ).all()
        )
        raw, rolled = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM api_timings), (SELECT sum(count) FROM api_rollup_1m)"
            )
        ).one()
    assert per_day[6] > 1.4 * per_day[5]  # Saturday (wedding day) vs Friday, same hours
    assert lcp["mobile"] > 1.2 * lcp["desktop"]
    assert raw == rolled > 20_000


def test_it_skips_a_database_that_already_has_timings(engine: Engine) -> None:
    load_demo_data(engine, days=1, now=SUNDAY, only_if_empty=True)
    before = _fingerprint(engine)

    summary = load_demo_data(engine, days=1, now=SUNDAY - timedelta(days=3), only_if_empty=True)

    assert summary.startswith("demo data skipped")
    assert _fingerprint(engine) == before


def test_it_refuses_less_than_a_day(engine: Engine) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        load_demo_data(engine, days=0, now=SUNDAY, only_if_empty=False)


@pytest.mark.parametrize(
    ("busier", "quieter"),
    [
        ("2026-06-06T19:00", "2026-06-05T19:00"),  # Saturday evening > Friday evening
        ("2026-06-03T20:00", "2026-06-03T04:00"),  # evening > small hours
        ("2026-07-15T12:00", "2026-11-18T12:00"),  # peak season > November, same weekday
    ],
)
def test_it_shapes_traffic_by_hour_weekday_and_season(busier: str, quieter: str) -> None:
    hours = np.array([np.datetime64(busier, "us"), np.datetime64(quieter, "us")])
    shape = traffic_shape(hours)
    assert shape[0] > 1.2 * shape[1]


def _endpoint(path: str) -> int:
    return next(i for i, e in enumerate(ENDPOINTS) if e.path == path)


@pytest.mark.parametrize(
    ("spell", "path", "latency_factor", "min_server_errors"),
    [
        ("payment_outage", "/api/payments/charge", 5.0, 0.4),
        ("payment_outage", "/api/suppliers/search", 1.0, 0.0),
        ("slow_database", "/api/suppliers/{id}/availability", 5.2, 0.03),
        ("slow_database", "/api/photos/upload", 1.0, 0.0),
        ("search_regression", "/api/suppliers/search", 2.4, 0.0),
    ],
)
def test_it_puts_bad_spells_on_the_endpoints_they_hurt(
    spell: str, path: str, latency_factor: float, min_server_errors: float
) -> None:
    now = datetime(2026, 11, 22, 19, 0, tzinfo=UTC)
    window = bad_spells(now)[spell]
    inside, outside = window.start + np.timedelta64(1, "m"), to_np(now - timedelta(days=20))
    times = np.array([inside, outside])
    ep = np.full(2, _endpoint(path))
    base = np.array([100.0, 100.0])

    latency, server_p, _ = _apply_spells(times, ep, base, np.zeros(2), bad_spells(now))

    assert latency[0] == pytest.approx(100 * latency_factor)
    assert latency[1] == 100
    assert server_p[0] >= min_server_errors and server_p[1] == 0


def test_it_places_the_payment_outage_on_a_saturday_evening() -> None:
    now = datetime(2026, 11, 22, 19, 0, tzinfo=UTC)
    outage = bad_spells(now)["payment_outage"]
    start = outage.start.astype(datetime).replace(tzinfo=UTC)
    assert start.weekday() == 5 and now - start > timedelta(days=7)


def test_the_demo_feed_continues_a_demo_database_and_leaves_others_alone(engine: Engine) -> None:
    """The worker's demo feed adds the minutes since the demo's history ends (API timings,
    vitals, every gauge each minute, none twice), again from where it stopped; in a database
    the demo did not load it writes nothing."""
    from monitoring_core.demo import feed
    from monitoring_core.partitions import ensure_partitions

    loaded = SUNDAY + timedelta(seconds=30)  # the history ends mid-minute
    with engine.begin() as conn:
        ensure_partitions(conn, start=loaded - timedelta(days=1), end=loaded + timedelta(days=1))
    assert feed.feed(engine, loaded + timedelta(minutes=20)).startswith("not a demo database")
    with engine.begin() as conn:
        performance.load(conn, days=1, now=loaded, rng=loader_rng(performance))
        feed.mark_loaded(conn, loaded)

    def gauge_minutes() -> list[tuple[datetime, int]]:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT p.time, count(*) FROM metric_points p JOIN metric_series s "
                    "ON s.id = p.series_id WHERE s.name = 'active_users' AND p.time >= :t "
                    "GROUP BY 1 ORDER BY 1"
                ),
                {"t": SUNDAY - timedelta(minutes=2)},
            )
            return [(t, int(n)) for t, n in rows]

    def timings_after(moment: datetime) -> int:
        with engine.connect() as conn:
            query = text("SELECT count(*) FROM api_timings WHERE time >= :t")
            return int(conn.execute(query, {"t": moment}).scalar_one())

    before = gauge_minutes()
    assert before[-1][0] == SUNDAY and timings_after(loaded) == 0
    said = feed.feed(engine, loaded + timedelta(minutes=7, seconds=10))  # up to 00:07
    assert said.startswith("demo data added") and "api_timings" in said
    assert feed.feed(engine, loaded + timedelta(minutes=7, seconds=20)) == (
        "the demo's data is up to date"
    )
    feed.feed(engine, SUNDAY + timedelta(minutes=12, seconds=5))  # up to 00:12
    minutes = gauge_minutes()
    expected = [SUNDAY + timedelta(minutes=k) for k in range(-2, 12)]
    assert [t for t, _ in minutes] == expected  # each minute once, none skipped
    assert all(n == 1 for _t, n in minutes)
    night = timings_after(SUNDAY - timedelta(minutes=12)) - timings_after(SUNDAY)
    assert night / 3 < timings_after(loaded) < night * 3  # the history's own rate (33: 01:00)
    assert timings_after(SUNDAY + timedelta(minutes=12)) == 0
    with engine.connect() as conn:
        value = conn.execute(text("SELECT value FROM settings WHERE key = 'demo_feed'")).scalar()
    assert value["fed_until"] == (SUNDAY + timedelta(minutes=12)).isoformat()
    # errors too, through the ingest pipeline (grouped), over the next hours
    said = feed.feed(engine, SUNDAY + timedelta(hours=4))
    with engine.connect() as conn:
        first, count, groups = conn.execute(
            text("SELECT min(time), count(*), count(DISTINCT group_id) FROM error_events")
        ).one()
    assert count > 5 and groups > 1 and first >= SUNDAY + timedelta(minutes=12), said
    with engine.connect() as conn:  # and the vendor searches' traces with their logs
        spans, logs = conn.execute(
            text("SELECT (SELECT count(*) FROM spans), (SELECT count(*) FROM log_records)")
        ).one()
    assert spans > 100 and logs > 50, said  # two spans and a log a search, ~1 every 2 min
