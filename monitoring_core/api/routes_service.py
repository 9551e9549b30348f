"""Service routes: /healthz (open: load balancers), and behind `require_service_reader` (a
read key unless MONITORING_OPEN_SERVICE_ROUTES=1): /metrics (the API's own metrics and
the storage figures),
/openapi.json and its two viewers /docs and /redoc."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from monitoring_core.api.deps import require_service_reader
from monitoring_core.db import ping
from monitoring_core.storage import prometheus_lines, storage_figures

__all__ = ["router"]

log = logging.getLogger(__name__)
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


STORAGE_EVERY_S = 60.0  # the storage figures are measured at most this often per app
_storage_lock = threading.Lock()


def _storage_text(engine: Engine, caches: dict[str, Any]) -> str:
    """`monitoring_core.storage` figures in text format, remeasured at most once a minute;
    kept in the app's `caches`, which `reset_app_state` empties with the rest of its state."""
    with _storage_lock:
        at, body = caches.get("storage_figures", (0.0, ""))
        if time.monotonic() - at < STORAGE_EVERY_S:
            return body
        try:
            with engine.connect() as conn:
                body = prometheus_lines(storage_figures(conn, datetime.now(UTC)))
        except SQLAlchemyError:  # the API's own metrics still answer; tried again next minute
            log.warning("storage figures for /metrics not measured", exc_info=True)
            body = ""
        caches["storage_figures"] = (time.monotonic(), body)
        return body


@guarded.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text format of this API process's own metrics and of the storage figures
    (bytes per sample per table, size per tier, compaction lag, projected year)."""
    state = request.app.state
    storage = await run_in_threadpool(_storage_text, state.engine, state.caches)
    return PlainTextResponse(
        request.app.state.stats.render() + storage,
        media_type="text/plain; version=0.0.4; charset=utf-8",
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
