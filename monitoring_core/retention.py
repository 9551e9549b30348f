"""Retention: drop whole raw partitions, delete old rollup rows, create partitions ahead.

Defaults (days) in `DEFAULT_RETENTION_DAYS`; override any of them with the `settings` row
`retention_days`, a JSON object such as `{"metric_points": 7, "rollup_1h": 365}`. A metric's
own `metric_catalog.retention_days` sets how long that metric's rollups are kept: its hourly
and daily rows live that many days (longer or shorter than `rollup_1h` / `rollup_1d`) and its
1-minute rows min(that, `rollup_1m`). Raw partitions hold every metric, so they follow the table's setting.

A raw partition is dropped only when its whole day is older than the cutoff **and** the rollup
watermark of its table has passed every row in it (no row with `ingested_at` above the
watermark): a stalled rollup never loses data to retention, it only delays the drop.
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
    "SETTINGS_KEY",
    "RetentionReport",
    "apply_retention",
    "create_partitions_ahead",
    "partitions_to_drop",
    "retention_days",
]

SETTINGS_KEY = "retention_days"
DEFAULT_RETENTION_DAYS: dict[str, int] = {
    "metric_points": 14,
    "api_timings": 14,
    "web_vitals": 14,
    "error_events": 90,
    "business_events": 800,
    "rollup_1m": 90,
    "rollup_1h": 730,
    "rollup_1d": 1825,
    "job_runs": 7,
}
# Raw tables whose rows feed rollups: the watermark of the same name must have passed them.
ROLLED_UP = {"metric_points", "api_timings", "web_vitals"}
_ROLLUP_TABLES = {
    "api_rollup_1m": "rollup_1m",
    "api_total_1m": "rollup_1m",
    "api_rollup_1h": "rollup_1h",
    "api_total_1h": "rollup_1h",
    "web_vitals_rollup_1h": "rollup_1h",
    "api_rollup_6h": "rollup_1h",
    "api_total_6h": "rollup_1h",
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
        return f"dropped {len(self.dropped)} partitions{kept}, deleted {deleted} rollup rows"


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
    return report


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
        text("SELECT watermark FROM rollup_watermarks WHERE name = :n"), {"n": table}
    ).scalar()
    return found or datetime(1970, 1, 1, tzinfo=UTC)


def _delete_metric_rollups(
    conn: Connection, days: dict[str, int], now: datetime, report: RetentionReport
) -> None:
    shortest = conn.execute(text("SELECT min(retention_days) FROM metric_catalog")).scalar()
    levels = (
        ("metric_rollup_1m", "rollup_1m"),
        ("metric_rollup_1h", "rollup_1h"),
        ("metric_rollup_6h", "rollup_1h"),
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
