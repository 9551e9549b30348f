"""Raw recent points of one metric, for the live view (no rollups: seconds-fresh data)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from monitoring_core.schema import metric_points, metric_series

__all__ = ["MAX_WINDOW", "parse_window", "recent_points"]

MAX_WINDOW = timedelta(hours=24)
_WINDOW = re.compile(r"^(\d{1,6})([smh])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours"}


def parse_window(text: str) -> timedelta:
    """`30s`, `5m`, `2h` (up to 24h); ValueError says what is accepted."""
    match = _WINDOW.match(text.strip())
    if not match:
        raise ValueError(f"window must look like 30s, 5m or 2h, got {text!r}")
    window = timedelta(**{_UNITS[match[2]]: int(match[1])})
    if not timedelta(0) < window <= MAX_WINDOW:
        raise ValueError("window must be between 1s and 24h")
    return window


def recent_points(
    conn: Connection, *, name: str, since: datetime, until: datetime, limit: int = 10_000
) -> dict[str, Any]:
    """Points of `name` in [since, until] grouped by series, oldest first, at most `limit`."""
    rows = conn.execute(
        select(
            metric_series.c.id,
            metric_series.c.dimensions,
            metric_points.c.time,
            metric_points.c.value,
        )
        .join(metric_series, metric_series.c.id == metric_points.c.series_id)
        .where(
            metric_series.c.name == name,
            metric_points.c.time >= since,
            metric_points.c.time <= until,
        )
        .order_by(metric_points.c.time.desc())
        .limit(limit + 1)
    ).all()
    series: dict[int, dict[str, Any]] = {}
    for row in reversed(rows[:limit]):
        entry = series.setdefault(row.id, {"dimensions": row.dimensions, "points": []})
        entry["points"].append([row.time.isoformat(), row.value])
    return {"series": list(series.values()), "truncated": len(rows) > limit}
