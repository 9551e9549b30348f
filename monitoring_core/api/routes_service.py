"""Service routes: /healthz and /metrics (the API's own metrics). /openapi.json is FastAPI's."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from monitoring_core.db import ping

__all__ = ["router"]

router = APIRouter(tags=["service"])


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """200 when the database answers, else 503."""
    if await run_in_threadpool(ping, request.app.state.engine):
        return JSONResponse({"status": "ok", "database": "ok"})
    return JSONResponse(
        {"status": "unavailable", "database": "unreachable"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text format of this API process's own metrics."""
    return PlainTextResponse(
        request.app.state.stats.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
