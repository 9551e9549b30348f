"""The parameter types every route uses, and the guard refusing NUL in any URL.

- `Id`: a path id is an integer from 1 to 2^63 - 1 (a Postgres bigint): anything else is a
  422 naming the parameter, never an overflow in the database.
- `Text`: a string that refuses NUL (Postgres text cannot hold it), for bodies FastAPI parses.
- `NulGuard`: no request reaches a route with NUL in its path or query string (URLs are
  where it arrives as `%00`; JSON bodies are checked by `body.parse_json`).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import Path
from pydantic import AfterValidator
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["ID_MAX", "Id", "NulGuard", "Position", "Text", "refuse_nul"]

ID_MAX = 2**63 - 1
Id = Annotated[int, Path(ge=1, le=ID_MAX, description="a positive 64-bit id")]
Position = Annotated[int, Path(ge=0, le=10_000, description="a 0-based position in a list")]


def refuse_nul(value: str) -> str:
    """`value` unchanged; ValueError when it holds a NUL character."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(refuse_nul)]
_NUL_MESSAGE = "must not contain NUL characters"


class NulGuard:
    """ASGI middleware: 422 for a request whose path or query string holds a NUL."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            field = _nul_field(scope)
            if field is not None:
                await _refuse(send, field)
                return
        await self.app(scope, receive, send)


def _nul_field(scope: Scope) -> str | None:
    """'path' or the query parameter's name when it holds a NUL (a cheap scan first)."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    if b"%00" in raw_path or b"\x00" in raw_path or "\x00" in scope["path"]:
        return "path"
    query: bytes = scope.get("query_string", b"")
    if b"%00" not in query and b"\x00" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "\\0")[:100]
    return "query"


async def _refuse(send: Send, field: str) -> None:
    detail: dict[str, Any] = {"detail": [{"index": None, "field": field, "message": _NUL_MESSAGE}]}
    body = orjson.dumps(detail)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 422, "headers": headers})
    await send({"type": "http.response.body", "body": body})
