"""Acknowledge links: `GET /ack/{token}` shows what will be acknowledged and one button,
`POST /ack/{token}` acknowledges it. The signed token is the credential (no API key): it names
one alert or incident and the recipient it was sent to, expires, and works once.

Answers are a small HTML page, or JSON when the request accepts `application/json`.
Refused links: 403 not issued here (forged or mangled), 410 expired, used, or gone, 409 when
the alert or incident needs no acknowledgement any more.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Connection

from monitoring_core import clock
from monitoring_core.api.admin_io import run_tx
from monitoring_core.flows.ack_link import describe_link, use_link
from monitoring_core.notify.acklinks import LinkRefused

__all__ = ["router"]

router = APIRouter(tags=["acknowledge links"])

_STATUS = {"forged": 403, "malformed": 403, "expired": 410, "used": 410, "gone": 410, "done": 409}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem}}
button{{font-size:1.1rem;padding:.6rem 1.2rem}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _answer(request: Request, status: int, title: str, data: dict[str, Any], body: str) -> Response:
    if _wants_json(request):
        content = orjson.dumps({"title": title, **data})
        return Response(content, status_code=status, media_type="application/json")
    page = _PAGE.format(title=html.escape(title), body=body)
    return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})


def _refused(request: Request, exc: LinkRefused) -> Response:
    text = str(exc)
    data = {"refused": exc.reason, "detail": text}
    return _answer(
        request, _STATUS.get(exc.reason, 410), "Link refused", data, f"<p>{html.escape(text)}</p>"
    )


def _describe(target: dict[str, Any]) -> str:
    rows = (
        ("What", f"{target['kind']} #{target['id']}: {target['title']}"),
        ("Severity", target["severity"]),
        ("Status", target["status"]),
        ("Sent to", target["recipient"]),
    )
    items = "".join(f"<dt>{k}</dt><dd>{html.escape(str(v))}</dd>" for k, v in rows)
    return f"<dl>{items}</dl>"


async def _run(request: Request, work: Callable[[Connection], Any]) -> Any:
    return await run_tx(request, work)


@router.get("/ack/{token}", summary="What an acknowledge link will acknowledge")
async def show_link(request: Request, token: str) -> Response:
    now = clock.now()
    try:
        target = await _run(request, lambda c: describe_link(c, token, now))
    except LinkRefused as exc:
        return _refused(request, exc)
    form = '<form method="post"><button type="submit">Acknowledge</button></form>'
    data = {k: v for k, v in target.items() if k != "expires_at"}
    data["expires_at"] = target["expires_at"].isoformat()
    return _answer(
        request, 200, f"Acknowledge this {target['kind']}?", data, _describe(target) + form
    )


@router.post("/ack/{token}", summary="Acknowledge with a link (once)")
async def use(request: Request, token: str) -> Response:
    now = clock.now()
    try:
        done = await _run(request, lambda c: use_link(c, token, now))
    except LinkRefused as exc:
        return _refused(request, exc)
    text = f"Acknowledged as {done['acknowledged_by']}. Escalation has stopped."
    return _answer(
        request, 200, "Acknowledged", done, _describe(done) + f"<p>{html.escape(text)}</p>"
    )
