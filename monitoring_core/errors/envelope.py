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
    "MAX_HEADER_LINE",
    "BodyTooLarge",
    "DecodedBody",
    "Envelope",
    "EnvelopeError",
    "EnvelopeItem",
    "UnsupportedEncoding",
    "decompress",
    "envelope_header",
    "parse_envelope",
]

_GZIP_OR_ZLIB = 32 + zlib.MAX_WBITS
_RAW_DEFLATE = -zlib.MAX_WBITS
MAX_ITEMS = 1000
MAX_HEADER_LINE = (
    65_536  # the envelope header line (event id, dsn, sdk, trace): a few hundred bytes
)
_CHUNK = 16_384  # compressed bytes fed to a streaming decoder at a time
_STEP = 1_048_576  # decoded bytes asked for at a time (brotli may overshoot what it is asked)


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


class _Plain:
    """The innermost layer of a DecodedBody: the received bytes, sliced."""

    def __init__(self, data: bytes) -> None:
        self._view, self._pos = memoryview(data), 0

    def take(self, limit: int) -> bytes:
        out = bytes(self._view[self._pos : self._pos + limit])
        self._pos += len(out)
        return out


class _Inflater:
    """gzip/zlib (and raw deflate for `deflate`) decoded on demand, at most `limit` a call."""

    def __init__(self, upstream: _Plain | _Inflater | _Unbrotli, *, raw_fallback: bool) -> None:
        self._up, self._raw_fallback = upstream, raw_fallback
        self._dec = zlib.decompressobj(_GZIP_OR_ZLIB)
        self._fed: list[bytes] | None = [] if raw_fallback else None  # until the first output

    def _decompress(self, chunk: bytes, limit: int) -> bytes:
        try:
            out = self._dec.decompress(chunk, limit)
        except zlib.error as exc:
            if self._fed is None:
                raise EnvelopeError(f"body cannot be decompressed: {exc}") from exc
            # `deflate` sent as raw deflate (some clients): start again without a header.
            fed, self._fed, self._dec = self._fed, None, zlib.decompressobj(_RAW_DEFLATE)
            return self._decompress(b"".join([*fed, chunk]), limit)
        if self._fed is not None:
            self._fed = None if out else [*self._fed, chunk]
        return out

    def take(self, limit: int) -> bytes:
        while not self._dec.eof:
            tail = self._dec.unconsumed_tail
            chunk = tail if tail else self._up.take(_CHUNK)
            out = self._decompress(chunk, limit)
            if out:
                return out
            if not chunk and not self._dec.eof:
                raise EnvelopeError("compressed body is truncated")
        return b""


class _Unbrotli:
    """Brotli decoded on demand, at most `limit` bytes a call."""

    def __init__(self, upstream: _Plain | _Inflater | _Unbrotli) -> None:
        self._up, self._dec = upstream, brotli.Decompressor()

    def take(self, limit: int) -> bytes:
        while not self._dec.is_finished():
            # After a call that hit the output limit, brotli wants empty input until it can
            # accept more.
            chunk = self._up.take(_CHUNK) if self._dec.can_accept_more_data() else b""
            try:
                out = self._dec.process(chunk, output_buffer_limit=limit)
            except brotli.error as exc:
                raise EnvelopeError(f"body cannot be decompressed: {exc}") from exc
            if out:  # may pass `limit` a little: brotli stops growing its buffer there
                return out
            if not chunk and self._dec.can_accept_more_data():
                raise EnvelopeError("compressed body is truncated")
        return b""


class DecodedBody:
    """A received body decoded only as far as it is read: `first_line` decompresses just
    enough to reach the first newline (the envelope header, with its `dsn`), so a request
    is authenticated before the rest of its body is decompressed or parsed; `read_all`
    then returns the whole decoded body, never more than `max_bytes` (BodyTooLarge).

    `decoded` counts the bytes decompressed so far.
    """

    def __init__(self, data: bytes, encoding: str, *, max_bytes: int) -> None:
        layer: _Plain | _Inflater | _Unbrotli = _Plain(data)
        codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
        for coding in reversed(codings):  # the last coding listed was applied last
            if coding == "identity":
                continue
            if coding in ("gzip", "x-gzip", "deflate"):
                layer = _Inflater(layer, raw_fallback=coding == "deflate")
            elif coding == "br":
                layer = _Unbrotli(layer)
            else:
                raise UnsupportedEncoding(
                    f"unsupported content encoding {coding!r}; use gzip, deflate or br"
                )
        self._layer, self._max = layer, max_bytes
        self._parts: list[bytes] = []
        self.decoded = 0

    def _more(self, limit: int) -> bytes:
        out = self._layer.take(min(limit, _STEP))
        self._parts.append(out)
        self.decoded += len(out)
        if self.decoded > self._max:
            raise BodyTooLarge(f"decompressed body is over the limit of {self._max} bytes")
        return out

    def first_line(self, limit: int = MAX_HEADER_LINE) -> bytes:
        """The body up to its first newline (EnvelopeError past `limit` bytes without one)."""
        while True:
            joined = b"".join(self._parts)
            end = joined.find(b"\n")
            if end >= 0:
                return joined[:end]
            if len(joined) > limit:
                raise EnvelopeError(f"envelope header line is longer than {limit} bytes")
            if not self._more(min(_CHUNK, self._max + 1 - self.decoded)):
                return joined  # a body of one line

    def read_all(self) -> bytes:
        """The whole decoded body (including what `first_line` already read)."""
        while self._more(self._max + 1 - self.decoded):
            pass
        return b"".join(self._parts)


def envelope_header(line: bytes) -> dict[str, Any]:
    """The envelope header (the body's first line) as an object (EnvelopeError otherwise)."""
    if not line.strip():
        raise EnvelopeError("empty envelope")
    return _json_object(line, "envelope header")


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
