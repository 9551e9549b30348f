"""Retention of row tables (health results, alert events, outbox, deliveries, audit log) and
of idle metric series: only rows older than their setting go, in bounded batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, insert, select, text

from monitoring_core.ingest.metrics import SeriesCache
from monitoring_core.partitions import ensure_partitions
from monitoring_core.retention import (
    DEFAULT_RETENTION_DAYS,
    PRUNED_ROWS,
    merge_retention,
    prune_row_tables,
    prune_rows,
)
from monitoring_core.schema import (
    alert_events,
    audit_log,
    health_check_pings,
    health_check_results,
    health_checks,
    metric_points,
    metric_rollup_1d,
    metric_rollup_1m,
    metric_series,
    notification_channels,
    notification_deliveries,
    notification_outbox,
)
from tests.rollup_fixtures import add_points, add_series

NOW = datetime(2026, 6, 20, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _prune(conn: Connection) -> dict[str, int]:
    # Not apply_retention: that also drops the session's shared raw partitions.
    return prune_row_tables(conn, NOW, merge_retention(None))


def _points(conn: Connection, series: int, times: list[datetime], ingested: datetime) -> None:
    for when in times:
        ensure_partitions(conn, start=when, end=when, tables=("metric_points",))
    add_points(conn, series, [(when, 1.0) for when in times], ingested_at=ingested)


def _channel(conn: Connection) -> int:
    return conn.execute(
        insert(notification_channels)
        .values(name="ops", url="json://localhost/x")
        .returning(notification_channels.c.id)
    ).scalar_one()


def _check(conn: Connection) -> int:
    return conn.execute(
        insert(health_checks)
        .values(check_name="api", check_type="http")
        .returning(health_checks.c.id)
    ).scalar_one()


def _outbox(conn: Connection, channel: int, created: datetime, status: str) -> int:
    return conn.execute(
        insert(notification_outbox)
        .values(
            channel_id=channel,
            kind="firing",
            title="t",
            body="b",
            idempotency_key=f"{created.isoformat()}-{status}",
            status=status,
            created_at=created,
        )
        .returning(notification_outbox.c.id)
    ).scalar_one()


# table and its setting's documented default (days)
ROWS: list[tuple[str, int]] = [
    ("health_check_results", 30),
    ("health_check_pings", 30),
    ("alert_events", 180),
    ("notification_outbox", 90),
    ("notification_deliveries", 90),
    ("audit_log", 365),
]


def _insert(conn: Connection, table: str, when: datetime, refs: dict[str, int]) -> None:
    values: dict[str, Any]
    if table == "health_check_results":
        values = {"check_id": refs["check"], "time": when, "success": True, "status": "healthy"}
        conn.execute(insert(health_check_results).values(values))
    elif table == "health_check_pings":
        conn.execute(
            insert(health_check_pings).values(check_id=refs["check"], time=when, kind="start")
        )
    elif table == "alert_events":
        conn.execute(insert(alert_events).values(rule_id=1, time=when, to_status="firing"))
    elif table == "notification_outbox":
        _outbox(conn, refs["channel"], when, "sent")
    elif table == "notification_deliveries":
        values = {"channel_id": refs["channel"], "attempted_at": when, "status": "sent"}
        conn.execute(insert(notification_deliveries).values(values))
    else:
        conn.execute(insert(audit_log).values(time=when, actor="user:a", action="x"))


def _times(conn: Connection, table: str) -> list[datetime]:
    pruned = next(p for p in PRUNED_ROWS if p.table == table)
    column = text(pruned.time_column)
    return sorted(conn.execute(select(column).select_from(text(table))).scalars())


def test_it_documents_a_default_for_every_pruned_table() -> None:
    assert {p.table for p in PRUNED_ROWS} == {t for t, _ in ROWS}
    assert all(DEFAULT_RETENTION_DAYS[table] == days for table, days in ROWS)
    assert DEFAULT_RETENTION_DAYS["metric_series_idle"] == 30


@pytest.mark.parametrize(("table", "days"), ROWS)
def test_it_prunes_only_rows_older_than_the_setting(engine: Engine, table: str, days: int) -> None:
    old, edge, new = NOW - (days + 1) * DAY, NOW - days * DAY + timedelta(minutes=1), NOW - DAY
    with engine.begin() as conn:
        refs = {"channel": _channel(conn), "check": _check(conn)}
        for when in (old, edge, new):
            _insert(conn, table, when, refs)
        assert _prune(conn)[table] == 1
        assert _times(conn, table) == [edge, new]


def test_it_keeps_outbox_rows_still_at_work_and_drops_deliveries_with_theirs(
    engine: Engine,
) -> None:
    long_ago = NOW - 400 * DAY
    with engine.begin() as conn:
        channel = _channel(conn)
        kept = {_outbox(conn, channel, long_ago, status) for status in ("pending", "sending")}
        gone = _outbox(conn, channel, long_ago, "failed")
        conn.execute(
            insert(notification_deliveries).values(
                outbox_id=gone, channel_id=channel, attempted_at=NOW, status="failed"
            )
        )
        _prune(conn)
        left = set(conn.execute(select(notification_outbox.c.id)).scalars())
        deliveries = conn.execute(select(func.count()).select_from(notification_deliveries))
        assert left == kept
        assert deliveries.scalar_one() == 0  # it went with its outbox row


def test_it_prunes_in_bounded_batches(engine: Engine) -> None:
    with engine.begin() as conn:
        for minute in range(7):
            _insert(conn, "audit_log", NOW - 400 * DAY + timedelta(minutes=minute), {})
        audit = next(p for p in PRUNED_ROWS if p.table == "audit_log")
        assert prune_rows(conn, audit, NOW - 365 * DAY, batch_size=2, max_batches=2) == 4
        assert prune_rows(conn, audit, NOW - 365 * DAY, batch_size=2, max_batches=2) == 3
        assert prune_rows(conn, audit, NOW - 365 * DAY, batch_size=2, max_batches=2) == 0


def test_it_deletes_series_that_received_nothing_for_the_idle_days(engine: Engine) -> None:
    with engine.begin() as conn:
        idle = add_series(conn, "idle_metric")
        recent = add_series(conn, "live_metric")
        rolled = add_series(conn, "hourly_only")
        newborn = add_series(conn, "newborn")
        conn.execute(
            metric_series.update()
            .where(metric_series.c.id.in_([idle, recent, rolled]))
            .values(created_at=NOW - 100 * DAY)
        )
        conn.execute(
            metric_series.update().values(created_at=NOW - DAY).where(metric_series.c.id == newborn)
        )
        old, fresh = NOW - 31 * DAY, NOW - 29 * DAY
        _points(conn, idle, [old], old)
        _points(conn, recent, [old, fresh], fresh)
        for series, bucket in ((idle, old), (rolled, fresh)):
            conn.execute(insert(metric_rollup_1d).values(_rollup(series, bucket)))
        conn.execute(insert(metric_rollup_1m).values(_rollup(idle, old)))

        deleted = _prune(conn)

        names = set(conn.execute(select(metric_series.c.name)).scalars())
        assert names == {"live_metric", "hourly_only", "newborn"}
        assert deleted["metric_series"] == 1
        for table in (metric_points, metric_rollup_1m, metric_rollup_1d):
            left = select(func.count()).select_from(table).where(table.c.series_id == idle)
            assert conn.execute(left).scalar_one() == 0, table.name


def test_it_keeps_a_series_that_got_an_old_point_just_now(engine: Engine) -> None:
    """A backfilled point (old time, ingested now) means the series is in use."""
    with engine.begin() as conn:
        series = add_series(conn, "backfilled")
        conn.execute(metric_series.update().values(created_at=NOW - 100 * DAY))
        _points(conn, series, [NOW - 40 * DAY], NOW - DAY)
        assert _prune(conn)["metric_series"] == 0


def _rollup(series: int, bucket: datetime) -> dict[str, Any]:
    return {
        "series_id": series,
        "bucket": bucket,
        "count": 1,
        "sum": 1.0,
        "min": 1.0,
        "max": 1.0,
        "last": 1.0,
        "hist_keys": [],
        "hist_counts": [],
    }


def test_it_forgets_cached_series_ids_after_their_age() -> None:
    ticks = [0.0]
    cache = SeriesCache(max_age_s=60.0, clock=lambda: ticks[0])
    key = ("cpu", b"{}")
    cache.update({key: 7})
    ticks[0] = 59.0
    assert cache.get(key) == 7
    ticks[0] = 61.0
    assert cache.get(key) is None  # looked up again: the series may have been deleted
