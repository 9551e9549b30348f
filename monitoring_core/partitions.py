"""Daily partitions of the raw tables: create ahead, drop behind (retention without DELETE)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, text

from monitoring_core.schema import PARTITIONED_TABLES

__all__ = ["drop_partitions_before", "ensure_partitions", "list_partitions", "partition_name"]

_NAME = re.compile(r"^(?P<table>[a-z_]+)_p(?P<day>\d{8})$")


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def _utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def list_partitions(conn: Connection, table: str) -> list[date]:
    """Days that already have a partition of `table`, oldest first."""
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :table"
        ),
        {"table": table},
    ).scalars()
    days = []
    for name in rows:
        match = _NAME.match(name)
        if match and match["table"] == table:
            days.append(datetime.strptime(match["day"], "%Y%m%d").date())
    return sorted(days)


def ensure_partitions(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    tables: tuple[str, ...] = PARTITIONED_TABLES,
) -> list[str]:
    """Create the missing daily partitions (UTC days) covering [start, end]; return their names."""
    if table_bad := [t for t in tables if t not in PARTITIONED_TABLES]:
        raise ValueError(f"not a partitioned table: {table_bad}")
    created: list[str] = []
    first, last = _utc_day(start), _utc_day(end)
    for table in tables:
        existing = set(list_partitions(conn, table))
        day = first
        while day <= last:
            if day not in existing:
                created.append(_create(conn, table, day))
            day += timedelta(days=1)
    return created


def _create(conn: Connection, table: str, day: date) -> str:
    name = partition_name(table, day)
    lower = datetime(day.year, day.month, day.day, tzinfo=UTC)
    upper = lower + timedelta(days=1)
    # Identifiers come from our own table list and a date, never from user input.
    conn.execute(
        text(
            f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF "{table}" '
            f"FOR VALUES FROM ('{lower.isoformat()}') TO ('{upper.isoformat()}')"
        )
    )
    return name


def drop_partitions_before(conn: Connection, table: str, cutoff: datetime) -> list[str]:
    """Drop whole partitions of `table` whose day ends on or before `cutoff`."""
    if table not in PARTITIONED_TABLES:
        raise ValueError(f"not a partitioned table: {table}")
    dropped = []
    for day in list_partitions(conn, table):
        if datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1) <= cutoff:
            name = partition_name(table, day)
            conn.execute(text(f'DROP TABLE IF EXISTS "{name}"'))
            dropped.append(name)
    return dropped
