"""Incident routes (docs/API.md): list/create/get, status, timeline, resolve, and the active list.

Admin keys act with the admin role; the timeline and audit log name the key (`apikey:NAME`).
Refused lifecycle moves are 409 with the reason; invalid fields 422 listing each problem.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from monitoring_core import clock
from monitoring_core.api.admin_io import ErrorStatuses, actor_of, read_json_object, run_tx
from monitoring_core.api.deps import require_admin, require_read
from monitoring_core.api.params import Id, Position
from monitoring_core.incidents import postmortem, runbooks, service
from monitoring_core.incidents.escalation import escalate_incident_by_hand
from monitoring_core.incidents.lifecycle import TransitionRefused
from monitoring_core.incidents.queries import (
    active_incidents,
    incident_detail,
    incident_to_api,
    list_incidents,
)
from monitoring_core.incidents.response_figures import incident_report
from monitoring_core.timerange import parse_time_range

__all__ = ["router"]

router = APIRouter()
admin = APIRouter(tags=["admin: incidents"], dependencies=[Depends(require_admin)])
live = APIRouter(tags=["incidents"], dependencies=[Depends(require_read)])
BASE = "/api/admin/incidents"
ROLE = "admin"  # an admin-scope key acts with the admin role


def _json(content: Any, status_code: int = 200) -> Response:
    # Row keys are `quoted_name` (a str subclass orjson only takes with OPT_NON_STR_KEYS).
    body = orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
    return Response(body, status_code=status_code, media_type="application/json")


def _invalid(problems: list[dict[str, str]]) -> Response:
    detail = [{"index": None, "field": p["field"], "message": p["message"]} for p in problems]
    return _json({"detail": detail}, status_code=422)


def _now() -> datetime:
    return clock.now()  # tests can stand it still (monitoring_core/clock.py)


_actor, _object = actor_of, read_json_object
_ERRORS: ErrorStatuses = (
    ((service.IncidentNotFound,), 404),
    ((TransitionRefused,), 409),
    ((service.PermissionDenied,), 403),
)


async def _tx(request: Request, work: Callable[[Connection], Any]) -> Any:
    return await run_tx(request, work, errors=_ERRORS)


async def _act(request: Request, work: Callable[[Connection], Any], status: int = 200) -> Response:
    try:
        result = await _tx(request, work)
    except service.IncidentInvalid as exc:
        return _invalid(exc.problems)
    return _json(result, status_code=status)


@admin.get(BASE, summary="Incidents, newest first, with filters")
async def get_incidents(request: Request) -> Response:
    q, now = request.query_params, _now()
    span = None
    if q.get("timeRange") or q.get("from") or q.get("to"):
        try:
            span = parse_time_range(
                q.get("timeRange"), now=now, start=q.get("from"), end=q.get("to")
            )
        except ValueError as exc:
            return _invalid([{"field": "timeRange", "message": str(exc)}])
    limit = q.get("limit", "200")
    if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= 10_000):
        return _invalid([{"field": "limit", "message": "must be an integer from 1 to 10000"}])
    rows = await _tx(
        request,
        lambda c: list_incidents(
            c,
            status=q.get("status"),
            severity=q.get("severity"),
            service=q.get("service"),
            wedding_impact=q.get("wedding_impact"),
            start=span.start if span else None,
            end=span.end if span else None,
            active_only=q.get("active") == "true",
            limit=int(limit),
        ),
    )
    return _json({"incidents": [incident_to_api(r, now) for r in rows]})


@admin.post(BASE, status_code=201, summary="Declare an incident")
async def post_incident(request: Request) -> Response:
    body, actor, now = await _object(request), _actor(request), _now()
    tz = request.app.state.live.calendar
    return await _act(
        request,
        lambda c: incident_to_api(
            service.create_incident(c, body=body, actor=actor, role=ROLE, now=now, tz=tz), now
        ),
        201,
    )


@admin.get(BASE + "/report", summary="MTTA/MTTR by severity and month, counts")
async def get_report(request: Request) -> Response:
    q, now = request.query_params, _now()
    try:
        span = parse_time_range(
            q.get("timeRange") or ("30d" if not q.get("from") else None),
            now=now,
            start=q.get("from"),
            end=q.get("to"),
        )
    except ValueError as exc:
        return _invalid([{"field": "timeRange", "message": str(exc)}])
    tz = request.app.state.live.calendar
    return _json(
        await _tx(request, lambda c: incident_report(c, start=span.start, end=span.end, tz=tz))
    )


@admin.get(
    BASE + "/{incident_id}",
    summary="One incident with its timeline (?public=true: public entries only), alerts, errors",
)
async def get_incident(request: Request, incident_id: Id) -> Response:
    now, internal = _now(), request.query_params.get("public") != "true"
    detail = await _tx(
        request,
        lambda c: incident_detail(c, incident_id=incident_id, now=now, include_internal=internal),
    )
    if detail is None:
        raise HTTPException(404, f"not found: incident {incident_id}")
    return _json(detail)


@admin.put(BASE + "/{incident_id}", summary="Change severity, impact, services, users, tags")
async def put_incident(request: Request, incident_id: Id) -> Response:
    body, actor, now = await _object(request), _actor(request), _now()
    return await _act(
        request,
        lambda c: incident_to_api(
            service.update_incident(
                c, incident_id=incident_id, body=body, actor=actor, role=ROLE, now=now
            ),
            now,
        ),
    )


@admin.put(BASE + "/{incident_id}/status", summary="Move along open → … → closed")
async def put_status(request: Request, incident_id: Id) -> Response:
    body, actor, now = await _object(request), _actor(request), _now()
    status, message = body.get("status"), body.get("message", "")
    if not isinstance(status, str) or not isinstance(message, str):
        return _invalid([{"field": "status", "message": "status (and message) must be strings"}])
    return await _act(
        request,
        lambda c: incident_to_api(
            service.change_status(
                c,
                incident_id=incident_id,
                status=status,
                actor=actor,
                role=ROLE,
                now=now,
                message=message,
            ),
            now,
        ),
    )


@admin.post(BASE + "/{incident_id}/timeline", status_code=201, summary="Add a timeline entry")
async def post_timeline(request: Request, incident_id: Id) -> Response:
    body, actor, now = await _object(request), _actor(request), _now()
    message, public, kind = (
        body.get("message"),
        body.get("is_public", False),
        body.get("kind", "note"),
    )
    if not isinstance(message, str) or not isinstance(public, bool) or not isinstance(kind, str):
        return _invalid(
            [
                {
                    "field": "message",
                    "message": "message (string) is required; "
                    "is_public is a boolean, kind a string",
                }
            ]
        )
    return await _act(
        request,
        lambda c: service.add_note(
            c,
            incident_id=incident_id,
            message=message,
            actor=actor,
            role=ROLE,
            now=now,
            is_public=public,
            kind=kind,
        ),
        201,
    )


@admin.post(BASE + "/{incident_id}/resolve", summary="Resolve with a summary")
async def post_resolve(request: Request, incident_id: Id) -> Response:
    body, actor, now = await _object(request), _actor(request), _now()
    summary, cause = body.get("resolution_summary"), body.get("root_cause")
    if not isinstance(summary, str) or (cause is not None and not isinstance(cause, str)):
        return _invalid([{"field": "resolution_summary", "message": "is required (string)"}])
    return await _act(
        request,
        lambda c: incident_to_api(
            service.resolve_incident(
                c,
                incident_id=incident_id,
                resolution_summary=summary,
                root_cause=cause,
                actor=actor,
                role=ROLE,
                now=now,
            ),
            now,
        ),
    )


@admin.post(BASE + "/{incident_id}/escalate", summary="Page the next escalation step now")
async def post_escalate(request: Request, incident_id: Id) -> Response:
    actor, now, settings = _actor(request), _now(), request.app.state.settings
    return await _act(
        request,
        lambda c: escalate_incident_by_hand(
            c,
            incident_id=incident_id,
            actor=actor,
            role=ROLE,
            now=now,
            tz=request.app.state.live.calendar,
            public_url=settings.public_url,
        ),
    )


@admin.post(BASE + "/{incident_id}/acknowledge", summary="Acknowledge (stops escalation)")
async def post_acknowledge(request: Request, incident_id: Id) -> Response:
    actor, now = _actor(request), _now()
    return await _act(
        request,
        lambda c: incident_to_api(
            service.acknowledge_incident(
                c, incident_id=incident_id, actor=actor, role=ROLE, now=now
            ),
            now,
        ),
    )


@admin.post(
    BASE + "/{incident_id}/postmortem", summary="Draft the post-incident report and store it"
)
async def post_postmortem(request: Request, incident_id: Id) -> Response:
    actor, now = _actor(request), _now()
    markdown = await _tx(
        request,
        lambda c: postmortem.generate_postmortem(
            c, incident_id=incident_id, actor=actor, role=ROLE, now=now
        ),
    )
    return Response(markdown, media_type="text/markdown; charset=utf-8")


@admin.get(BASE + "/{incident_id}/postmortem", summary="The stored post-incident report (Markdown)")
async def get_postmortem(request: Request, incident_id: Id) -> Response:
    row = await _tx(request, lambda c: service.load_incident(c, incident_id=incident_id))
    if not row["postmortem_markdown"]:
        raise HTTPException(404, "no post-incident report yet; POST to draft one")
    return Response(row["postmortem_markdown"], media_type="text/markdown; charset=utf-8")


@admin.get("/api/admin/runbooks", summary="Every runbook with its success rate")
async def get_runbooks(request: Request) -> Response:
    rows = await _tx(request, runbooks.list_runbooks)
    return _json({"runbooks": [{**r, "success_rate": runbooks.success_rate(r)} for r in rows]})


@admin.post("/api/admin/runbooks", status_code=201, summary="Create a runbook")
async def post_runbook(request: Request) -> Response:
    body, actor, now = await _object(request), _actor(request), _now()
    return await _act(
        request,
        lambda c: runbooks.create_runbook(c, body=body, actor=actor, role=ROLE, now=now),
        201,
    )


@admin.post(
    BASE + "/{incident_id}/runbooks/{runbook_id}/steps/{step_index}",
    summary="Run a runbook step (or request approval)",
)
async def post_runbook_step(
    request: Request, incident_id: Id, runbook_id: Id, step_index: Position
) -> Response:
    actor, now, engine = _actor(request), _now(), request.app.state.engine
    tz = request.app.state.live.calendar
    try:
        ex = await run_in_threadpool(
            lambda: runbooks.run_step(
                engine,
                incident_id=incident_id,
                runbook_id=runbook_id,
                step_index=step_index,
                actor=actor,
                role=ROLE,
                now=now,
                tz=tz,
            )
        )
    except service.IncidentNotFound as exc:
        raise HTTPException(404, f"not found: {exc}") from None
    except runbooks.ExecutionRefused as exc:
        raise HTTPException(409, str(exc)) from None
    return _json(ex, status_code=202 if ex["status"] == "awaiting_approval" else 200)


@admin.post(
    "/api/admin/runbook-executions/{execution_id}/approve",
    summary="Approve a waiting runbook step (a second key/person), which then runs",
)
async def post_approve(request: Request, execution_id: Id) -> Response:
    actor, now, engine = _actor(request), _now(), request.app.state.engine
    try:
        ex = await run_in_threadpool(
            lambda: runbooks.approve_execution(
                engine, execution_id=execution_id, actor=actor, role=ROLE, now=now
            )
        )
    except runbooks.ExecutionRefused as exc:
        raise HTTPException(409, str(exc)) from None
    return _json(ex)


@live.get("/api/monitoring/incidents/active", summary="Open, investigating, mitigating incidents")
async def get_active(request: Request) -> Response:
    now = _now()
    return _json({"incidents": await _tx(request, lambda c: active_incidents(c, now=now))})


router.include_router(admin)
router.include_router(live)
