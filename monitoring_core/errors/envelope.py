"""Sentry's transport: compressed bodies and the length-aware envelope format.

Format (develop.sentry.dev/sdk/data-model/envelopes/): line 1 is the envelope header JSON;
then items, each a header JSON line with `type` and usually `length`, followed by exactly
`length` payload bytes and a newline; without `length` the payload runs to the next newline.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import brotli
import orjson

__all__ = [
    "BodyTooLarge",
    "Envelope",
    "EnvelopeError",
    "EnvelopeItem",
    "UnsupportedEncoding",
    "decompress",
    "parse_envelope",
]

_GZIP_OR_ZLIB = 32 + zlib.MAX_WBITS
_RAW_DEFLATE = -zlib.MAX_WBITS
MAX_ITEMS = 1000


class EnvelopeError(ValueError):
    """The body cannot be read as an envelope or decompressed (400)."""


class BodyTooLarge(ValueError):
    """The body, or what it decompresses to, is over the limit (413)."""


class UnsupportedEncoding(ValueError):
    """A Content-Encoding we do not speak (415)."""


@dataclass(frozen=True)
class EnvelopeItem:
    headers: dict[str, Any]
    payload: bytes

    @property
    def type(self) -> str:
        return str(self.headers.get("type", ""))

    def json(self) -> dict[str, Any]:
        """The payload as a JSON object (EnvelopeError otherwise)."""
        return _json_object(self.payload, f"{self.type} item")


@dataclass(frozen=True)
class Envelope:
    headers: dict[str, Any]
    items: list[EnvelopeItem]


def decompress(data: bytes, encoding: str, *, max_bytes: int) -> bytes:
    """The body decoded per Content-Encoding (gzip, deflate, br, or a list of them)."""
    codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
    for coding in reversed(codings):  # the last coding listed was applied last
        if coding in ("identity",):
            continue
        if coding in ("gzip", "x-gzip"):
            data = _inflate(data, _GZIP_OR_ZLIB, max_bytes)
        elif coding == "deflate":
            try:
                data = _inflate(data, _GZIP_OR_ZLIB, max_bytes)
            except EnvelopeError:
                data = _inflate(data, _RAW_DEFLATE, max_bytes)
        elif coding == "br":
            data = _unbrotli(data, max_bytes)
        else:
            raise UnsupportedEncoding(
                f"unsupported content encoding {coding!r}; use gzip, deflate or br"
            )
    return data


def _inflate(data: bytes, wbits: int, max_bytes: int) -> bytes:
    decoder = zlib.decompressobj(wbits)
    try:
        out = decoder.decompress(data, max_bytes + 1)  # bounded: a zip bomb stops here
    except zlib.error as exc:
        raise EnvelopeError(f"body cannot be decompressed: {exc}") from exc
    if len(out) > max_bytes:
        raise BodyTooLarge(f"decompressed body is over the limit of {max_bytes} bytes")
    if not decoder.eof:
        raise EnvelopeError("compressed body is truncated")
    return out


def _unbrotli(data: bytes, max_bytes: int) -> bytes:
    decoder = brotli.Decompressor()
    try:
        out = decoder.process(data, output_buffer_limit=max_bytes + 1)
    except brotli.error as exc:
        raise EnvelopeError(f"body cannot be decompressed: {exc}") from exc
    if len(out) > max_bytes:
        raise BodyTooLarge(f"decompressed body is over the limit of {max_bytes} bytes")
    if not decoder.is_finished():
        raise EnvelopeError("compressed body is truncated")
    return out


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise EnvelopeError(f"{what} must be a JSON object")
    return value


def parse_envelope(data: bytes) -> Envelope:
    """The envelope's header and items; EnvelopeError when it is malformed or truncated."""
    if not data.strip():
        raise EnvelopeError("empty envelope")
    line_end = _line_end(data, 0)
    headers = _json_object(data[:line_end], "envelope header")
    items: list[EnvelopeItem] = []
    pos = line_end + 1
    while pos < len(data):
        if data[pos : pos + 1] == b"\n":  # blank lines between items are tolerated
            pos += 1
            continue
        item, pos = _read_item(data, pos)
        items.append(item)
        if len(items) > MAX_ITEMS:
            raise EnvelopeError(f"more than {MAX_ITEMS} items in one envelope")
    return Envelope(headers=headers, items=items)


def _line_end(data: bytes, start: int) -> int:
    end = data.find(b"\n", start)
    return len(data) if end < 0 else end


def _read_item(data: bytes, pos: int) -> tuple[EnvelopeItem, int]:
    header_end = _line_end(data, pos)
    headers = _json_object(data[pos:header_end], f"item header at byte {pos}")
    if not isinstance(headers.get("type"), str):
        raise EnvelopeError(f"item header at byte {pos} has no type")
    start = header_end + 1
    length = headers.get("length")
    if length is None:
        end = _line_end(data, start)
        return EnvelopeItem(headers, data[start:end]), end + 1
    if not isinstance(length, int) or isinstance(length, bool) or length < 0:
        raise EnvelopeError(f"item at byte {pos} has an invalid length")
    if start + length > len(data):
        raise EnvelopeError(f"item at byte {pos} is truncated: {length} bytes announced")
    end = start + length
    if data[end : end + 1] not in (b"", b"\n"):
        raise EnvelopeError(f"item at byte {pos} is longer than its announced length")
    return EnvelopeItem(headers, data[start:end]), end + 1
