"""Admin-defined SQL collectors: a query against any database becomes metric points.

The query runs on its own connection in a READ ONLY transaction with a statement timeout, as
one statement through the extended protocol (so `…; DELETE …` cannot ride along), and never
as a privileged role (`collectors.readonly`). `self` means the monitoring database read as
the `monitoring_reader` role: `pg_stat_*` and the tables an admin granted, never the secret
tables. A result of more than MAX_ROWS rows is an error, not a silent truncation. The column
`value` (or the only numeric column) is the value; `metric_name`, if present, names the
metric; every other column becomes a dimension. Example: `SELECT state, count(*) AS value
FROM pg_stat_activity GROUP BY state`.
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from monitoring_core.collectors.readonly import SELF_URL, resolve_url, run_readonly_query
from monitoring_core.ingest.points import MetricPoint

__all__ = ["MAX_ROWS", "SELF_URL", "SqlCollector", "SqlCollectorError", "rows_to_points"]

MAX_ROWS = 1000
SOURCE_SYSTEM = "sql_collector"


class SqlCollectorError(ValueError):
    """The query's result cannot be read as metric points."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _value_column(columns: list[str], first: tuple[Any, ...]) -> str:
    if "value" in columns:
        return "value"
    numeric = [
        c for c, v in zip(columns, first, strict=True) if _is_number(v) and c != "metric_name"
    ]
    if len(numeric) != 1:
        raise SqlCollectorError("name the value column `value` (found no single numeric column)")
    return numeric[0]


def rows_to_points(
    columns: list[str],
    rows: list[tuple[Any, ...]],
    *,
    metric_name: str,
    collector: str,
    now: datetime,
) -> list[MetricPoint]:
    """Pure: query rows as points; NULL or non-finite values are skipped."""
    if not rows:
        return []
    value_col = _value_column(columns, rows[0])
    points = []
    for row in rows[:MAX_ROWS]:
        record = dict(zip(columns, row, strict=True))
        value = record.pop(value_col)
        name = str(record.pop("metric_name", None) or metric_name)
        if value is None or not _is_number(value) or not math.isfinite(float(value)):
            continue
        dims = {k: "" if v is None else str(v) for k, v in record.items()}
        points.append(
            MetricPoint(name, float(value), now, {**dims, "collector": collector}, SOURCE_SYSTEM)
        )
    return points


class SqlCollector:
    def __init__(
        self,
        *,
        name: str,
        url: str,
        query: str,
        metric_name: str | None,
        interval_seconds: int = 60,
        timeout_seconds: float = 5.0,
        self_engine: Engine | None = None,
    ) -> None:
        self.name = name
        self.interval_seconds = interval_seconds
        self._url, self._query = url, query
        self._metric_name = metric_name or name
        self._timeout = timeout_seconds
        self._self_engine = self_engine

    def collect(self, now: datetime) -> list[MetricPoint]:
        if self._url == SELF_URL and self._self_engine is not None:
            self._check_same_database(self._self_engine)
        columns, rows = run_readonly_query(
            self._url, self._query, timeout=self._timeout, max_rows=MAX_ROWS
        )
        return rows_to_points(
            columns, rows, metric_name=self._metric_name, collector=self.name, now=now
        )

    @staticmethod
    def _check_same_database(engine: Engine) -> None:
        """`self` must read the database the worker writes: a reader URL elsewhere is a mistake."""
        reader_database = make_url(resolve_url(SELF_URL)[0]).database
        if reader_database != engine.url.database:
            raise SqlCollectorError(
                f"DATABASE_READER_URL names database {reader_database!r}, "
                f"but the monitoring database is {engine.url.database!r}"
            )
