"""Reading the rollup tables: which table covers which part of a range, and percentiles in SQL.

Resolution rule (documented for every read function built on it): a range is cut into the
coarsest whole buckets that fit — whole UTC days from the daily rollups, whole hours left at
either end from the hourly ones, minutes left at the very ends from the 1-minute ones — so a
30-day range reads ~30 rows per series plus two partial days of hours, and is still exact to
the minute. A chart interval limits the levels to those that divide it (5-minute bins read
1-minute rows; 6-hour bins read hours; daily bins read days).
A 1-minute bucket belongs to the range when its start lies in [floor_minute(start), end).
Points not yet rolled up (the worker's safety lag, ~15–30 s) are not included.

Percentiles: the rollup rows' histograms are fetched and merged per group with numpy
(`percentile_frame`); rank q * (n - 1) of the merged buckets, within 1 % of exact.
"""

# SQL here is assembled from this module's own table/column names and constants only; every
# value that comes from a caller is a bound parameter. Hence the file-wide S608 exemption.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection, text

from monitoring_core.histogram import grouped_quantiles
from monitoring_core.timerange import TimeRange

__all__ = [
    "DAY",
    "HOUR",
    "MINUTE",
    "ROLLUP_TABLES",
    "RangeSource",
    "ceil_to",
    "floor_to",
    "percentile_frame",
    "q_name",
    "range_source",
    "segments",
]

MINUTE, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
# family -> (width, table) from the coarsest level to the finest
SIX_HOURS = 6 * HOUR
ROLLUP_TABLES: dict[str, tuple[tuple[timedelta, str], ...]] = {
    "api": (
        (DAY, "api_rollup_1d"),
        (SIX_HOURS, "api_rollup_6h"),
        (HOUR, "api_rollup_1h"),
        (MINUTE, "api_rollup_1m"),
    ),
    "api_total": (
        (DAY, "api_total_1d"),
        (SIX_HOURS, "api_total_6h"),
        (HOUR, "api_total_1h"),
        (MINUTE, "api_total_1m"),
    ),
    "metric": (
        (DAY, "metric_rollup_1d"),
        (SIX_HOURS, "metric_rollup_6h"),
        (HOUR, "metric_rollup_1h"),
        (MINUTE, "metric_rollup_1m"),
    ),
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


def q_name(q: float) -> str:
    """0.95 -> "p95", 0.5 -> "p50", 0.75 -> "p75"."""
    return f"p{round(q * 100):d}"


def percentile_frame(
    conn: Connection,
    sql: str,
    params: Mapping[str, Any],
    groups: Sequence[str],
    sums: Mapping[str, str],
    quantiles: Sequence[float] = (0.5, 0.95, 0.99),
) -> pd.DataFrame:
    """One row per group: the `sums` (output name -> column summed) and p50/p95/... columns.

        `sql` (trusted, bound parameters) yields the group columns, the summed columns and
        `hist_keys` / `hist_counts`, one row per stored rollup row; group values are never NULL.
        An empty `hist_counts` means a count of 1 per key (1-minute rows, see rollups.py).
    Summed columns are integers except the one named `sum` (a double).
        Postgres sums the scalars and concatenates each group's buckets (`unnest` + `array_agg`,
        no per-key GROUP BY); numpy merges and ranks them (`histogram.grouped_quantiles`).
        Measured on 30 days of data this is 3-5x faster than merging per key with window
        functions in SQL, and far faster than fetching every rollup row into pandas.
    """
    g = ", ".join(groups)
    totals = ", ".join(
        f"sum({col})::{'float8' if col == 'sum' else 'bigint'} AS {name}"
        for name, col in sums.items()
    )
    query = (
        f"WITH src AS MATERIALIZED ({sql}) "
        f"SELECT t.*, h.keys AS hist_keys, h.counts AS hist_counts FROM "
        f"(SELECT {g}, {totals} FROM src GROUP BY {g}) t JOIN "
        f"(SELECT {g}, array_agg(u.k) AS keys, array_agg(coalesce(u.c, 1)) AS counts FROM src, "
        f"unnest(src.hist_keys, src.hist_counts) AS u(k, c) GROUP BY {g}) h USING ({g}) "
        f"ORDER BY {g}"
    )
    result = conn.execute(text(query), dict(params))
    names = [*groups, *sums, *(q_name(q) for q in quantiles)]
    rows = result.all()
    if not rows:
        return pd.DataFrame(columns=names)
    columns = dict(zip(result.keys(), zip(*rows, strict=True), strict=True))
    values = grouped_quantiles(
        range(len(rows)),
        columns.pop("hist_keys"),
        columns.pop("hist_counts"),
        len(rows),
        quantiles,
    )
    frame = pd.DataFrame({name: list(col) for name, col in columns.items()})
    for j, q in enumerate(quantiles):
        frame[q_name(q)] = values[:, j]
    return frame[names]
