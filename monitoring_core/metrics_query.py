"""Metric series for charts, the query API and the alert engine, read from the rollups.

`query_metric` bins the 1-minute rollups (intervals that are not whole hours) or the hourly
rollups with 1-minute edges (whole-hour intervals over ranges >= 3 h), see `rollup_read`.
Aggregations per bin and group:
- avg = sum / count of all points; min, max, sum, count over all points;
- p50/p95/p99 from the merged histograms (within 1 % of exact; merged with numpy, see
  `rollup_read.percentile_frame`);
- last = each series' newest value in the bin, averaged over the series of the group (a
  group that collapses several series of a gauge gets their mean, like Prometheus
  `avg(last_over_time(...))`).
With `max_series`, a query whose result has more groups (series) than that raises
TooManySeries (the API answers 422 naming the limit): fewer group_by dimensions or narrower
filters are the way out.
Bins without points are absent (no zero-filling: no data is not zero). Points not yet rolled
up (the worker's safety lag, ~15–30 s) are not included; `live_points` reads raw points
(rows and compacted chunks, through `points_reader`).
"""

# SQL here is assembled from this module's own table/column names and constants only; every
# value that comes from a caller is a bound parameter. Hence the file-wide S608 exemption.
# ruff: noqa: S608

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, text

from monitoring_core.points_reader import read_points_us
from monitoring_core.rollup_read import (
    floor_to,
    percentile_frame,
    q_name,
    range_source,
)
from monitoring_core.timerange import TimeRange, parse_interval

__all__ = [
    "AGGREGATIONS",
    "TooManySeries",
    "live_points",
    "metric_dimensions",
    "metric_names",
    "parse_interval",
    "query_metric",
]

AGGREGATIONS = ("avg", "min", "max", "sum", "count", "p50", "p95", "p99", "last")
_SIMPLE = {
    "avg": "sum(sum) / NULLIF(sum(count), 0)",
    "min": "min(min)",
    "max": "max(max)",
    "sum": "sum(sum)",
    "count": "sum(count)::float8",
}


class TooManySeries(ValueError):
    """A metrics query would return `found` series, more than `limit`."""

    def __init__(self, found: int, limit: int) -> None:
        self.found, self.limit = found, limit
        super().__init__(
            f"the query returns {found} series; the limit is {limit}: "
            "group by fewer dimensions or add filters"
        )


