"""Reading request bodies: size limits (also after decompression), content types, JSON.

Every JSON body goes through `parse_json`: besides being readable, it must be storable —
no NUL character in any string or key (Postgres text and jsonb cannot hold one) and no
nesting deeper than MAX_DEPTH (orjson cannot write back past 254 levels, and deep values
make recursive code fail). Both answer 422 naming the item and field; the checks cost a
memory scan of the raw bytes unless a body could actually break them.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from fastapi import HTTPException, Request

from monitoring_core.ingest.validate import InvalidItems, ItemError, json_type

__all__ = [
    "MAX_DEPTH",
    "may_nest_too_deep",
    "parse_json",
    "parse_json_items",
    "read_body",
    "read_json_items",
    "too_deep",
]

MAX_DEPTH = 64  # levels of objects and arrays in a JSON body (a batch array counts as one)
_ESCAPED_NUL = b"\\u0000"  # how JSON spells NUL (a raw NUL byte is not valid JSON)

_JSON_TYPES = {"application/json", ""}
_GZIP_OR_ZLIB = 32 + zlib.MAX_WBITS  # auto-detects a gzip or zlib header
_RAW_DEFLATE = -zlib.MAX_WBITS


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _check_content_type(request: Request, allow_text: bool) -> None:
    media = _media_type(request)
    if media in _JSON_TYPES or (media.startswith("application/") and media.endswith("+json")):
        return
    if allow_text and media == "text/plain":
        return
    accepted = "application/json" + (" or text/plain" if allow_text else "")
    raise HTTPException(415, f"unsupported content type {media!r}; send {accepted}")


async def read_raw_body(request: Request, *, max_bytes: int) -> bytes:
    """The body as sent (still compressed), never more than max_bytes (413, by the declared
    length before reading when there is one)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(413, f"body of {declared} bytes is over the limit of {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise HTTPException(413, f"body is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body(request: Request, *, max_bytes: int) -> bytes:
    """The raw body, decompressed (gzip/deflate), never more than max_bytes either way (413)."""
    data = await read_raw_body(request, max_bytes=max_bytes)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return data
    if encoding in ("gzip", "x-gzip"):
        return _inflate(data, _GZIP_OR_ZLIB, max_bytes)
    if encoding == "deflate":
        try:
            return _inflate(data, _GZIP_OR_ZLIB, max_bytes)
        except HTTPException as exc:
            if exc.status_code != 400:
                raise
            return _inflate(data, _RAW_DEFLATE, max_bytes)  # some clients send raw deflate
    raise HTTPException(415, f"unsupported content encoding {encoding!r}; use gzip or deflate")


def _inflate(data: bytes, wbits: int, max_bytes: int) -> bytes:
    decoder = zlib.decompressobj(wbits)
    try:
        # max_length bounds memory: a small "zip bomb" stops at max_bytes + 1 output bytes.
        out = decoder.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise HTTPException(400, f"body cannot be decompressed: {exc}") from exc
    if len(out) > max_bytes:
        raise HTTPException(413, f"decompressed body is over the limit of {max_bytes} bytes")
    if not decoder.eof:
        raise HTTPException(400, "compressed body is truncated")
    return out


def parse_json(data: bytes, *, nested: bool = True) -> Any:
    """The body as JSON: 400 when unreadable, 422 when a string holds NUL or it nests too deep.

    `nested=False` is for routes whose validation accepts flat items only (metric points,
    timings): they cannot store a deep value, so a large batch skips the depth walk.
    """
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"malformed JSON: {exc}") from None
    may_nest = nested and may_nest_too_deep(data)
    if _ESCAPED_NUL in data or may_nest:  # else neither problem can occur: skip the walk
        found = _problem(parsed, (), 0)
        if found is not None:
            raise InvalidItems([_item_error(parsed, *found)])
    return parsed


def may_nest_too_deep(data: bytes) -> bool:
    """False when the JSON text cannot nest deeper than MAX_DEPTH (too few brackets)."""
    return data.count(b"{") + data.count(b"[") > MAX_DEPTH


def too_deep(value: Any, depth: int = 0) -> bool:
    """Whether a parsed JSON value nests deeper than MAX_DEPTH."""
    if type(value) is dict:
        children: Any = value.values()
    elif type(value) is list:
        children = value
    else:
        return False
    if depth >= MAX_DEPTH:
        return True
    # Only containers are visited (a call per leaf made this walk ~4x slower on Sentry events).
    for child in children:
        kind = type(child)
        if (kind is dict or kind is list) and too_deep(child, depth + 1):
            return True
    return False


def _problem(value: Any, path: tuple[Any, ...], depth: int) -> tuple[tuple[Any, ...], str] | None:
    """(path, message) of the first NUL or too deep value, or None."""
    if type(value) is str:
        return (path, "must not contain NUL characters") if "\x00" in value else None
    if type(value) is dict:
        children: Any = value.items()
    elif type(value) is list:
        children = enumerate(value)
    else:
        return None
    if depth >= MAX_DEPTH:
        return path[:3], f"is nested deeper than {MAX_DEPTH} levels"
    for key, child in children:
        if type(key) is str and "\x00" in key:
            return (*path, key), "keys must not contain NUL characters"
        found = _problem(child, (*path, key), depth + 1)
        if found is not None:
            return found
    return None


def _item_error(parsed: Any, path: tuple[Any, ...], message: str) -> ItemError:
    """The item's index and top-level field (as item validation names them); the full path
    inside that field goes into the message."""
    index = None
    if type(parsed) is list and path:
        index, path = path[0], path[1:]
    field, inner = (str(path[0]), path[1:]) if path else ("", ())
    if inner:
        message += f" (at {'.'.join(str(part) for part in (field, *inner))})"
    return ItemError(index, field.replace("\x00", "\\0")[:200], message.replace("\x00", "\\0"))


def parse_json_items(data: bytes, *, nested: bool = True) -> list[dict[str, Any]]:
    """One object or an array of objects; 400 when unreadable, 422 for non-object items."""
    if not data.strip():
        raise HTTPException(400, "empty body; send a JSON object or an array of objects")
    parsed = parse_json(data, nested=nested)
    if isinstance(parsed, dict):
        return [parsed]
    if not isinstance(parsed, list):
        raise HTTPException(400, "body must be a JSON object or an array of objects")
    if not all(type(item) is dict for item in parsed):
        raise InvalidItems(
            ItemError(i, "", f"item must be a JSON object, got {json_type(item)}")
            for i, item in enumerate(parsed)
            if not isinstance(item, dict)
        )
    return parsed


async def read_json_items(
    request: Request, *, max_bytes: int, allow_text: bool = False, nested: bool = True
) -> list[dict[str, Any]]:
    """The request's JSON items; 413/415/400/422 as docs/API.md "Status codes" says.

    `allow_text` also accepts `text/plain` (what `navigator.sendBeacon` sends for a string);
    `nested` as in `parse_json`.
    """
    _check_content_type(request, allow_text)
    return parse_json_items(await read_body(request, max_bytes=max_bytes), nested=nested)
