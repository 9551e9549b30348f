"""Admin-defined SQL collectors: a query against any database becomes metric points.

The query runs on its own connection in a READ ONLY transaction with a statement timeout, as
one statement through the extended protocol (so `…; DELETE …` cannot ride along). The column
`value` (or the only numeric column) is the value; `metric_name`, if present, names the
metric; every other column becomes a dimension. Example: `SELECT plan, count(*) AS value
FROM users GROUP BY plan`. Use a database role with SELECT rights only, too.
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine

from monitoring_core.collectors.readonly import run_readonly_query
from monitoring_core.ingest.points import MetricPoint

__all__ = ["MAX_ROWS", "SqlCollector", "rows_to_points"]

MAX_ROWS = 1000
SOURCE_SYSTEM = "sql_collector"
SELF_URL = "self"  # the monitoring database itself


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
        url = self._url
        if url == SELF_URL and self._self_engine is not None:
            url = self._self_engine.url.render_as_string(hide_password=False)
        columns, rows = run_readonly_query(
            url, self._query, timeout=self._timeout, max_rows=MAX_ROWS
        )
        return rows_to_points(
            columns, rows, metric_name=self._metric_name, collector=self.name, now=now
        )
