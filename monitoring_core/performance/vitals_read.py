"""Core Web Vitals for the pages and the Read API: p75 and rating shares per metric/page/device.

Whole hours inside the range come from `web_vitals_rollup_1h`; the partial hours at either end
are aggregated from the raw `web_vitals` rows with the same SQL the rollup uses, so a range
starting at 09:13 counts from 09:13. The p75 is rated with the web.dev thresholds (`performance.vitals`).
"""

# SQL here is assembled from this module's own table/column names and constants only; every
# value that comes from a caller is a bound parameter. Hence the file-wide S608 exemption.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from sqlalchemy import Connection, text

from monitoring_core.performance.vitals import VITAL_THRESHOLDS, rate_vital
from monitoring_core.rollup_read import HOUR, floor_to, percentile_select
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
    h_lo, h_hi = floor_to(tr.start, HOUR), floor_to(tr.end, HOUR)
    h_lo += HOUR if h_lo < tr.start else HOUR * 0
    if h_hi <= h_lo:  # no whole hour inside: everything from raw
        return vitals_hist_select(None, ":lo", ":hi"), {"lo": tr.start, "hi": tr.end}
    edges = " UNION ALL ".join(
        vitals_hist_select(None, lo, hi) for lo, hi in ((":lo", ":h_lo"), (":h_hi", ":hi"))
    )
    sql = (
        f"SELECT {_COLUMNS} FROM web_vitals_rollup_1h "
        f"WHERE bucket >= :h_lo AND bucket < :h_hi UNION ALL {edges}"
    )
    return sql, {"lo": tr.start, "hi": tr.end, "h_lo": h_lo, "h_hi": h_hi}


def web_vitals_summary(
    conn: Connection, tr: TimeRange, by: Sequence[str] = DIMENSIONS
) -> pd.DataFrame:
    """Per group of `by` (a subset of name, page_route, device_type): count, p75, rating of
    the p75, and the good / needs-improvement / poor shares of all samples."""
    groups = [d for d in DIMENSIONS if d in by]
    if "name" not in groups or len(groups) != len(set(by)):
        raise ValueError(f"by must include 'name' and only use {DIMENSIONS}")
    source, params = _source(tr)
    aggs = (
        "sum(count)::bigint AS count, sum(good)::bigint AS good, "
        "sum(needs_improvement)::bigint AS needs_improvement, sum(poor)::bigint AS poor"
    )
    sql = percentile_select(source, groups, aggs, (0.75,))
    frame = pd.DataFrame([dict(r) for r in conn.execute(text(sql), params).mappings()])
    columns = [*groups, "count", "p75", "rating", "good_share", "needs_improvement_share",
               "poor_share"]  # fmt: skip
    if frame.empty:
        return pd.DataFrame(columns=columns)
    total = frame["count"].astype(float)
    for part in ("good", "needs_improvement", "poor"):
        frame[f"{part}_share"] = frame[part] / total
    frame["rating"] = [
        rating_of_p75(n, v) for n, v in zip(frame["name"], frame["p75"], strict=True)
    ]
    return frame[columns]
