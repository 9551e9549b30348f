"""Retention: drop whole raw partitions, delete old rollup rows, create partitions ahead.

Defaults (days) in `DEFAULT_RETENTION_DAYS`; override any of them with the `settings` row
`retention_days`, a JSON object such as `{"metric_points": 7, "rollup_1h": 365}`. A metric's
own `metric_catalog.retention_days` sets how long that metric's rollups are kept: its hourly
and daily rows live that many days (longer or shorter than `rollup_1h` / `rollup_1d`) and its
1-minute rows min(that, `rollup_1m`). Raw partitions hold every metric, so they follow the table's setting.

Storage tiers of metric history (all settings of the same object): raw points as rows for a
few hours, then compressed series chunks (`metric_chunks`, 30 days, see `compaction`),
1-minute rollups (`rollup_1m`, 90 days), hourly and 6-hourly rollups (`rollup_1h`,
`rollup_6h`: 13 months), daily rollups for ever (`rollup_1d` = FOREVER_DAYS, a hundred years).
Chunks go by their newest point, in batches like the row tables.

A raw partition is dropped only when its whole day is older than the cutoff **and** the rollup
watermark of its table has passed every row in it (no row with `ingested_at` above the
watermark): a stalled rollup never loses data to retention, it only delays the drop.

Row tables (`PRUNED_ROWS`) lose rows older than their setting, in batches of `batch_size`, at
most `max_batches` per table and run (the hourly job catches up a backlog over several runs
instead of holding one long transaction): health check results (30 d), alert events (180 d),
finished outbox rows (90 d; their delivery rows go with them) and delivery rows (90 d), the
audit log (365 d). A metric series with no raw point and no rollup row for
`metric_series_idle` days (30) is deleted with what is left of its rows; series rows being
written at that moment are skipped (`SKIP LOCKED`).
"""

# Identifiers below come from PARTITIONED_TABLES and partition_name(); values are bound params.
# ruff: noqa: S608

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from monitoring_core.migrate import PARTITION_DAYS_AHEAD
from monitoring_core.partitions import ensure_partitions, list_partitions, partition_name
from monitoring_core.schema import PARTITIONED_TABLES

__all__ = [
    "DEFAULT_RETENTION_DAYS",
    "FOREVER_DAYS",
    "SETTINGS_KEY",
    "PRUNED_ROWS",
    "PrunedRows",
    "RetentionReport",
    "apply_retention",
    "prune_api_timing_packs",
    "prune_chunks",
    "prune_idle_series",
    "prune_row_tables",
    "prune_rows",
    "create_partitions_ahead",
    "partitions_to_drop",
    "retention_days",
]

SETTINGS_KEY = "retention_days"
FOREVER_DAYS = 36_600  # "for ever": a hundred years, nothing is old enough to go
DEFAULT_RETENTION_DAYS: dict[str, int] = {
    "metric_points": 14,
    "api_timings": 14,
    "web_vitals": 14,
    "error_events": 90,
    "business_events": 800,
    "spans": 14,
    "log_records": 14,
    "metric_histograms": 14,  # OTLP histogram points (folded into the metric rollups)
    "metric_chunks": 30,  # compacted raw metric points (compaction.py)
    "rollup_1m": 90,
    "rollup_1h": 395,  # 13 months, API and Web Vitals hours too
    "rollup_6h": 395,
    "rollup_1d": FOREVER_DAYS,
    "job_runs": 7,
    "health_check_results": 30,
    "health_check_pings": 30,
    "alert_events": 180,
    "notification_outbox": 90,
    "notification_deliveries": 90,
    "audit_log": 365,
    "metric_series_idle": 30,
}
BATCH_SIZE = 5_000
MAX_BATCHES = 20


@dataclass(frozen=True)
class PrunedRows:
    """A table whose rows go `days[setting]` after `time_column`, when `condition` holds."""

    table: str
    time_column: str
    condition: str = "true"


