"""Live reads of raw recent metric points (scope read or admin)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from monitoring_core.api.deps import require_read
from monitoring_core.ingest.validate import InvalidItems, ItemError
from monitoring_core.metrics_query import live_points, parse_interval

__all__ = ["router"]

router = APIRouter(tags=["live"], dependencies=[Depends(require_read)])
MAX_WINDOW = timedelta(hours=24)


def _window(text: str) -> timedelta:
    try:
        span = parse_interval(text)
    except ValueError as exc:
        raise InvalidItems([ItemError(None, "window", str(exc))]) from None
    if span > MAX_WINDOW:
        raise InvalidItems([ItemError(None, "window", "must be at most 24h")])
    return span


@router.get("/api/monitoring/live/metrics")
async def live_metrics(
    request: Request,
    name: Annotated[str, Query(min_length=1, max_length=200)],
    window: str = "5m",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
) -> dict[str, Any]:
    """Raw points of metric `name` from the last `window` (30s, 5m, 2h … up to 24h), by series.

    More series than MONITORING_MAX_QUERY_SERIES: 422 naming the limit."""
    span, now = _window(window), datetime.now(UTC)

    def read() -> Any:
        with request.app.state.read.connect() as conn:
            return live_points(conn, name, span, now=now, limit=limit)

    frame = await run_in_threadpool(read)
    series: dict[int, dict[str, Any]] = {}
    for row in frame.itertuples(index=False):
        entry = series.setdefault(row.series_id, {"dimensions": row.dimensions, "points": []})
        entry["points"].append([row.time.isoformat(), float(row.value)])
    cap = request.app.state.settings.max_query_series
    if len(series) > cap:  # the series cap of metrics queries applies to live reads too
        message = (
            f"the window holds {len(series)} series of {name!r}; the limit is {cap}: "
            "use a shorter window, or the query API with group_by and filters"
        )
        raise InvalidItems([ItemError(None, "name", message)])
    return {
        "metric_name": name,
        "window": window,
        "until": now.isoformat(),
        "series": list(series.values()),
        "truncated": len(frame) >= limit,
    }
