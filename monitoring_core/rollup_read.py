"""Reading the rollup tables: which table covers which part of a range, and percentiles in SQL.

Resolution rule (documented for every read function built on it): a range is cut into the
coarsest whole buckets that fit — whole UTC days from the daily rollups, whole hours left at
either end from the hourly ones, minutes left at the very ends from the 1-minute ones — so a
30-day range reads ~30 rows per series plus two partial days of hours, and is still exact to
the minute. A chart interval limits the levels to those that divide it (5-minute bins read
1-minute rows; 6-hour bins read hours; daily bins read days).
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
    "DAY",
    "HOUR",
    "MINUTE",
    "ROLLUP_TABLES",
    "RangeSource",
    "ceil_to",
    "floor_to",
    "percentile_select",
    "range_source",
    "segments",
]

MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
# family -> (width, table) from the coarsest level to the finest
ROLLUP_TABLES: dict[str, tuple[tuple[timedelta, str], ...]] = {
    "api": ((DAY, "api_rollup_1d"), (HOUR, "api_rollup_1h"), (MINUTE, "api_rollup_1m")),
    "api_total": ((DAY, "api_total_1d"), (HOUR, "api_total_1h"), (MINUTE, "api_total_1m")),
    "metric": ((DAY, "metric_rollup_1d"), (HOUR, "metric_rollup_1h"), (MINUTE, "metric_rollup_1m")),
}
_EPOCH = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday: weekly buckets start on Mondays


def floor_to(moment: datetime, step: timedelta) -> datetime:
    """`moment` rounded down to a multiple of `step` since 2000-01-03 UTC."""
    return _EPOCH + ((moment - _EPOCH) // step) * step


def ceil_to(moment: datetime, step: timedelta) -> datetime:
    floor = floor_to(moment, step)
    return floor if floor == moment else floor + step


def segments(
    lo: datetime, hi: datetime, widths: Sequence[timedelta]
) -> list[tuple[int, datetime, datetime]]:
    """Cut [lo, hi) into (level index, start, end): whole buckets of widths[0] in the middle,
    the ends recursively with the finer widths; the last width takes whatever is left."""
    if hi <= lo:
        return []
    if len(widths) == 1:
        return [(0, lo, hi)]
    inner_lo, inner_hi = ceil_to(lo, widths[0]), floor_to(hi, widths[0])
    if inner_hi <= inner_lo:
        return [(i + 1, a, b) for i, a, b in segments(lo, hi, widths[1:])]
    left = [(i + 1, a, b) for i, a, b in segments(lo, inner_lo, widths[1:])]
    right = [(i + 1, a, b) for i, a, b in segments(inner_hi, hi, widths[1:])]
    return [*left, (0, inner_lo, inner_hi), *right]


@dataclass(frozen=True)
class RangeSource:
    """A FROM-able SQL subquery over the rollups of one family for a range, and its params."""

    sql: str
    params: dict[str, Any]


def range_source(
    family: str,
    tr: TimeRange,
    *,
    columns: str,
    where: str = "",
    step: timedelta | None = None,
) -> RangeSource:
    """UNION ALL of the rollup levels covering `tr` (see the module docstring).

    `step` (a chart interval) keeps only the levels whose width divides it. `columns` and
    `where` are trusted SQL from this code base with bound parameters, never user input.
    """
    levels = [(w, t) for w, t in ROLLUP_TABLES[family] if step is None or not step % w]
    extra = f" AND ({where})" if where else ""
    parts, params = [], {}
    cut = segments(floor_to(tr.start, MINUTE), tr.end, [w for w, _ in levels])
    for n, (level, lo, hi) in enumerate(cut):
        parts.append(
            f"SELECT {columns} FROM {levels[level][1]} "
            f"WHERE bucket >= :lo{n} AND bucket < :hi{n}{extra}"
        )
        params[f"lo{n}"], params[f"hi{n}"] = lo, hi
    if not parts:  # an empty range: a query that returns nothing, in the same shape
        parts.append(f"SELECT {columns} FROM {levels[-1][1]} WHERE false")
    return RangeSource(" UNION ALL ".join(parts), params)


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