# Names and conditions are constants of this module (never user input).
PRUNED_ROWS: tuple[PrunedRows, ...] = (
    PrunedRows("health_check_results", "time"),
    PrunedRows("health_check_pings", "time"),
    PrunedRows("alert_events", "time"),
    # Pending or sending rows are still at work, however old.
    PrunedRows("notification_outbox", "created_at", "status NOT IN ('pending', 'sending')"),
    PrunedRows("notification_deliveries", "attempted_at"),
    PrunedRows("audit_log", "time"),
)
# Each test is a derived table with LIMIT 1 that refers to the outer row, so Postgres runs it as
# one index probe per series (an anti-join would hash every recent rollup and raw row); the raw
# probe walks a series' points newest first, so a live series is answered by its first row.
_IDLE_SERIES = text(
    """
    SELECT s.id FROM metric_series s
    WHERE s.created_at < :cutoff
      AND NOT EXISTS (SELECT 1 FROM (SELECT 1 FROM metric_rollup_1m r
                      WHERE r.series_id = s.id AND r.bucket >= :cutoff LIMIT 1) x)
      AND NOT EXISTS (SELECT 1 FROM (SELECT 1 FROM metric_rollup_1h r
                      WHERE r.series_id = s.id AND r.bucket >= :cutoff LIMIT 1) x)
      AND NOT EXISTS (SELECT 1 FROM (SELECT 1 FROM metric_rollup_1d r
                      WHERE r.series_id = s.id AND r.bucket >= :cutoff LIMIT 1) x)
      AND NOT EXISTS (SELECT 1 FROM (SELECT 1 FROM metric_chunks c
                      WHERE c.series_id = s.id AND c.end_time >= :cutoff LIMIT 1) x)
      AND NOT EXISTS (SELECT 1 FROM (SELECT 1 FROM metric_points p WHERE p.series_id = s.id
                      AND (p.time >= :cutoff OR p.ingested_at >= :cutoff)
                      ORDER BY p.time DESC LIMIT 1) x)
    LIMIT :batch FOR UPDATE OF s SKIP LOCKED
    """
)
_SERIES_ROWS = (
    "metric_points",
    "metric_histograms",
    "metric_chunks",
    "metric_rollup_1m",
    "metric_rollup_1h",
    "metric_rollup_6h",
    "metric_rollup_1d",
)
# Raw tables whose rows feed rollups: the watermark of the same name must have passed them.
ROLLED_UP = {"metric_points", "api_timings", "web_vitals", "metric_histograms"}
_WATERMARK_OF = {"metric_histograms": "metric_points"}  # rolled up with the metric family
_ROLLUP_TABLES = {
    "api_rollup_1m": "rollup_1m",
    "api_total_1m": "rollup_1m",
    "api_rollup_1h": "rollup_1h",
    "api_total_1h": "rollup_1h",
    "web_vitals_rollup_1h": "rollup_1h",
    "api_rollup_6h": "rollup_6h",
    "api_total_6h": "rollup_6h",
    "api_rollup_1d": "rollup_1d",
    "api_total_1d": "rollup_1d",
    "web_vitals_rollup_1d": "rollup_1d",
}


@dataclass
class RetentionReport:
    dropped: list[str] = field(default_factory=list)
    kept_not_rolled_up: list[str] = field(default_factory=list)
    deleted_rows: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        deleted = sum(self.deleted_rows.values())
        kept = f", kept {len(self.kept_not_rolled_up)} not yet rolled up" * bool(
            self.kept_not_rolled_up
        )
        return f"dropped {len(self.dropped)} partitions{kept}, deleted {deleted} rows"


def retention_days(conn: Connection) -> dict[str, int]:
    """The defaults overlaid with the `retention_days` setting (bad entries are ignored)."""
    raw = conn.execute(
        text("SELECT value FROM settings WHERE key = :k"), {"k": SETTINGS_KEY}
    ).scalar()
    return merge_retention(raw)


