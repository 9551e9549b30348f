"""Alerting routes: admin rules (with a test against history), active alerts and the
responder actions, channels (with a test send), silences, escalation policies, live alerts.

Field names follow docs/API.md "Field names". Admin keys act with the admin
role; the audit log names the key (`apikey:NAME`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from monitoring_core.alerts import service
from monitoring_core.alerts.backtest import backtest
from monitoring_core.alerts.rules import RuleInvalid, rule_from_row
from monitoring_core.alerts.signals import catalogue
from monitoring_core.alerts.silences import list_silences
from monitoring_core.alerts.store import (
    RuleNotFound,
    get_rule,
    list_active_alerts,
    list_rules,
    rule_to_api,
)
from monitoring_core.api.admin_io import (
    ErrorStatuses,
    actor_of,
    read_json_object,
    run_tx,
)
from monitoring_core.api.deps import require_admin, require_read
from monitoring_core.api.params import Id
from monitoring_core.flows import alert_actions as actions
from monitoring_core.notify import service as notify_service
from monitoring_core.notify.channels import (
    ChannelInUse,
    ChannelInvalid,
    ChannelNotFound,
    list_channels,
)
from monitoring_core.policies.service import policy_create
from monitoring_core.policies.store import PolicyInvalid, list_policies
from monitoring_core.timerange import parse_time_range

__all__ = ["router"]

router = APIRouter()
admin = APIRouter(tags=["admin: alerts"], dependencies=[Depends(require_admin)])
live = APIRouter(tags=["live"], dependencies=[Depends(require_read)])
RULES = "/api/admin/monitoring/alerts"


def _json(content: Any, status_code: int = 200) -> Response:
    body = orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status_code, media_type="application/json")


def _invalid(problems: list[dict[str, str]]) -> Response:
    detail = [{"index": None, "field": p["field"], "message": p["message"]} for p in problems]
    return _json({"detail": detail}, status_code=422)


def _now() -> datetime:
    return datetime.now(UTC)


_actor, _object = actor_of, read_json_object
_ERRORS: ErrorStatuses = (
    ((RuleNotFound, ChannelNotFound), 404),
    ((actions.ActionRefused, ChannelInUse), 409),
    ((actions.PermissionDenied,), 403),
)


async def _tx(request: Request, work: Callable[[Connection], Any]) -> Any:
    return await run_tx(request, work, errors=_ERRORS)


# ---------------------------------------------------------------- rules
@admin.get(RULES, summary="Every alert rule (alert_configurations)")
async def get_rules(request: Request) -> Response:
    rows = await _tx(request, lambda c: list_rules(c))
    return _json({"alerts": [rule_to_api(r) for r in rows]})


@admin.get(RULES + "/signals", summary="The signals a rule may watch (names, units, dimensions)")
async def get_signals(request: Request) -> Response:
    return _json({"signals": await _tx(request, catalogue)})


@admin.post(RULES, status_code=201, summary="Create an alert rule")
async def post_rule(request: Request) -> Response:
    body, actor, now = await _object(request), _actor(request), _now()
    try:
        rule = await _tx(
            request, lambda c: service.rule_create(c, body=body, actor=actor, role="admin", now=now)
        )
    except RuleInvalid as exc:
        return _invalid(exc.problems)
    return _json(rule, status_code=201)


@admin.put(RULES + "/{rule_id}", summary="Change an alert rule (the fields given)")
async def put_rule(request: Request, rule_id: Id) -> Response:
    body, actor, now = await _object(request), _actor(request), _now()
    try:
        rule = await _tx(
            request,
            lambda c: service.rule_update(
                c, rule_id=rule_id, body=body, actor=actor, role="admin", now=now
            ),
        )
    except RuleInvalid as exc:
        return _invalid(exc.problems)
    return _json(rule)


@admin.delete(RULES + "/{rule_id}", status_code=204, summary="Delete an alert rule")
async def remove_rule(request: Request, rule_id: Id) -> Response:
    actor, now = _actor(request), _now()
    await _tx(
        request,
        lambda c: service.rule_delete(c, rule_id=rule_id, actor=actor, role="admin", now=now),
    )
    return Response(status_code=204)


_STEP_HELP = "seconds: 15, 20 or 30, or whole minutes (60, 300 …) up to a day"


def _test_step(raw: Any) -> timedelta | None:
    """A backtest step from the request (seconds, a number or its text), None if invalid."""
    if isinstance(raw, str):
        try:
            raw = float(raw)
        except ValueError:
            return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        return None
    if raw != int(raw) or not 15 <= raw <= 86_400 or (60 % raw and raw % 60):
        return None
    return timedelta(seconds=int(raw))


@admin.post(RULES + "/{rule_id}/test", summary="When the rule would have fired (sends nothing)")
async def test_rule(request: Request, rule_id: Id) -> Response:
    """Body or query: `timeRange` (1h|24h|7d…, default 24h) or `from`/`to`; `step` in seconds
    (default: the live cycle's 15 s for rules reading raw points or events, else a minute);
    the response's `step_seconds` is the step used."""
    body = await _object(request)
    params = {**request.query_params, **{k: v for k, v in body.items() if isinstance(v, str)}}
    step = None
    if (raw_step := body.get("step", request.query_params.get("step"))) is not None:
        step = _test_step(raw_step)
        if step is None:
            return _invalid([{"field": "step", "message": _STEP_HELP}])
    now = _now()
    try:
        span = parse_time_range(
            params.get("timeRange") or ("24h" if "from" not in params else None),
            now=now,
            start=params.get("from"),
            end=params.get("to"),
        )
    except ValueError as exc:
        return _invalid([{"field": "timeRange", "message": str(exc)}])
    calendar = request.app.state.live.calendar

    def work(conn: Connection) -> dict[str, Any]:
        rule = rule_from_row(get_rule(conn, rule_id=rule_id))
        return backtest(conn, rule, start=span.start, end=span.end, tz=calendar, step=step)

    try:
        result = await _tx(request, work)
    except RuleInvalid as exc:
        return _invalid(exc.problems)
    except ValueError as exc:
        return _invalid([{"field": "condition_config", "message": str(exc)}])
    return _json({"alert_configuration_id": rule_id, "from": span.start, "to": span.end, **result})


# ---------------------------------------------------------------- instances
@admin.get("/api/admin/alerts/active", summary="Active alert instances, most severe first")
async def active_alerts(request: Request) -> Response:
    return _json({"alerts": await _tx(request, list_active_alerts)})


@admin.post("/api/admin/alerts/{instance_id}/acknowledge", summary="Acknowledge: stop escalation")
async def acknowledge(request: Request, instance_id: Id) -> Response:
    actor, now = _actor(request), _now()
    return _json(
        await _tx(
            request,
            lambda c: actions.acknowledge_alert(
                c, instance_id=instance_id, actor=actor, role="admin", now=now
            ),
        )
    )


@admin.post(
    "/api/admin/alerts/{instance_id}/suppress", summary="Suppress notifications for a while"
)
async def suppress(request: Request, instance_id: Id) -> Response:
    """Body: `{minutes (or duration_minutes), reason}`."""
    body, actor, now = await _object(request), _actor(request), _now()
    minutes = body.get("minutes", body.get("duration_minutes"))
    problems = []
    if (
        isinstance(minutes, bool)
        or not isinstance(minutes, int | float)
        or not 0 < minutes <= 10080
    ):
        problems.append({"field": "minutes", "message": "must be a number of minutes, 1 to 10080"})
    if not isinstance(body.get("reason"), str) or not body["reason"].strip():
        problems.append({"field": "reason", "message": "is required"})
    if problems:
        return _invalid(problems)
    duration = float(minutes)  # type: ignore[arg-type]  # checked above
    return _json(
        await _tx(
            request,
            lambda c: actions.suppress_alert(
                c,
                instance_id=instance_id,
                actor=actor,
                role="admin",
                now=now,
                minutes=duration,
                reason=body["reason"],
            ),
        )
    )


@admin.post("/api/admin/alerts/{instance_id}/escalate", summary="Climb one escalation step now")
async def escalate(request: Request, instance_id: Id) -> Response:
    actor, now, settings = _actor(request), _now(), request.app.state.settings
    return _json(
        await _tx(
            request,
            lambda c: actions.escalate_alert(
                c,
                instance_id=instance_id,
                actor=actor,
                role="admin",
                now=now,
                tz=request.app.state.live.calendar,
                public_url=settings.public_url,
            ),
        )
    )


@admin.post("/api/admin/alerts/{instance_id}/resolve", summary="Resolve by hand")
async def resolve(request: Request, instance_id: Id) -> Response:
    """Body (optional): `{reason}`. The alert's channels hear it is resolved."""
    body = await _object(request) if await request.body() else {}
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        return _invalid([{"field": "reason", "message": "must be a string"}])
    actor, now, settings = _actor(request), _now(), request.app.state.settings
    return _json(
        await _tx(
            request,
            lambda c: actions.resolve_alert(
                c,
                instance_id=instance_id,
                actor=actor,
                role="admin",
                now=now,
                tz=request.app.state.live.calendar,
                public_url=settings.public_url,
                reason=reason,
            ),
        )
    )


@live.get("/api/monitoring/live/alerts", summary="Active alerts with counts by severity")
async def live_alerts(request: Request) -> Response:
    alerts = await _tx(request, list_active_alerts)
    counts = Counter(a["severity"] for a in alerts)
    return _json({"alerts": alerts, "counts": dict(counts), "total": len(alerts), "at": _now()})


# ---------------------------------------------------------------- channels
@admin.get("/api/admin/channels", summary="Notification channels (URLs masked)")
async def get_channels(request: Request) -> Response:
    return _json({"channels": await _tx(request, lambda c: list_channels(c))})


async def _save_channel(request: Request, channel_id: int | None) -> Response:
    body, actor, now = await _object(request), _actor(request), _now()
    if channel_id is not None and not body:  # an UPDATE with nothing to set is not SQL
        return _invalid([{"field": "", "message": "give at least one field to change"}])

    def work(conn: Connection) -> dict[str, Any]:
        return notify_service.save_channel(
            conn, channel_id=channel_id, body=body, actor=actor, role="admin", now=now
        )

    try:
        saved = await _tx(request, work)
    except ChannelInvalid as exc:
        return _invalid(exc.problems)
    return _json(saved, status_code=201 if channel_id is None else 200)


@admin.post("/api/admin/channels", status_code=201, summary="Add a channel: {name, url, tags?}")
async def post_channel(request: Request) -> Response:
    return await _save_channel(request, None)


@admin.put("/api/admin/channels/{channel_id}", summary="Change a channel")
async def put_channel(request: Request, channel_id: Id) -> Response:
    return await _save_channel(request, channel_id)


@admin.delete("/api/admin/channels/{channel_id}", status_code=204, summary="Delete a channel")
async def remove_channel(request: Request, channel_id: Id) -> Response:
    """409 while a rule, escalation policy or runbook uses it or it has delivery history
    (disable it instead: `PUT … {"is_enabled": false}`)."""
    actor, now = _actor(request), _now()
    await _tx(
        request,
        lambda c: notify_service.remove_channel(
            c, channel_id=channel_id, actor=actor, role="admin", now=now
        ),
    )
    return Response(status_code=204)


@admin.post("/api/admin/channels/{channel_id}/test", summary="Send a test notification now")
async def test_channel(request: Request, channel_id: Id) -> Response:
    """The attempt is recorded like any delivery (the Settings page's test send does the same)."""
    try:
        result = await run_in_threadpool(
            partial(
                notify_service.send_test_message,
                request.app.state.engine,
                channel_id=channel_id,
                public_url=request.app.state.settings.public_url,
                actor=_actor(request),
                role="admin",
                now=_now(),
            )
        )
    except ChannelNotFound as exc:
        raise HTTPException(404, f"not found: {exc}") from None
    return _json({"ok": result.ok, "latency_ms": result.latency_ms, "error": result.error})


# ---------------------------------------------------------------- silences, policies
@admin.get("/api/admin/silences", summary="Silences and maintenance windows not yet ended")
async def get_silences(request: Request) -> Response:
    now = _now()
    return _json({"silences": await _tx(request, lambda c: list_silences(c, now=now))})


def _parse_time(value: Any, field: str) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(
            422, detail=[{"index": None, "field": field, "message": "must be an ISO time"}]
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@admin.post("/api/admin/silences", status_code=201, summary="Add a silence")
async def post_silence(request: Request) -> Response:
    """Body: `{matchers: [{name, value, is_regex?}], starts_at?, ends_at | duration_minutes,
    reason, recurrence?: {weekday 0-6 | weekdays, start "HH:MM", end "HH:MM"}}`."""
    body, actor, now = await _object(request), _actor(request), _now()
    starts = _parse_time(body["starts_at"], "starts_at") if body.get("starts_at") else now
    if body.get("ends_at"):
        ends = _parse_time(body["ends_at"], "ends_at")
    else:
        duration = body.get("duration_minutes", 60)
        if isinstance(duration, bool) or not isinstance(duration, int | float) or duration <= 0:
            return _invalid([{"field": "duration_minutes", "message": "must be a positive number"}])
        ends = starts + timedelta(minutes=duration)

    def work(conn: Connection) -> int:
        return service.silence_create(
            conn,
            matchers=body.get("matchers", []),
            starts_at=starts,
            ends_at=ends,
            reason=str(body.get("reason", "")),
            actor=actor,
            role="admin",
            now=now,
            recurrence=body.get("recurrence"),
        )

    try:
        silence_id = await _tx(request, work)
    except ValueError as exc:
        return _invalid([{"field": "silence", "message": str(exc)}])
    return _json({"id": silence_id, "starts_at": starts, "ends_at": ends}, status_code=201)


@admin.delete("/api/admin/silences/{silence_id}", status_code=204, summary="Remove a silence")
async def remove_silence(request: Request, silence_id: Id) -> Response:
    actor, now = _actor(request), _now()
    deleted = await _tx(
        request,
        lambda c: service.silence_delete(
            c, silence_id=silence_id, actor=actor, role="admin", now=now
        ),
    )
    if not deleted:
        raise HTTPException(404, f"no silence with id {silence_id}")
    return Response(status_code=204)


@admin.get("/api/admin/escalation-policies", summary="Escalation policies")
async def get_policies(request: Request) -> Response:
    return _json({"policies": await _tx(request, list_policies)})


@admin.post("/api/admin/escalation-policies", status_code=201, summary="Add an escalation policy")
async def post_policy(request: Request) -> Response:
    """Body: `{name, steps: [{after_minutes, channels: [ids]}], repeat?, is_wedding_day?}`."""
    body, actor, now = await _object(request), _actor(request), _now()

    def work(conn: Connection) -> dict[str, Any]:
        return policy_create(conn, body=body, actor=actor, role="admin", now=now)

    try:
        row = await _tx(request, work)
    except PolicyInvalid as exc:
        return _invalid([{"field": exc.field, "message": str(exc)}])
    except IntegrityError:  # a concurrent insert of the same name
        return _invalid([{"field": "name", "message": "a policy with this name exists"}])
    return _json(row, status_code=201)


router.include_router(admin)
router.include_router(live)
