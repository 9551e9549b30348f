"""When a metric's data stopped: the newest point per series, for instances entering no data.

A threshold rule reads only its window, so when the window is empty the engine knows only
that the data stopped at least a window ago. The cycle asks here, once per cycle and only
for rules that just entered no data, for the newest point of each of their metrics' series
within `LOOKBACK` (one index probe per series and partition: `ORDER BY time DESC LIMIT 1`,
and one per series into the compacted chunks, through `points_reader.newest_times`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from monitoring_core.points_reader import newest_times

__all__ = ["LOOKBACK", "Seen", "last_point", "newest_points"]

LOOKBACK = timedelta(days=7)  # older than this: "at least a week", the engine's bound stays
# metric name -> [(series dimensions, newest point time)]
Seen = Mapping[str, Sequence[tuple[Mapping[str, Any], datetime]]]

_SERIES = text("SELECT id, name, dimensions FROM metric_series WHERE name = ANY(:names)")


def newest_points(conn: Connection, *, names: Sequence[str], now: datetime) -> Seen:
    """The newest point at or before `now` (within LOOKBACK) of every series of `names`,
    rows and compacted chunks alike (`points_reader.newest_times`)."""
    out: dict[str, list[tuple[Mapping[str, Any], datetime]]] = {}
    if not names:
        return out
    series = conn.execute(_SERIES, {"names": sorted(set(names))}).all()
    newest = newest_times(conn, [sid for sid, _, _ in series], now - LOOKBACK, now)
    for sid, name, dims in series:
        if sid in newest:
            out.setdefault(name, []).append((dims or {}, newest[sid]))
    return out


def last_point(
    seen: Seen, metric: str, filters: Mapping[str, Any], dims: Mapping[str, Any]
) -> datetime | None:
    """The newest point of the series matching a rule's filters and an alert key's dimensions."""
    wanted = {**filters, **dims}
    times = [
        moment
        for series_dims, moment in seen.get(metric, ())
        if all(str(series_dims.get(k)) == str(v) for k, v in wanted.items())
    ]
    return max(times, default=None)
