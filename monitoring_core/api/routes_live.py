"""Live reads of raw recent metric points (any key)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from monitoring_core.api.deps import require_any_key
from monitoring_core.ingest.validate import InvalidItems, ItemError
from monitoring_core.metrics_live import parse_window, recent_points

__all__ = ["router"]

router = APIRouter(tags=["live"], dependencies=[Depends(require_any_key)])


@router.get("/api/monitoring/live/metrics")
async def live_metrics(
    request: Request,
    name: Annotated[str, Query(min_length=1, max_length=200)],
    window: str = "5m",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
) -> dict[str, Any]:
    """Raw points of metric `name` from the last `window` (30s, 5m, 2h … up to 24h)."""
    try:
        span = parse_window(window)
    except ValueError as exc:
        raise InvalidItems([ItemError(None, "window", str(exc))]) from None
    now = datetime.now(UTC)

    def read() -> dict[str, Any]:
        with request.app.state.engine.connect() as conn:
            return recent_points(conn, name=name, since=now - span, until=now, limit=limit)

    result = await run_in_threadpool(read)
    return {"metric_name": name, "window": window, "until": now.isoformat(), **result}
