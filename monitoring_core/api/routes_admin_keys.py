"""Admin routes for API keys and users: list, create, revoke, expire, rate limits, deactivate,
reset passwords; every change audited as the acting key (`monitoring_core.accounts`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import Response

from monitoring_core import accounts
from monitoring_core.api.admin_io import ErrorStatuses, actor_of, read_json_object, run_tx
from monitoring_core.api.deps import require_admin

__all__ = ["router"]

router = APIRouter(tags=["admin: keys and users"], dependencies=[Depends(require_admin)])
KEYS, USERS = "/api/admin/keys", "/api/admin/users"
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]
_ERRORS: ErrorStatuses = (((accounts.AccountNotFound,), 404),)


def _json(content: Any, status_code: int = 200) -> Response:
    body = orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)  # row keys are str subclasses
    return Response(body, status_code=status_code, media_type="application/json")


def _invalid(field: str, message: str) -> Response:
    return _json({"detail": [{"index": None, "field": field, "message": message}]}, 422)


def _not_itself(request: Request, key_id: int) -> None:
    """409 when a key would limit, expire or revoke itself: a typo would lock its owner out
    mid-script; another admin key, the CLI or the Settings page can."""
    if request.state.api_key.id == key_id:
        raise HTTPException(409, "a key cannot change itself; use another admin key or the CLI")


def _expiry(body: dict[str, Any]) -> datetime | None:
    """`expires_at` as an aware time (ISO 8601 with an offset), or None; AccountInvalid else."""
    value = body.get("expires_at")
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise accounts.AccountInvalid("must be an ISO 8601 time with an offset", "expires_at")
    return parsed


async def _change(request: Request, work: Any, status_code: int = 200) -> Response:
    try:
        return _json(await run_tx(request, work, errors=_ERRORS), status_code)
    except accounts.AccountInvalid as exc:
        return _invalid(exc.field, str(exc))


@router.get(KEYS, summary="Every API key (never the key itself), newest first")
async def list_keys(request: Request) -> Response:
    return _json({"keys": await run_tx(request, accounts.list_api_keys)})


@router.post(KEYS, status_code=201, summary="Create a key; the reply holds it, once")
async def create_key(request: Request) -> Response:
    """Body: `{name, scope: ingest|read|browser|admin, rate_limit_per_minute?,
    points_per_minute?, expires_at?, allowed_origins?: ["https://www.example.com"] (browser
    keys)}`. Rates: absent or null take the configured default, 0 is unlimited."""
    body, actor, now = await read_json_object(request), actor_of(request), datetime.now(UTC)

    def work(conn: Any) -> dict[str, Any]:
        row, key = accounts.add_api_key(
            conn,
            name=body.get("name", ""),
            scope=body.get("scope", ""),
            actor=actor,
            now=now,
            rate_limit_per_minute=body.get("rate_limit_per_minute"),
            points_per_minute=body.get("points_per_minute"),
            expires_at=_expiry(body),
            allowed_origins=body.get("allowed_origins") or (),
        )
        return {**row, "key": key}

    return await _change(request, work, status_code=201)


@router.patch(KEYS + "/{key_id}", summary="Set a key's request/point rates or expiry")
async def update_key(request: Request, key_id: RowId) -> Response:
    """Body: `{rate_limit_per_minute?: int | null, points_per_minute?: int | null,
    expires_at?: ISO time | null}`; rates: null is the configured default, 0 unlimited;
    expiry: null is never."""
    _not_itself(request, key_id)
    body, actor, now = await read_json_object(request), actor_of(request), datetime.now(UTC)
    fields = ("rate_limit_per_minute", "points_per_minute", "expires_at")
    changes: dict[str, Any] = {k: body[k] for k in fields if k in body}

    def work(conn: Any) -> dict[str, Any]:
        if "expires_at" in changes:
            changes["expires_at"] = _expiry(body)
        return accounts.update_api_key(conn, key_id=key_id, actor=actor, now=now, **changes)

    reply = await _change(request, work)
    request.app.state.keys.forget(key_id)
    return reply


@router.delete(KEYS + "/{key_id}", summary="Revoke a key (it stays listed, for the record)")
async def revoke_key(request: Request, key_id: RowId) -> Response:
    _not_itself(request, key_id)
    actor, now = actor_of(request), datetime.now(UTC)
    reply = await _change(
        request, lambda conn: accounts.revoke_api_key(conn, key_id=key_id, actor=actor, now=now)
    )
    # This process stops accepting it at once; other API processes within the cache TTL (5 s).
    request.app.state.keys.forget(key_id)
    return reply


@router.get(USERS, summary="Every UI user (never a password hash)")
async def list_users(request: Request) -> Response:
    return _json({"users": await run_tx(request, accounts.list_users)})


@router.post(USERS, status_code=201, summary="Add a UI user")
async def create_user(request: Request) -> Response:
    """Body: `{username, password (8 characters or more), role: viewer|responder|admin}`."""
    body, actor, now = await read_json_object(request), actor_of(request), datetime.now(UTC)
    password = body.get("password")
    if not isinstance(password, str):
        return _invalid("password", "is required")
    return await _change(
        request,
        lambda conn: accounts.add_user(
            conn,
            username=body.get("username", ""),
            password=password,
            role=body.get("role", ""),
            actor=actor,
            now=now,
        ),
        status_code=201,
    )


@router.post(USERS + "/{user_id}/deactivate", summary="Stop a user signing in or acting")
async def deactivate_user(request: Request, user_id: RowId) -> Response:
    actor, now = actor_of(request), datetime.now(UTC)
    return await _change(
        request,
        lambda conn: accounts.deactivate_user(conn, user=user_id, actor=actor, now=now),
    )


@router.post(USERS + "/{user_id}/password", summary="Set a user's new password")
async def reset_password(request: Request, user_id: RowId) -> Response:
    """Body: `{password}` (8 characters or more); the reply never holds it."""
    body, actor, now = await read_json_object(request), actor_of(request), datetime.now(UTC)
    password = body.get("password")
    if not isinstance(password, str):
        return _invalid("password", "is required")
    return await _change(
        request,
        lambda conn: accounts.reset_password(
            conn, user=user_id, password=password, actor=actor, now=now
        ),
    )
