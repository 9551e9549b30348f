"""Shared plumbing of the admin routes: JSON bodies, the acting key, one transaction per call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import HTTPException, Request
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from monitoring_core.api.body import parse_json, read_body
from monitoring_core.audit import key_actor

__all__ = ["ErrorStatuses", "actor_of", "read_json", "read_json_object", "run_tx"]

# (exception types, HTTP status) pairs, checked in order.
ErrorStatuses = Sequence[tuple[tuple[type[Exception], ...], int]]


def actor_of(request: Request) -> str:
    """Who acts, for audit logs and timelines: `apikey:NAME` (monitoring_core/audit.py)."""
    return key_actor(request.state.api_key.name)


async def read_json(request: Request) -> Any:
    """The body as JSON (an empty body is `{}`); 400 unreadable, 413 too large, 422 unstorable."""
    raw = await read_body(request, max_bytes=request.app.state.settings.max_body_bytes)
    if not raw.strip():
        return {}
    return parse_json(raw)


async def read_json_object(request: Request) -> dict[str, Any]:
    """Like read_json, but 422 unless the body is one JSON object."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise HTTPException(
            422, detail=[{"index": None, "field": "", "message": "must be a JSON object"}]
        )
    return body


async def run_tx(
    request: Request, work: Callable[[Connection], Any], *, errors: ErrorStatuses = ()
) -> Any:
    """Run `work` in one transaction off the event loop, mapping domain errors to HTTP."""

    def run() -> Any:
        with request.app.state.engine.begin() as conn:
            return work(conn)

    try:
        return await run_in_threadpool(run)
    except Exception as exc:
        for types, status in errors:
            if isinstance(exc, types):
                detail = f"not found: {exc}" if status == 404 else str(exc)
                raise HTTPException(status, detail) from None
        raise
