"""Service routes: /healthz (open: load balancers), and behind `require_service_reader` (a
read key unless MONITORING_OPEN_SERVICE_ROUTES=1): /metrics (the API's own metrics),
/openapi.json and its two viewers /docs and /redoc."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from monitoring_core.api.deps import require_service_reader
from monitoring_core.db import ping

__all__ = ["router"]

router = APIRouter(tags=["service"])
guarded = APIRouter(tags=["service"], dependencies=[Depends(require_service_reader)])


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


@guarded.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text format of this API process's own metrics."""
    return PlainTextResponse(
        request.app.state.stats.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


@guarded.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@guarded.get("/docs", include_in_schema=False)
async def docs(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title=request.app.title + " - docs")


@guarded.get("/redoc", include_in_schema=False)
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(openapi_url="/openapi.json", title=request.app.title + " - ReDoc")


router.include_router(guarded)
