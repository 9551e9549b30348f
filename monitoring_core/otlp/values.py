"""OTLP common values as plain Python: AnyValue, attribute lists, ids, nanosecond times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "MAX_TEXT",
    "any_value",
    "attributes",
    "clean_text",
    "hex_id",
    "service_of",
    "time_of",
]

MAX_TEXT = 32_768  # characters of one stored string value (a log body, an attribute)
_MAX_DEPTH = 8  # nested arrays / kvlists kept; deeper ones are stored as "…"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
UNKNOWN_SERVICE = "unknown_service"


def clean_text(text: str, limit: int = MAX_TEXT) -> str:
    """Without NUL (Postgres text cannot hold it), at most `limit` characters."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text if len(text) <= limit else text[:limit] + "…"


def any_value(value: Any, depth: int = 0) -> Any:
    """An AnyValue as str, bool, int, float, list, dict, or None when empty."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "string_value":
        return clean_text(value.string_value)
    if which == "bytes_value":
        return value.bytes_value.hex()[:MAX_TEXT]
    if which in ("array_value", "kvlist_value") and depth >= _MAX_DEPTH:
        return "…"
    if which == "array_value":
        return [any_value(v, depth + 1) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes(value.kvlist_value.values, depth + 1)
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        number = value.double_value
        return number if number == number and abs(number) != float("inf") else str(number)
    return getattr(value, which)


def attributes(pairs: Any, depth: int = 0) -> dict[str, Any]:
    """A KeyValue list as a dict (a repeated key keeps its last value).

    Strings and integers (most attributes) take a fast path: this loop is most of the CPU
    a span costs to map. A non-empty `string_value` is read first, without asking which
    field is set (one upb call less a string: ~0.2 µs); an empty one may be unset."""
    out: dict[str, Any] = {}
    for kv in pairs:
        key = kv.key
        if len(key) > 200 or "\x00" in key:
            key = clean_text(key, 200)
        value = kv.value
        text = value.string_value
        if text:
            out[key] = text if len(text) <= MAX_TEXT and "\x00" not in text else clean_text(text)
            continue
        which = value.WhichOneof("value")
        if which == "string_value":
            out[key] = ""
        elif which == "int_value":
            out[key] = value.int_value
        else:
            out[key] = any_value(value, depth)
    return out


def hex_id(raw: bytes, size: int) -> str | None:
    """Lowercase hex of an id of `size` bytes; None when missing, all zero or the wrong size."""
    if len(raw) != size or raw.count(0) == size:
        return None
    return raw.hex()


def time_of(unix_nano: int) -> datetime:
    """An aware UTC datetime from nanoseconds since the Unix epoch (µs precision)."""
    return _EPOCH + _MICROSECOND * (unix_nano // 1000)  # ~2x faster than timedelta(...)


def service_of(resource: dict[str, Any]) -> str:
    """`service.name` of a resource's attributes, else OTel's own default name."""
    name = resource.get("service.name")
    return clean_text(str(name), 200) if name not in (None, "") else UNKNOWN_SERVICE
