"""On-call routes: people (time zones, contact methods), schedules with layers, overrides,
default routes by severity (scope admin, audited as the key), and who is on call now, next or
at any instant (scope read)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy import Connection

from monitoring_core.api.admin_io import ErrorStatuses, actor_of, read_json_object, run_tx
from monitoring_core.api.deps import require_admin, require_read
from monitoring_core.notify.channels import ChannelInvalid
from monitoring_core.oncall import queries, service, store
from monitoring_core.oncall.validate import OncallInvalid, OncallNotFound
from monitoring_core.roles import PermissionDenied

__all__ = ["router"]

router = APIRouter(tags=["on call"])
admin = APIRouter(tags=["admin: on call"], dependencies=[Depends(require_admin)])
read = APIRouter(tags=["on call"], dependencies=[Depends(require_read)])
BASE = "/api/admin/oncall"
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Severity = Annotated[str, Path(pattern="^(critical|high|medium|low|info)$")]
MAX_SPAN = timedelta(days=92)
_ERRORS: ErrorStatuses = (
    ((OncallNotFound,), 404),
    ((store.OncallInUse,), 409),
    ((PermissionDenied,), 403),
)


def _json(content: Any, status_code: int = 200) -> Response:
    body = orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
    return Response(body, status_code=status_code, media_type="application/json")


def _invalid(field: str, message: str) -> Response:
    return _json({"detail": [{"index": None, "field": field, "message": message}]}, 422)


async def _do(request: Request, work: Callable[[Connection], Any], status: int = 200) -> Response:
    try:
        return _json(await run_tx(request, work, errors=_ERRORS), status)
    except OncallInvalid as exc:
        return _invalid(exc.field, str(exc).split(": ", 1)[-1])
    except ChannelInvalid as exc:
        problem = exc.problems[0]
        return _invalid(problem["field"], problem["message"])


def _instant(value: str | None, field: str, default: datetime) -> datetime:
    if value is None:
        return default
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise OncallInvalid(field, "must be an ISO 8601 time with an offset")
    return parsed


# ---------------------------------------------------------------- who is on call (read)
@read.get("/api/monitoring/oncall", summary="Who is on call now (or at `at`) and next")
async def who_is_on_call(
    request: Request, at: Annotated[str | None, Query(max_length=64)] = None
) -> Response:
    """Per schedule `{schedule_id, name, now: {user_id, username, starts_at, ends_at, source},
    next}`; `at` (ISO time with offset) asks about another instant, e.g. Saturday noon."""
    tz = request.app.state.live.calendar

    def work(conn: Connection) -> dict[str, Any]:
        moment = _instant(at, "at", datetime.now(UTC))
        return {"at": moment, "schedules": queries.on_call_now_and_next(conn, now=moment, tz=tz)}

    return await _do(request, work)


# ---------------------------------------------------------------- people
@admin.get(BASE + "/people", summary="Every user with time zone and contact methods (masked)")
async def people(request: Request) -> Response:
    return await _do(request, lambda conn: {"people": store.list_people(conn)})


@admin.put(BASE + "/people/{user_id}/time_zone", summary="Set a person's time zone")
async def put_time_zone(request: Request, user_id: RowId) -> Response:
    """Body: `{time_zone: "Europe/London" | null}` (null: the business time zone)."""
    body, actor, now = await read_json_object(request), actor_of(request), datetime.now(UTC)

    def work(conn: Connection) -> dict[str, Any]:
        service.set_time_zone(conn, user_id=user_id, time_zone=body.get("time_zone"),
                              actor=actor, role="admin", now=now)  # fmt: skip
        return {"user_id": user_id, "time_zone": body.get("time_zone") or None}

    return await _do(request, work)


@admin.post(BASE + "/people/{user_id}/contacts", status_code=201,
            summary="Add a contact method (an Apprise URL)")  # fmt: skip
async def post_contact(request: Request, user_id: RowId) -> Response:
    """Body: `{label?, url}`; the reply masks the URL."""
    body, actor, now = await read_json_object(request), actor_of(request), datetime.now(UTC)
    return await _do(
        request,
        lambda conn: service.add_contact_method(
            conn, user_id=user_id, body=body, actor=actor, role="admin", now=now
        ),
        201,
    )


@admin.delete(BASE + "/people/{user_id}/contacts/{channel_id}",
              summary="Remove a contact method (disabled instead when deliveries refer to it)")  # fmt: skip
async def delete_contact(request: Request, user_id: RowId, channel_id: RowId) -> Response:
    actor, now = actor_of(request), datetime.now(UTC)

    def work(conn: Connection) -> dict[str, Any]:
        done = service.remove_contact_method(conn, user_id=user_id, channel_id=channel_id,
                                             actor=actor, role="admin", now=now)  # fmt: skip
        return {"channel_id": channel_id, "done": done}

    return await _do(request, work)


# ---------------------------------------------------------------- schedules
@admin.get(BASE + "/schedules", summary="Every schedule with its layers")
async def schedules(request: Request) -> Response:
    return await _do(request, lambda conn: {"schedules": store.list_schedules(conn)})


@admin.post(BASE + "/schedules", status_code=201, summary="Create a schedule")
async def post_schedule(request: Request) -> Response:
    """Body: `{name, description?, layers: [{name?, level?, rotation: daily|weekly,
    handoff_time?: "09:00", handoff_weekday?: 0..6, starts_on: "YYYY-MM-DD", members: [user
    ids], active_days?: [0..6]}]}`; times are in the business time zone."""
    body, actor, now = await read_json_object(request), actor_of(request), datetime.now(UTC)
    return await _do(
        request,
        lambda conn: service.save_schedule(
            conn, schedule_id=None, body=body, actor=actor, role="admin", now=now
        ),
        201,
    )


@admin.put(BASE + "/schedules/{schedule_id}", summary="Replace a schedule and its layers")
async def put_schedule(request: Request, schedule_id: RowId) -> Response:
    body, actor, now = await read_json_object(request), actor_of(request), datetime.now(UTC)
    return await _do(
        request,
        lambda conn: service.save_schedule(
            conn, schedule_id=schedule_id, body=body, actor=actor, role="admin", now=now
        ),
    )


@admin.delete(BASE + "/schedules/{schedule_id}", status_code=204,
              summary="Delete a schedule no policy or route pages")  # fmt: skip
async def delete_schedule(request: Request, schedule_id: RowId) -> Response:
    actor, now = actor_of(request), datetime.now(UTC)
    await run_tx(
        request,
        lambda conn: service.remove_schedule(
            conn, schedule_id=schedule_id, actor=actor, role="admin", now=now
        ),
        errors=_ERRORS,
    )
    return Response(status_code=204)


@admin.get(BASE + "/schedules/{schedule_id}/shifts", summary="Who is on call over a range")
async def shifts(
    request: Request,
    schedule_id: RowId,
    start: Annotated[str | None, Query(alias="from", max_length=64)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=64)] = None,
) -> Response:
    """`from`/`to` ISO times (default: now and 28 days on, at most 92 days); one span per
    change of person, with the layer or "override" that put them there."""
    tz = request.app.state.live.calendar

    def work(conn: Connection) -> dict[str, Any]:
        now = datetime.now(UTC)
        begin = _instant(start, "from", now)
        finish = _instant(end, "to", begin + timedelta(days=28))
        if not begin < finish <= begin + MAX_SPAN:
            raise OncallInvalid("to", "must be after from, within 92 days")
        store.get_schedule(conn, schedule_id=schedule_id)
        spans = queries.schedule_spans(
            conn, schedule_id=schedule_id, start=begin, end=finish, tz=tz
        )
        return {"schedule_id": schedule_id, "shifts": spans}

    return await _do(request, work)


@admin.get(BASE + "/schedules/{schedule_id}/overrides", summary="Overrides not yet over")
async def overrides(request: Request, schedule_id: RowId) -> Response:
    def work(conn: Connection) -> dict[str, Any]:
        store.get_schedule(conn, schedule_id=schedule_id)
        rows = store.overrides_of(conn, schedule_id=schedule_id, since=datetime.now(UTC))
        return {"overrides": rows}

    return await _do(request, work)


@admin.post(BASE + "/schedules/{schedule_id}/overrides", status_code=201,
            summary="Put someone on call for a while (a swap, a holiday's cover)")  # fmt: skip
async def post_override(request: Request, schedule_id: RowId) -> Response:
    """Body: `{user_id, starts_at, ends_at, reason?}` (ISO times with an offset)."""
    body, actor, now = await read_json_object(request), actor_of(request), datetime.now(UTC)
    return await _do(
        request,
        lambda conn: service.add_override(
            conn, schedule_id=schedule_id, body=body, actor=actor, role="admin", now=now
        ),
        201,
    )


@admin.delete(BASE + "/overrides/{override_id}", status_code=204, summary="Remove an override")
async def delete_override(request: Request, override_id: RowId) -> Response:
    actor, now = actor_of(request), datetime.now(UTC)
    await run_tx(
        request,
        lambda conn: service.remove_override(
            conn, override_id=override_id, actor=actor, role="admin", now=now
        ),
        errors=_ERRORS,
    )
    return Response(status_code=204)


# ---------------------------------------------------------------- default routes
@admin.get(BASE + "/routes", summary="Default routes by severity")
async def routes(request: Request) -> Response:
    return await _do(request, lambda conn: {"routes": store.list_routes(conn)})


@admin.put(BASE + "/routes/{min_severity}",
           summary="Where alerts at or above a severity go when their rule names no channel")  # fmt: skip
async def put_route(request: Request, min_severity: Severity) -> Response:
    """Body: `{targets: {channels?, users?, schedules?}}` (lists of ids)."""
    body, actor, now = await read_json_object(request), actor_of(request), datetime.now(UTC)
    route = {"min_severity": min_severity, "targets": body.get("targets")}
    return await _do(
        request,
        lambda conn: service.save_route(conn, body=route, actor=actor, role="admin", now=now),
    )


@admin.delete(BASE + "/routes/{min_severity}", status_code=204, summary="Remove a route")
async def delete_route(request: Request, min_severity: Severity) -> Response:
    actor, now = actor_of(request), datetime.now(UTC)
    await run_tx(
        request,
        lambda conn: service.delete_route(
            conn, min_severity=min_severity, actor=actor, role="admin", now=now
        ),
        errors=_ERRORS,
    )
    return Response(status_code=204)


router.include_router(read)
router.include_router(admin)
