"""Reading the rollup tables: which table covers which part of a range, and percentiles in SQL.

Resolution rule (documented for every read function built on it):
- a range shorter than `HOURLY_FROM` or a chart interval finer than an hour reads the 1-minute
  rollups only;
- a longer range reads the 1-hour rollups for the whole hours inside it and the 1-minute
  rollups for the partial hours at both ends, so a 24 h range starting at 09:13 is exact to
  the minute and still reads ~20 hourly rows per endpoint instead of 1,440.
A 1-minute bucket belongs to the range when its start lies in [floor_minute(start), end).
Points not yet rolled up (the worker's safety lag, ~15–30 s) are not included.

Percentiles are computed inside Postgres: the histograms of all rows of a group are merged by
`unnest` + `sum` per key, a running sum finds the bucket holding rank q * (n - 1), and the
key is turned back into its representative value (`histogram.sql_bucket_value`).
"""

# SQL here is assembled from this module's own table/column names and constants only; every
# value that comes from a caller is a bound parameter. Hence the file-wide S608 exemption.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from monitoring_core.histogram import sql_bucket_value
from monitoring_core.timerange import TimeRange

__all__ = [
    "HOURLY_FROM",
    "ROLLUP_TABLES",
    "RangeSource",
    "floor_to",
    "percentile_select",
    "range_source",
]

HOURLY_FROM = timedelta(hours=3)
ROLLUP_TABLES = {
    "api": ("api_rollup_1m", "api_rollup_1h"),
    "metric": ("metric_rollup_1m", "metric_rollup_1h"),
}
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
_EPOCH = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday: weekly buckets start on Mondays


def floor_to(moment: datetime, step: timedelta) -> datetime:
    """`moment` rounded down to a multiple of `step` since 2000-01-03 UTC."""
    return _EPOCH + ((moment - _EPOCH) // step) * step


@dataclass(frozen=True)
class RangeSource:
    """A FROM-able SQL subquery over the rollups of one family for a range, and its params."""

    sql: str
    params: dict[str, Any]


def range_source(
    family: str, tr: TimeRange, *, columns: str, where: str = "", fine: bool = False
) -> RangeSource:
    """UNION ALL of the hourly and minute rollups covering `tr` (see the module docstring).

    `columns` and `where` are trusted SQL from this code base (column lists and conditions
    with bound parameters), never user input.
    """
    minute_t, hour_t = ROLLUP_TABLES[family]
    extra = f" AND ({where})" if where else ""
    m_lo, m_hi = floor_to(tr.start, MINUTE), tr.end
    h_lo, h_hi = floor_to(m_lo + HOUR - MINUTE, HOUR), floor_to(m_hi, HOUR)
    params = {"m_lo": m_lo, "m_hi": m_hi, "h_lo": h_lo, "h_hi": h_hi}
    if fine or tr.duration < HOURLY_FROM or h_hi <= h_lo:
        sql = f"SELECT {columns} FROM {minute_t} WHERE bucket >= :m_lo AND bucket < :m_hi{extra}"
        return RangeSource(sql, params)
    sql = (
        f"SELECT {columns} FROM {hour_t} WHERE bucket >= :h_lo AND bucket < :h_hi{extra} "
        f"UNION ALL SELECT {columns} FROM {minute_t} WHERE "
        f"((bucket >= :m_lo AND bucket < :h_lo) OR (bucket >= :h_hi AND bucket < :m_hi)){extra}"
    )
    return RangeSource(sql, params)


def _q_name(q: float) -> str:
    return f"p{round(q * 100):d}"


def percentile_select(
    source_sql: str,
    groups: Sequence[str],
    aggregates: str,
    quantiles: Sequence[float] = (0.5, 0.95, 0.99),
) -> str:
    """SQL: one row per group of `source_sql` with `aggregates` and p50/p95/p99 columns.

    `source_sql` must yield the group columns plus `hist_keys` and `hist_counts`; `groups` are
    its column names (at least one) and `aggregates` a trusted select list over it, e.g.
    "sum(count) AS requests". Every name here comes from this code base.
    """
    g = ", ".join(groups)
    picks = ", ".join(
        f"min(k) FILTER (WHERE cum > {q!r} * (n - 1)) AS k_{_q_name(q)}" for q in quantiles
    )
    values = ", ".join(
        f"{sql_bucket_value(f'q.k_{_q_name(q)}')} AS {_q_name(q)}" for q in quantiles
    )
    return (
        f"WITH src AS MATERIALIZED ({source_sql}), "
        f"tot AS (SELECT {g}, {aggregates} FROM src GROUP BY {g}), "
        f"h AS (SELECT {g}, u.k, sum(u.c) AS c FROM src, "
        f"unnest(src.hist_keys, src.hist_counts) AS u(k, c) GROUP BY {g}, u.k), "
        f"cum AS (SELECT {g}, k, sum(c) OVER (PARTITION BY {g} ORDER BY k) AS cum, "
        f"sum(c) OVER (PARTITION BY {g}) AS n FROM h), "
        f"q AS (SELECT {g}, {picks} FROM cum GROUP BY {g}) "
        f"SELECT tot.*, {values} FROM tot LEFT JOIN q USING ({g}) ORDER BY {g}"
    )