def merge_retention(override: Any) -> dict[str, int]:
    """Pure: defaults + a settings value (a dict, or its JSON text); only positive ints count."""
    days = dict(DEFAULT_RETENTION_DAYS)
    if isinstance(override, str):
        override = json.loads(override)
    for name, value in (override or {}).items():
        if name in days and isinstance(value, int) and not isinstance(value, bool) and value > 0:
            days[name] = value
    return days


def partitions_to_drop(partition_days: list[date], keep_days: int, now: datetime) -> list[date]:
    """Pure: the days whose whole partition ends on or before now - keep_days."""
    cutoff = now - timedelta(days=keep_days)
    return [d for d in partition_days if _day_end(d) <= cutoff]


def _day_end(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


def create_partitions_ahead(conn: Connection, now: datetime) -> list[str]:
    """Today's partitions and PARTITION_DAYS_AHEAD days more, for every raw table."""
    return ensure_partitions(conn, start=now, end=now + timedelta(days=PARTITION_DAYS_AHEAD))


def apply_retention(conn: Connection, now: datetime) -> RetentionReport:
    """Drop expired raw partitions and delete expired rollup / job-run rows (caller commits)."""
    days, report = retention_days(conn), RetentionReport()
    for table in PARTITIONED_TABLES:
        _drop_expired(conn, table, days[table], now, report)
    report.deleted_rows["metric_chunks"] = prune_chunks(
        conn, now - timedelta(days=days["metric_chunks"])
    )
    report.deleted_rows["api_timing_packs"] = prune_api_timing_packs(
        conn, now - timedelta(days=days["api_timings"])
    )
    _delete_metric_rollups(conn, days, now, report)
    for table, kind in _ROLLUP_TABLES.items():
        report.deleted_rows[table] = conn.execute(
            text(f"DELETE FROM {table} WHERE bucket < :cutoff"),
            {"cutoff": now - timedelta(days=days[kind])},
        ).rowcount
    report.deleted_rows["job_runs"] = conn.execute(
        text("DELETE FROM job_runs WHERE started_at < :cutoff"),
        {"cutoff": now - timedelta(days=days["job_runs"])},
    ).rowcount
    report.deleted_rows.update(prune_row_tables(conn, now, days))
    return report


def prune_row_tables(conn: Connection, now: datetime, days: dict[str, int]) -> dict[str, int]:
    """PRUNED_ROWS and idle metric series by their settings: rows deleted per table."""
    deleted = {
        pruned.table: prune_rows(conn, pruned, now - timedelta(days=days[pruned.table]))
        for pruned in PRUNED_ROWS
    }
    cutoff = now - timedelta(days=days["metric_series_idle"])
    deleted["metric_series"] = prune_idle_series(conn, cutoff)
    return deleted


def prune_rows(
    conn: Connection,
    pruned: PrunedRows,
    cutoff: datetime,
    *,
    batch_size: int = BATCH_SIZE,
    max_batches: int = MAX_BATCHES,
) -> int:
    """Delete `pruned.table` rows older than `cutoff` in batches; rows deleted (bounded)."""
    statement = text(
        f"DELETE FROM {pruned.table} WHERE id IN (SELECT id FROM {pruned.table} "
        f"WHERE {pruned.time_column} < :cutoff AND {pruned.condition} LIMIT :batch)"
    )
    return _in_batches(conn, statement, {"cutoff": cutoff}, batch_size, max_batches)


def prune_chunks(
    conn: Connection,
    cutoff: datetime,
    *,
    batch_size: int = BATCH_SIZE,
    max_batches: int = MAX_BATCHES,
) -> int:
    """Delete the series chunks whose newest point is older than `cutoff`; chunks deleted."""
    statement = text(
        "DELETE FROM metric_chunks WHERE (series_id, start_time) IN (SELECT series_id, "
        "start_time FROM metric_chunks WHERE end_time < :cutoff LIMIT :batch)"
    )
    return _in_batches(conn, statement, {"cutoff": cutoff}, batch_size, max_batches)


def prune_api_timing_packs(conn: Connection, cutoff: datetime) -> int:
    """Delete the packed API timings (compaction.pack_api_timings) whose every request is
    before `cutoff` (the api_timings setting, as their partitions): the last request
    (`end_time`), or the end of the half hour in packs older than migration 0029; packs
    deleted."""
    return conn.execute(
        text(
            "DELETE FROM api_timing_packs WHERE start_time < :cutoff "
            "AND coalesce(end_time, start_time + interval '30 minutes') < :cutoff"
        ),
        {"cutoff": cutoff},
    ).rowcount


def prune_idle_series(
    conn: Connection,
    cutoff: datetime,
    *,
    batch_size: int = BATCH_SIZE,
    max_batches: int = MAX_BATCHES,
) -> int:
    """Delete series with nothing at or after `cutoff`, and their older rows; series deleted."""
    deleted = 0
    for _ in range(max_batches):
        ids = list(conn.execute(_IDLE_SERIES, {"cutoff": cutoff, "batch": batch_size}).scalars())
        for table in _SERIES_ROWS:
            conn.execute(text(f"DELETE FROM {table} WHERE series_id = ANY(:ids)"), {"ids": ids})
        conn.execute(text("DELETE FROM metric_series WHERE id = ANY(:ids)"), {"ids": ids})
        deleted += len(ids)
        if len(ids) < batch_size:
            break
    return deleted


def _in_batches(
    conn: Connection, statement: Any, params: dict[str, Any], batch_size: int, max_batches: int
) -> int:
    deleted = 0
    for _ in range(max_batches):
        count = conn.execute(statement, {**params, "batch": batch_size}).rowcount
        deleted += count
        if count < batch_size:
            break
    return deleted


def _drop_expired(
    conn: Connection, table: str, keep_days: int, now: datetime, report: RetentionReport
) -> None:
    watermark = _watermark(conn, table) if table in ROLLED_UP else None
    for day in partitions_to_drop(list_partitions(conn, table), keep_days, now):
        name = partition_name(table, day)
        if (
            watermark is not None
            and conn.execute(
                text(f'SELECT EXISTS (SELECT 1 FROM "{name}" WHERE ingested_at > :w)'),
                {"w": watermark},
            ).scalar()
        ):
            report.kept_not_rolled_up.append(name)
            continue
        conn.execute(text(f'DROP TABLE IF EXISTS "{name}"'))
        report.dropped.append(name)


def _watermark(conn: Connection, table: str) -> datetime:
    found = conn.execute(
        text("SELECT watermark FROM rollup_watermarks WHERE name = :n"),
        {"n": _WATERMARK_OF.get(table, table)},
    ).scalar()
    return found or datetime(1970, 1, 1, tzinfo=UTC)


def _delete_metric_rollups(
    conn: Connection, days: dict[str, int], now: datetime, report: RetentionReport
) -> None:
    shortest = conn.execute(text("SELECT min(retention_days) FROM metric_catalog")).scalar()
    levels = (
        ("metric_rollup_1m", "rollup_1m"),
        ("metric_rollup_1h", "rollup_1h"),
        ("metric_rollup_6h", "rollup_6h"),
        ("metric_rollup_1d", "rollup_1d"),
    )
    for table, kind in levels:
        default = days[kind]
        keep = "coalesce(c.retention_days, :d)"
        if kind == "rollup_1m":
            keep = f"LEAST({keep}, :d)"
        oldest = now - timedelta(days=min(default, shortest or default))
        report.deleted_rows[table] = conn.execute(
            text(
                f"DELETE FROM {table} r USING metric_series s "
                "LEFT JOIN metric_catalog c ON c.name = s.name "
                f"WHERE r.series_id = s.id AND r.bucket < :oldest "
                f"AND r.bucket < :now - make_interval(days => {keep})"
            ),
            {"d": default, "now": now, "oldest": oldest},
        ).rowcount
