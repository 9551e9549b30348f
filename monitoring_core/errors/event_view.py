"""One stored error event taken apart for reading (pure, no I/O): the exception chain with its
frames, breadcrumbs, the request, and the remaining context as labelled values — never raw
JSON. Works for Sentry events (frames, `context.breadcrumbs`, `context.request`,
`context.contexts`) and for the own API's events (a text stack trace, free-form context).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from monitoring_core.errors.fingerprint import frames_from_stack_trace

__all__ = [
    "Breadcrumb",
    "ChainedException",
    "breadcrumbs",
    "exception_chain",
    "flatten",
    "frame_lines",
    "frame_vars",
    "label",
    "other_context",
    "request_view",
]

# Python's words between the parts of a chained traceback (and sentry.py's, which uses one).
_CHAIN_SEPARATOR = re.compile(
    r"\n\s*\n(?:During handling of the above exception, another exception occurred:"
    r"|The above exception was the direct cause of the following exception:)\s*\n\s*\n"
)
_LAST_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<value>.*))?$")
# Context keys shown in sections of their own (or not at all: grouping/SDK bookkeeping).
_SHOWN_ELSEWHERE = frozenset(
    {
        "breadcrumbs",
        "request",
        "source",
        "sdk",
        "params",
        "mechanism",
        "original_timestamp",
        "exception_chain",
    }
)
_MAX_VALUE = 300
_ACRONYMS = {"id": "ID", "url": "URL", "ip": "IP", "os": "OS", "sdk": "SDK", "api": "API"}


@dataclass(frozen=True)
class ChainedException:
    """One exception of the chain; `frames` oldest call first (as stored)."""

    type: str
    value: str
    frames: list[dict[str, Any]] = field(default_factory=list)
    raised: bool = False  # the one the event is about (the last raised)


@dataclass(frozen=True)
class Breadcrumb:
    time: datetime | None
    category: str
    level: str
    message: str
    data: str


def label(name: str) -> str:
    """`server_name` -> `Server name`, `user_id` -> `User ID`: a key as a person reads it."""
    words = [w for w in re.split(r"[_\-.\s]+", str(name)) if w]
    if not words:
        return str(name)
    shown = [_ACRONYMS.get(w.lower(), w) for w in words]
    first = shown[0]
    shown[0] = first if first.isupper() else first[:1].upper() + first[1:]
    return " ".join(shown[:1] + [w if w.isupper() else w.lower() for w in shown[1:]])


def _short(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = " ".join(str(value).split())
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


def flatten(value: Any, prefix: str = "", *, depth: int = 3) -> list[tuple[str, str]]:
    """Nested data as (dotted key, short text) pairs; lists of scalars joined with commas."""
    if isinstance(value, Mapping) and depth > 0:
        out: list[tuple[str, str]] = []
        for k, v in value.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k), depth=depth - 1)
        return out
    if isinstance(value, list | tuple):
        if all(not isinstance(v, Mapping | list | tuple) for v in value):
            return [(prefix, ", ".join(_short(v) for v in value) or "—")]
        if depth > 0:
            out = []
            for i, v in enumerate(value):
                out += flatten(v, f"{prefix}[{i}]", depth=depth - 1)
            return out
    return [(prefix, _short(value))]


def _split_last_line(part: str) -> tuple[str, str] | None:
    lines = [line for line in part.strip().splitlines() if line.strip()]
    if not lines:
        return None
    match = _LAST_LINE.match(lines[-1].strip())
    if match is None or lines[-1].startswith((" ", "\t")):
        return None
    return match["type"], (match["value"] or "")


def exception_chain(event: Mapping[str, Any]) -> list[ChainedException]:
    """The event's exceptions, the raised one first, then what it was raised while handling.

    The raised one has the event's structured frames; earlier ones have theirs too when the
    event kept them (a Sentry event's `exception.values`, stored by errors/sentry.py as the
    context's `exception_chain`, oldest first), else the frames their part of the text trace
    names (a chained Python traceback sent to our own API).
    """
    raised = ChainedException(
        type=str(event.get("error_type") or "Error"),
        value=str(event.get("message") or ""),
        frames=list(event.get("frames") or []),
        raised=True,
    )
    context = event.get("context")
    kept = context.get("exception_chain") if isinstance(context, Mapping) else None
    if isinstance(kept, list) and kept:
        structured = [
            ChainedException(
                type=str(e.get("type") or "Error"),
                value=str(e.get("value") or ""),
                frames=[dict(f) for f in e.get("frames") or [] if isinstance(f, Mapping)],
            )
            for e in kept
            if isinstance(e, Mapping)
        ]
        return [raised, *reversed(structured)]
    trace = str(event.get("stack_trace") or "")
    parts = _CHAIN_SEPARATOR.split(trace) if trace else []
    earlier: list[ChainedException] = []
    for part in parts[:-1]:
        head = _split_last_line(part)
        if head is not None:
            earlier.append(ChainedException(head[0], head[1], frames_from_stack_trace(part)))
    return [raised, *reversed(earlier)]


def _moment(raw: Any) -> datetime | None:
    try:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return datetime.fromtimestamp(float(raw), UTC)
        if isinstance(raw, str) and raw:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def breadcrumbs(context: Mapping[str, Any]) -> list[Breadcrumb]:
    """The event's breadcrumbs, oldest first (Sentry's `{"values": [...]}` or a plain list)."""
    raw = context.get("breadcrumbs")
    values = raw.get("values") if isinstance(raw, Mapping) else raw
    out = []
    for crumb in values if isinstance(values, list) else []:
        if not isinstance(crumb, Mapping):
            continue
        data = crumb.get("data")
        pairs = flatten(data, depth=2) if isinstance(data, Mapping) and data else []
        out.append(
            Breadcrumb(
                time=_moment(crumb.get("timestamp")),
                category=_short(crumb.get("category") or crumb.get("type") or "default"),
                level=_short(crumb.get("level") or "info"),
                message=_short(crumb.get("message") or "") if crumb.get("message") else "",
                data="; ".join(f"{k} = {v}" for k, v in pairs),
            )
        )
    return out


def _pairs(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, Mapping):
        return [(str(k), _short(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [
            (str(p[0]), _short(p[1])) for p in value if isinstance(p, list | tuple) and len(p) == 2
        ]
    return []


def request_view(context: Mapping[str, Any]) -> dict[str, Any] | None:
    """{method, url, query, headers [(name, value)], data [(key, value)]} of the request the
    event happened in (already scrubbed at ingest), or None."""
    request = context.get("request")
    if not isinstance(request, Mapping) or not request:
        return None
    query = request.get("query_string")
    data = request.get("data")
    return {
        "method": _short(request.get("method")) if request.get("method") else None,
        "url": _short(request.get("url")) if request.get("url") else None,
        "query": _pairs(query) if isinstance(query, Mapping | list) else _short(query or ""),
        "headers": _pairs(request.get("headers")),
        "data": flatten(data, depth=2) if data not in (None, "", {}, []) else [],
    }


def other_context(context: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(section, key, value) rows of the context not shown elsewhere: Sentry's `contexts`
    (runtime, os, browser, trace …) by name, `extra`, and the own API's free-form keys."""
    rows: list[tuple[str, str, str]] = []
    contexts = context.get("contexts")
    if isinstance(contexts, Mapping):
        for name, values in contexts.items():
            for key, value in flatten(values, depth=2):
                if key != "dynamic_sampling_context" and not key.startswith("dynamic_sampling"):
                    rows.append((label(str(name)), key, value))
    extra = context.get("extra")
    if isinstance(extra, Mapping):
        rows += [("Extra", key, value) for key, value in flatten(extra, depth=2)]
    plain = {
        k: v
        for k, v in context.items()
        if k not in _SHOWN_ELSEWHERE and k not in ("contexts", "extra")
    }
    rows += [("Other", key, value) for key, value in flatten(plain, depth=2)]
    return rows


def frame_lines(frame: Mapping[str, Any]) -> list[tuple[int | None, str, bool]]:
    """(line number, source line, is the frame's line) for a frame's context, when it has it."""
    line = frame.get("context_line")
    if line is None:
        return []
    pre = [str(x) for x in frame.get("pre_context") or [] if isinstance(x, str)]
    post = [str(x) for x in frame.get("post_context") or [] if isinstance(x, str)]
    number = frame.get("lineno")
    at = int(number) if isinstance(number, int) and not isinstance(number, bool) else None
    out: list[tuple[int | None, str, bool]] = []
    for i, text in enumerate(pre):
        out.append((at - len(pre) + i if at is not None else None, text, False))
    out.append((at, str(line), True))
    for i, text in enumerate(post):
        out.append((at + 1 + i if at is not None else None, text, False))
    return out


def frame_vars(frame: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A frame's local variables (scrubbed at ingest) as (name, short text)."""
    values = frame.get("vars")
    return [(str(k), _short(v)) for k, v in values.items()] if isinstance(values, Mapping) else []