def _series_filter(
    metric_name: str, group_by: Sequence[str], filters: Mapping[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    dims = ", ".join(f"coalesce(dimensions->>:g{i}, '') AS g{i}" for i in range(len(group_by)))
    params: dict[str, Any] = {f"g{i}": name for i, name in enumerate(group_by)}
    params.update(name=metric_name, filters=json.dumps(dict(filters or {})))
    sql = (
        f"SELECT id{', ' if dims else ''}{dims} FROM metric_series "
        "WHERE name = :name AND dimensions @> CAST(:filters AS jsonb)"
    )
    return sql, params


def query_metric(
    conn: Connection,
    *,
    metric_name: str,
    aggregation: str,
    interval: timedelta | str,
    tr: TimeRange,
    group_by: Sequence[str] | None = None,
    filters: Mapping[str, Any] | None = None,
    max_series: int | None = None,
) -> pd.DataFrame:
    """Columns: bucket, one per group_by dimension (missing -> ''), value, count.

    TooManySeries when the result has more than `max_series` groups (None: no cap).
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}")
    step, group_by = parse_interval(interval), list(group_by or [])
    if step < timedelta(minutes=1) or step % timedelta(minutes=1):
        raise ValueError("interval must be a whole number of minutes, at least 1m")
    series_sql, params = _series_filter(metric_name, group_by, filters)
    source = range_source(
        "metric",
        tr,
        columns="series_id, bucket, count, sum, min, max, last, hist_keys, hist_counts",
        where="series_id IN (SELECT id FROM sel)",
        step=step,
    )
    params.update(source.params, step=step, origin=floor_to(tr.start, step))
    binned = (
        f"SELECT date_bin(:step, r.bucket, :origin) AS tbin, s.*, r.* FROM ({source.sql}) r "
        "JOIN sel s ON s.id = r.series_id"
    )
    result = _aggregated(conn, series_sql, binned, params, aggregation, group_by)
    if max_series is not None and group_by:
        found = len(result[group_by].drop_duplicates())
        if found > max_series:
            raise TooManySeries(found, max_series)
    return result


def _aggregated(
    conn: Connection,
    series_sql: str,
    binned: str,
    params: dict[str, Any],
    aggregation: str,
    group_by: list[str],
) -> pd.DataFrame:
    """`binned` (rollup rows with their bucket `tbin` and group columns) aggregated per
    bucket and group."""
    groups = ["tbin", *(f"g{i}" for i in range(len(group_by)))]
    if aggregation.startswith("p"):
        sql = f"WITH sel AS ({series_sql}) SELECT * FROM ({binned}) b"
        q = int(aggregation[1:]) / 100
        frame = percentile_frame(conn, sql, params, groups, {"count": "count"}, (q,))
        return _frame(frame.rename(columns={q_name(q): "value"}).to_dict("records"), group_by)
    sql = f"WITH sel AS ({series_sql}) " + _aggregate_sql(binned, groups, aggregation)
    return _frame(conn.execute(text(sql), params).mappings().all(), group_by)


def _aggregate_sql(binned: str, groups: list[str], aggregation: str) -> str:
    g = ", ".join(groups)
    if aggregation in _SIMPLE:
        return (
            f"SELECT {g}, {_SIMPLE[aggregation]} AS value, sum(count)::bigint AS count "
            f"FROM ({binned}) b GROUP BY {g} ORDER BY {g}"
        )
    if aggregation == "last":
        per_series = (
            f"SELECT {g}, series_id, sum(count) AS n, "
            f"(max(ARRAY[date_part('epoch', bucket), last]))[2] AS l "
            f"FROM ({binned}) b GROUP BY {g}, series_id"
        )
        return (
            f"SELECT {g}, avg(l) AS value, sum(n)::bigint AS count FROM ({per_series}) x "
            f"GROUP BY {g} ORDER BY {g}"
        )
    raise ValueError(f"no SQL aggregate for {aggregation!r}")


def _frame(rows: Sequence[Any], group_by: list[str]) -> pd.DataFrame:
    names = {"tbin": "bucket", **{f"g{i}": name for i, name in enumerate(group_by)}}
    columns = ["bucket", *group_by, "value", "count"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame([dict(r) for r in rows]).rename(columns=names)
    frame["value"] = frame["value"].astype(float)
    return frame[columns]


def live_points(
    conn: Connection,
    name: str,
    window: timedelta | str,
    *,
    now: datetime | None = None,
    limit: int = 10_000,
) -> pd.DataFrame:
    """Raw points of metric `name` in the last `window` (newest `limit`), oldest first.

    Columns: time, value, dimensions (dict), series_id. `now` defaults to the database clock.
    Read through `points_reader` (recent rows and compacted chunks alike).
    """
    columns = ["time", "value", "dimensions", "series_id"]
    if now is None:
        now = conn.execute(text("SELECT now()")).scalar_one()
    series: dict[int, Any] = dict(
        conn.execute(
            text("SELECT id, dimensions FROM metric_series WHERE name = :name"), {"name": name}
        ).all()
    )
    points = read_points_us(conn, list(series), now - parse_interval(window), now)
    if not points:
        return pd.DataFrame(columns=columns)
    ids = np.concatenate([np.full(len(t), sid, dtype=np.int64) for sid, (t, _) in points.items()])
    times = np.concatenate([t for t, _ in points.values()])
    values = np.concatenate([v for _, v in points.values()])
    newest = np.lexsort((ids, times))[-limit:]
    return pd.DataFrame(
        {
            "time": pd.to_datetime(times[newest], unit="us", utc=True),
            "value": values[newest],
            "dimensions": [series[int(i)] for i in ids[newest]],
            "series_id": ids[newest],
        }
    )


def metric_names(conn: Connection) -> pd.DataFrame:
    """Every stored metric (system, database, collectors, pushes): name, series count, and the
    catalog's unit, type and description where it has them."""
    rows = conn.execute(
        text(
            "SELECT s.name, count(*) AS series, coalesce(c.unit, '') AS unit,"
            " coalesce(c.metric_type, '') AS metric_type,"
            " coalesce(c.description, '') AS description"
            " FROM metric_series s LEFT JOIN metric_catalog c ON c.name = s.name"
            " GROUP BY s.name, c.unit, c.metric_type, c.description ORDER BY s.name"
        )
    ).mappings()
    return pd.DataFrame(rows, columns=["name", "series", "unit", "metric_type", "description"])


def metric_dimensions(
    conn: Connection, metric_name: str, *, limit: int = 200
) -> dict[str, list[str]]:
    """A metric's dimension names with their values (at most `limit` values each), for filters."""
    rows = conn.execute(
        text(
            "SELECT d.key, array_agg(DISTINCT d.value ORDER BY d.value) AS vals"
            " FROM metric_series s, jsonb_each_text(s.dimensions) d"
            " WHERE s.name = :name GROUP BY d.key ORDER BY d.key"
        ),
        {"name": metric_name},
    )
    return {str(key): list(values)[:limit] for key, values in rows}
