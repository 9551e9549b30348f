"""Retention: partitions dropped only when expired and rolled up; rollup rows by age."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from monitoring_core.migrate import migrate
from monitoring_core.partitions import list_partitions
from monitoring_core.retention import (
    DEFAULT_RETENTION_DAYS,
    apply_retention,
    create_partitions_ahead,
    merge_retention,
    partitions_to_drop,
)
from tests.rollup_fixtures import add_points, add_series, add_timings

pytestmark = pytest.mark.clock  # runs at every instant of tests/clock_proof.py

NOW = datetime(2026, 6, 20, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("override", "changed"),
    [
        (None, {}),
        ({"metric_points": 7}, {"metric_points": 7}),
        ('{"rollup_1h": 365}', {"rollup_1h": 365}),
        ({"api_timings": 0, "web_vitals": "3", "nope": 5, "job_runs": True}, {}),
    ],
)
def test_it_overlays_settings_on_the_defaults(override: object, changed: dict) -> None:
    assert merge_retention(override) == {**DEFAULT_RETENTION_DAYS, **changed}


def test_it_picks_only_whole_days_older_than_the_cutoff() -> None:
    days = [date(2026, 6, d) for d in (4, 5, 6, 7, 20)]
    # cutoff 2026-06-06 12:00: the 5th ends at 06-06 00:00 (drop), the 6th ends after (keep)
    assert partitions_to_drop(days, 14, NOW) == [date(2026, 6, 4), date(2026, 6, 5)]


@pytest.fixture
def restore_partitions(engine: Engine, now: datetime) -> Iterator[None]:
    """Retention drops shared partitions: put them back for the other tests."""
    yield
    migrate(engine, now=now)


def _days(engine: Engine, table: str) -> list[date]:
    with engine.connect() as conn:
        return list_partitions(conn, table)


def test_it_drops_expired_partitions_that_rollups_have_passed(
    engine: Engine, now: datetime, restore_partitions: None
) -> None:
    old = now - timedelta(days=20)
    with engine.begin() as conn:
        add_timings(conn, [(old, "GET", "/a", 200, 1.0)], ingested_at=old)
        sid = add_series(conn, "cpu")
        add_points(conn, sid, [(old, 1.0)], ingested_at=now)  # arrived late: not rolled up yet
        conn.execute(
            text(
                "INSERT INTO rollup_watermarks (name, watermark) VALUES "
                "('api_timings', :w), ('metric_points', :w)"
            ),  # fmt: skip
            {"w": now - timedelta(minutes=1)},
        )
        report = apply_retention(conn, now)
    cutoff = (now - timedelta(days=14)).date()
    assert min(_days(engine, "api_timings")) >= cutoff - timedelta(days=1)
    assert f"metric_points_p{old:%Y%m%d}" in report.kept_not_rolled_up
    assert old.date() in _days(engine, "metric_points")
    assert min(_days(engine, "error_events")) <= (now - timedelta(days=34)).date()  # 90 days


def test_it_follows_the_retention_setting(
    engine: Engine, now: datetime, restore_partitions: None
) -> None:
    before = _days(engine, "api_timings")
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO settings (key, value) VALUES ('retention_days', CAST(:v AS jsonb))"),
            {"v": json.dumps({"api_timings": 60})},
        )
        apply_retention(conn, now)
    assert _days(engine, "api_timings") == before


def test_it_deletes_rollup_rows_by_age_and_metric_catalog_retention(
    engine: Engine, now: datetime
) -> None:
    rows = {"cpu": 100, "short": 40}
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO metric_catalog (name, retention_days) VALUES ('short', 30)"))
        for name, age in rows.items():
            sid = add_series(conn, name)
            for table in ("metric_rollup_1m", "metric_rollup_1h"):
                conn.execute(
                    text(
                        f"INSERT INTO {table} (series_id, bucket, count, sum, min, max, "  # noqa: S608
                        "hist_keys, hist_counts, last) VALUES (:s, :b, 1, 1, 1, 1, '{1}', '{1}', 1)"
                    ),
                    {"s": sid, "b": now - timedelta(days=age)},
                )
        conn.execute(
            text(
                "INSERT INTO job_runs (job, started_at, duration_ms, ok) VALUES ('x', :t, 1, true)"
            ),
            {"t": now - timedelta(days=8)},
        )
        report = apply_retention(conn, now)
        left = conn.execute(
            text(
                "SELECT s.name, 'h' FROM metric_rollup_1h r JOIN metric_series s ON s.id = r.series_id "
                "UNION ALL SELECT s.name, 'm' FROM metric_rollup_1m r "
                "JOIN metric_series s ON s.id = r.series_id"
            )  # fmt: skip
        ).all()
    assert sorted(tuple(r) for r in left) == [("cpu", "h")]
    assert report.deleted_rows["job_runs"] == 1


def test_it_creates_partitions_ahead(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn:
        create_partitions_ahead(conn, now + timedelta(days=2))
    assert (now + timedelta(days=5)).date() in _days(engine, "web_vitals")
