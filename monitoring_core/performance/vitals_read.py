"""Core Web Vitals for the pages and the Read API: p75 and rating shares per metric/page/device.

Whole days inside the range come from `web_vitals_rollup_1d`, whole hours from
`web_vitals_rollup_1h`; the partial hours at either end are aggregated from the raw
`web_vitals` rows with the same SQL the rollup uses, so a range starting at 09:13:20 counts
from 09:13:20. The p75 is rated with the web.dev thresholds (`performance.vitals`).
"""

# SQL here is assembled from this module's own table/column names and constants only; every
# value that comes from a caller is a bound parameter. Hence the file-wide S608 exemption.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from sqlalchemy import Connection

from monitoring_core.performance.vitals import VITAL_THRESHOLDS, rate_vital
from monitoring_core.rollup_read import DAY, HOUR, MINUTE, percentile_frame, segments
from monitoring_core.rollups import vitals_hist_select
from monitoring_core.timerange import TimeRange

__all__ = ["DIMENSIONS", "rating_of_p75", "web_vitals_summary"]

DIMENSIONS = ("name", "page_route", "device_type")
_COLUMNS = (
    "name, page_route, device_type, good, needs_improvement, poor, count, sum, min, max, "
    "hist_keys, hist_counts"
)


def rating_of_p75(name: str, value: float | None) -> str | None:
    """The web.dev rating of a p75; None when there is no value or the name is unknown."""
    if value is None or pd.isna(value) or name not in VITAL_THRESHOLDS:
        return None
    return rate_vital(name, float(value))


def _source(tr: TimeRange) -> tuple[str, dict[str, Any]]:
    """Whole days from the daily rollup, whole hours from the hourly one, the rest from raw."""
    tables = ("web_vitals_rollup_1d", "web_vitals_rollup_1h")
    parts, params = [], {}
    for n, (level, lo, hi) in enumerate(segments(tr.start, tr.end, (DAY, HOUR, MINUTE))):
        params[f"lo{n}"], params[f"hi{n}"] = lo, hi
        if level < len(tables):
            parts.append(
                f"SELECT {_COLUMNS} FROM {tables[level]} WHERE bucket >= :lo{n} AND bucket < :hi{n}"
            )
        else:
            parts.append(vitals_hist_select(None, f":lo{n}", f":hi{n}"))
    return " UNION ALL ".join(parts) or f"SELECT {_COLUMNS} FROM {tables[1]} WHERE false", params


def web_vitals_summary(
    conn: Connection, tr: TimeRange, by: Sequence[str] = DIMENSIONS
) -> pd.DataFrame:
    """Per group of `by` (a subset of name, page_route, device_type): count, p75, rating of
    the p75, and the good / needs-improvement / poor shares of all samples."""
    groups = [d for d in DIMENSIONS if d in by]
    if "name" not in groups or len(groups) != len(set(by)):
        raise ValueError(f"by must include 'name' and only use {DIMENSIONS}")
    source, params = _source(tr)
    sums = {name: name for name in ("count", "good", "needs_improvement", "poor")}
    frame = percentile_frame(conn, source, params, groups, sums, (0.75,))
    columns = [
        *groups,
        "count",
        "p75",
        "rating",
        "good_share",
        "needs_improvement_share",
        "poor_share",
    ]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    total = frame["count"].astype(float)
    for part in ("good", "needs_improvement", "poor"):
        frame[f"{part}_share"] = frame[part] / total
    frame["rating"] = [
        rating_of_p75(n, v) for n, v in zip(frame["name"], frame["p75"], strict=True)
    ]
    return frame[columns]
