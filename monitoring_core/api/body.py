"""Reading ingest bodies: size limits (also after decompression), content types, JSON items."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from fastapi import HTTPException, Request

from monitoring_core.ingest.validate import InvalidItems, ItemError, json_type

__all__ = ["read_body", "read_json_items"]

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


async def read_body(request: Request, *, max_bytes: int) -> bytes:
    """The raw body, decompressed (gzip/deflate), never more than max_bytes either way (413)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(413, f"body of {declared} bytes is over the limit of {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise HTTPException(413, f"body is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    data = b"".join(chunks)
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


def parse_json_items(data: bytes) -> list[dict[str, Any]]:
    """One object or an array of objects; 400 when unreadable, 422 for non-object items."""
    if not data.strip():
        raise HTTPException(400, "empty body; send a JSON object or an array of objects")
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"malformed JSON: {exc}") from None
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
    request: Request, *, max_bytes: int, allow_text: bool = False
) -> list[dict[str, Any]]:
    """The request's JSON items; 413/415/400/422 as docs/API.md "Status codes" says.

    `allow_text` also accepts `text/plain` (what `navigator.sendBeacon` sends for a string).
    """
    _check_content_type(request, allow_text)
    return parse_json_items(await read_body(request, max_bytes=max_bytes))
