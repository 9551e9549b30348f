"""The FastAPI application: state, middleware, error mapping and the list of routers."""

from __future__ import annotations

import importlib
import logging
import re

import psycopg
import sqlalchemy.exc
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from monitoring_core.api.keys import KeyCache
from monitoring_core.api.params import NulGuard
from monitoring_core.api.ratelimit import RateLimiter
from monitoring_core.api.shared_limits import UsageSync
from monitoring_core.api.stats import ApiStats, StatsMiddleware
from monitoring_core.config import Settings
from monitoring_core.db import DatabaseUnavailable
from monitoring_core.ingest.validate import InvalidItems
from monitoring_core.live_settings import LiveCache
from monitoring_core.replica import read_router

__all__ = ["CORS_PATHS", "DB_UNAVAILABLE_ERRORS", "RETRY_AFTER_S", "create_app", "reset_app_state"]

log = logging.getLogger(__name__)

# Routes browsers post to (sendBeacon, fetch from web pages, Sentry's browser SDK): CORS on.
CORS_PATHS = re.compile(
    r"^/api/(monitoring/(metrics|performance|errors|business-events|heartbeat/.+)"
    r"|[^/]+/(envelope|store))/?$"
)
DB_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # connection pool exhausted
    psycopg.OperationalError,  # raw driver use (COPY) is not wrapped by SQLAlchemy
    psycopg.InterfaceError,
    DatabaseUnavailable,
)
RETRY_AFTER_S = 5


def _router(module: str) -> APIRouter:
    router: APIRouter = importlib.import_module(f"monitoring_core.api.{module}").router
    return router


def reset_app_state(app: FastAPI) -> None:
    """Fresh in-process caches (key lookups, rate buckets, series ids); tests call it per test."""
    app.state.keys = KeyCache(app.state.engine)
    app.state.limiter = RateLimiter()
    previous = getattr(app.state, "usage_sync", None)
    if previous is not None:
        previous.stop()
    # per-key use shared with the other API processes through Postgres (started on first use)
    app.state.usage_sync = UsageSync(app.state.engine, app.state.limiter)
    # ingest caches by name and /metrics' storage figures, created on first use
    app.state.caches = {}
    # the wedding calendar and default key limits an admin changes live (5 s at most behind)
    app.state.live = LiveCache(app.state.engine, app.state.settings)


def create_app(settings: Settings, engine: Engine) -> FastAPI:
    """The API on this engine; nothing connects until the first request."""
    app = FastAPI(
        title="Wedding platform monitoring API",
        version="1.0",
        description="Ingest, live reads, read API and admin of the monitoring system.",
        # served by routes_service behind a read key (MONITORING_OPEN_SERVICE_ROUTES opens them)
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    # read-API queries go to DATABASE_READ_URL's replica while it is usable (docs/SCALING.md)
    app.state.read = read_router(settings, engine)
    app.state.stats = ApiStats()
    reset_app_state(app)
    _add_exception_handlers(app)
    app.add_middleware(IngestCORS)
    app.add_middleware(NulGuard)  # no NUL in any path or query parameter (params.py)
    app.add_middleware(StatsMiddleware, stats=app.state.stats)
    # One line per domain: each module exposes `router` (an APIRouter). OTLP first: FastAPI
    # matches a request against the included routers in order, ~0.4 ms to reach the OTLP
    # routes at the end of the list (~1 µs a span of a 512-span export); no other route
    # shares their paths.
    app.include_router(_router("routes_otlp"))
    app.include_router(_router("routes_service"))
    app.include_router(_router("routes_ingest"))
    app.include_router(_router("routes_errors"))
    app.include_router(_router("routes_live"))
    app.include_router(_router("routes_stream"))
    app.include_router(_router("routes_read"))
    app.include_router(_router("routes_health"))
    app.include_router(_router("routes_business"))
    app.include_router(_router("routes_alerts"))
    app.include_router(_router("routes_incidents"))
    app.include_router(_router("routes_oncall"))
    app.include_router(_router("routes_admin_keys"))
    app.include_router(_router("routes_ack"))
    app.include_router(_router("routes_prom"))
    # The Sentry SDK routes (one event per request) are matched first, as plain Starlette
    # routes: FastAPI's walk through the included routers cost more than the route itself.
    app.router.routes[:0] = importlib.import_module("monitoring_core.api.routes_errors").LEAN_ROUTES
    return app


class IngestCORS:
    """CORS (any origin, no cookies: keys travel in headers or ?key=) on ingest paths only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=["*"],
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=["Retry-After"],
            max_age=86400,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and CORS_PATHS.match(scope["path"]):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _add_exception_handlers(app: FastAPI) -> None:
    async def invalid_items(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InvalidItems)
        return JSONResponse({"detail": [e.as_dict() for e in exc.errors]}, status_code=422)

    async def request_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        for error in errors:
            if error.get("type") == "json_invalid":  # unreadable, not invalid: docs/API.md says 400
                what = error.get("ctx", {}).get("error", "invalid")
                at = [part for part in error.get("loc", ()) if isinstance(part, int)]
                where = f" at char {at[0]}" if at else ""
                return JSONResponse({"detail": f"malformed JSON: {what}{where}"}, status_code=400)
        return JSONResponse({"detail": [_item_error(e) for e in errors]}, status_code=422)

    async def db_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable on %s: %s", request.url.path, exc)
        return JSONResponse(
            {"detail": "database unavailable, retry later"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    async def unstorable(request: Request, exc: Exception) -> JSONResponse:
        # SQLSTATE class 22 (data exception: a value out of range, a NUL psycopg refuses to
        # send …) in a request comes from what the request sent: a 422, never a 500. Routes
        # check their inputs first; this is the net under them. The transaction rolled back.
        orig = getattr(exc, "orig", None) or exc
        reason = (str(orig).strip().splitlines() or ["invalid value"])[0][:300]
        log.info("data exception on %s: %s", request.url.path, reason)
        problem = {"index": None, "field": "", "message": f"a value cannot be stored: {reason}"}
        return JSONResponse({"detail": [problem]}, status_code=422)

    app.add_exception_handler(InvalidItems, invalid_items)
    app.add_exception_handler(sqlalchemy.exc.DataError, unstorable)
    app.add_exception_handler(psycopg.DataError, unstorable)
    app.add_exception_handler(RequestValidationError, request_validation)
    for error in DB_UNAVAILABLE_ERRORS:
        app.add_exception_handler(error, db_unavailable)


def _item_error(error: dict) -> dict:
    """FastAPI's error (loc like ("body", 3, "value") or ("query", "window")) as a 422 item."""
    loc = list(error.get("loc", ()))
    index = None
    if loc and loc[0] in ("body", "query", "path", "header"):
        kind = loc.pop(0)
        if kind == "body" and loc and isinstance(loc[0], int):
            index = loc.pop(0)
    field = ".".join(str(part) for part in loc)
    return {"index": index, "field": field, "message": error.get("msg", "invalid")}
