"""A Sentry event payload (what `sentry_sdk` sends) mapped to an ErrorInput.

Fields read (develop.sentry.dev/sdk/data-model/event-payloads/): `exception.values[]` (chained,
the last one is the one raised) with `stacktrace.frames[]` oldest first; `logentry` (the
template groups, the formatted text is shown); `level`, `tags`, `user`, `contexts.trace`,
`release`, `environment`, `request`, `fingerprint`, `platform`, `timestamp`. Frames keep their
source lines (`pre_context`, `context_line`, `post_context`) for the error-group page.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from monitoring_core.enums import ErrorLevel, Severity
from monitoring_core.errors.model import ErrorInput
from monitoring_core.errors.validate import MAX_AGE, MAX_FUTURE, truncate
from monitoring_core.ingest.validate import parse_timestamp

__all__ = ["event_to_error", "infer_level", "sentry_event_id"]

# Sentry's `level` as the client's severity; "error" says nothing more than "an error", so the
# layer decides (see severity.py).
_LEVEL_SEVERITY: dict[str, str | None] = {
    "fatal": Severity.CRITICAL,
    "critical": Severity.CRITICAL,
    "error": None,
    "warning": Severity.LOW,
    "info": Severity.INFO,
    "debug": Severity.INFO,
}
_DATABASE = re.compile(
    r"(?i)sql|psycopg|postgres|mysql|database|operationalerror|integrityerror|redis|mongo"
)
_THIRD_PARTY = re.compile(
    r"(?i)requests|httpx|urllib3|aiohttp|stripe|twilio|sendgrid|boto|http\.client"
)
_FRONTEND_PLATFORMS = frozenset({"javascript", "node-browser", "cocoa", "android"})
_FRAME_KEYS = (
    "filename",
    "abs_path",
    "module",
    "function",
    "lineno",
    "colno",
    "in_app",
    "pre_context",
    "context_line",
    "post_context",
    "vars",
)
_MAX_FRAMES = 100
_LEVELS = frozenset(ErrorLevel)
_SEVERITIES = frozenset(Severity)
# infer_level by (platform, error type, last modules): the same bug asks again and again.
_LAYERS: dict[tuple[Any, str, str], str] = {}
_LAYERS_SIZE = 4096


def sentry_event_id(value: Any) -> uuid.UUID | None:
    """Sentry's 32-hex event id as a UUID (None when absent or malformed)."""
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def infer_level(*, platform: str | None, error_type: str, frames: list[dict[str, Any]]) -> str:
    """The layer an error comes from, when the client did not say."""
    if platform in _FRONTEND_PLATFORMS:
        return ErrorLevel.FRONTEND
    modules = " ".join(str(f.get("module") or f.get("filename") or "") for f in frames[-3:])
    cache_key = (platform, error_type, modules)
    layer = _LAYERS.get(cache_key)
    if layer is None:
        if _DATABASE.search(error_type) or _DATABASE.search(modules):
            layer = ErrorLevel.DATABASE
        elif _THIRD_PARTY.search(error_type) or _THIRD_PARTY.search(modules):
            layer = ErrorLevel.THIRD_PARTY
        else:
            layer = ErrorLevel.API
        if len(_LAYERS) >= _LAYERS_SIZE:
            _LAYERS.clear()
        _LAYERS[cache_key] = layer
    return layer


def event_to_error(
    event: Mapping[str, Any], *, project_id: str, now: datetime, fallback_id: Any = None
) -> ErrorInput:
    """The ErrorInput for one Sentry `event` item (timestamps outside the window become `now`)."""
    tags = _tags(event.get("tags"))
    exc = _last_exception(event)
    frames = _frames(exc)
    logentry = _dict(event.get("logentry"))
    error_type = str(exc.get("type") or ("LogMessage" if logentry else "Message"))
    message, template = _message(event, exc, logentry)
    level = tags.get("error_level") or tags.get("layer")
    if level not in _LEVELS:
        level = infer_level(platform=event.get("platform"), error_type=error_type, frames=frames)
    severity = tags.get("severity") if tags.get("severity") in _SEVERITIES else None
    user = _dict(event.get("user"))
    request = _dict(event.get("request"))
    time, context = _time(event.get("timestamp"), now), _context(event, logentry, request)
    if time is None:
        time, context["original_timestamp"] = now, str(event.get("timestamp"))[:64]
    if earlier := _earlier_exceptions(event):  # the error-group page draws the whole chain
        context["exception_chain"] = earlier
    event_id = sentry_event_id(event.get("event_id")) or sentry_event_id(fallback_id)
    return ErrorInput(
        error_type=truncate(error_type, 200),
        message=truncate(message, 8_000),
        message_template=truncate(template, 8_000) if template else None,
        service_name=truncate(_service(event, tags, project_id), 100),
        level=str(level),
        time=time,
        event_id=event_id or uuid.uuid4(),
        dedup=event_id is not None,
        severity=severity or _LEVEL_SEVERITY.get(str(event.get("level", "error"))),
        stack_trace=_render_stack(event) or None,
        frames=frames,
        endpoint_path=_endpoint(request, event),
        user_id=_user_id(user),
        organization_id=_first(tags, "organization_id", "org_id", "organization")
        or _str(user.get("organization_id")),
        session_id=_first(tags, "session_id"),
        request_id=_first(tags, "request_id") or _header(request, "x-request-id"),
        trace_id=_trace_id(event),
        release=_str(event.get("release")),
        environment=_str(event.get("environment")),
        tags=tags,
        context=context,
        fingerprint=[str(p) for p in event["fingerprint"]]
        if isinstance(event.get("fingerprint"), list)
        else None,
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any, limit: int = 500) -> str | None:
    return truncate(str(value), limit) if value not in (None, "") else None


def _first(tags: Mapping[str, str], *names: str) -> str | None:
    return next((tags[n] for n in names if tags.get(n)), None)


def _tags(raw: Any) -> dict[str, str]:
    pairs = raw.items() if isinstance(raw, dict) else raw if isinstance(raw, list) else []
    out: dict[str, str] = {}
    for pair in pairs:
        if isinstance(pair, list | tuple) and len(pair) == 2:
            out[str(pair[0])[:200]] = str(pair[1])[:200]
    return out


def _last_exception(event: Mapping[str, Any]) -> dict[str, Any]:
    exc = event.get("exception")
    values = exc.get("values") if isinstance(exc, dict) else exc if isinstance(exc, list) else None
    if values and isinstance(values[-1], dict):
        return values[-1]
    return {}


_MAX_CHAINED = 9  # exceptions kept before the raised one (Sentry's SDKs send at most 10 in all)


def _earlier_exceptions(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The chained exceptions before the raised one, oldest first as sent (`exception.values`
    but the last), each with its type, value and structured frames (kept like the raised
    one's: `_frames`); empty for a single exception."""
    exc = event.get("exception")
    values = exc.get("values") if isinstance(exc, dict) else exc if isinstance(exc, list) else None
    if not isinstance(values, list) or len(values) < 2:
        return []
    return [
        {
            "type": truncate(str(v.get("type") or "Error"), 200),
            "value": truncate(str(v.get("value") or ""), 8_000),
            "frames": _frames(v),
        }
        for v in values[:-1][-_MAX_CHAINED:]
        if isinstance(v, dict)
    ]


def _raw_frames(exc: Mapping[str, Any]) -> list[dict[str, Any]]:
    frames = _list(_dict(exc.get("stacktrace")).get("frames"))[-_MAX_FRAMES:]
    return [f for f in frames if isinstance(f, dict)]


def _frames(exc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The frames with the fields we keep (_FRAME_KEYS; other SDK extras dropped)."""
    return [{k: f[k] for k in _FRAME_KEYS if k in f} for f in _raw_frames(exc)]


def _message(
    event: Mapping[str, Any], exc: Mapping[str, Any], logentry: Mapping[str, Any]
) -> tuple[str, str | None]:
    """(shown message, grouping template or None)."""
    template = _str(logentry.get("message"), 8_000)
    formatted = _str(logentry.get("formatted"), 8_000)
    if exc:
        return str(exc.get("value") or formatted or template or ""), None
    if template or formatted:
        return str(formatted or template), template
    return str(event.get("message") or ""), None


def _time(raw: Any, now: datetime) -> datetime | None:
    try:
        moment = parse_timestamp(raw, default=now)
    except ValueError:
        return None
    return moment if now - MAX_AGE <= moment <= now + MAX_FUTURE else None


def _service(event: Mapping[str, Any], tags: Mapping[str, str], project_id: str) -> str:
    named = _first(tags, "service", "service_name")
    if named:
        return named
    release = event.get("release")
    if isinstance(release, str) and "@" in release:  # Sentry's "package@version" convention
        return release.split("@", 1)[0]
    return f"sentry-project-{project_id}"


def _endpoint(request: Mapping[str, Any], event: Mapping[str, Any]) -> str | None:
    url = request.get("url")
    if isinstance(url, str) and url:
        return urlsplit(url).path or "/"
    return _str(event.get("transaction"))


def _header(request: Mapping[str, Any], name: str) -> str | None:
    headers = request.get("headers")
    pairs = (
        headers.items()
        if isinstance(headers, dict)
        else headers
        if isinstance(headers, list)
        else []
    )
    for pair in pairs:
        if isinstance(pair, list | tuple) and len(pair) == 2 and str(pair[0]).lower() == name:
            return _str(pair[1], 200)
    return None


def _user_id(user: Mapping[str, Any]) -> str | None:
    for key in ("id", "username"):
        if user.get(key) not in (None, ""):
            return _str(user[key], 200)
    if user.get("email"):
        # Count the user without storing the address.
        return (
            "email-sha256:" + hashlib.sha256(str(user["email"]).lower().encode()).hexdigest()[:16]
        )
    return None


def _trace_id(event: Mapping[str, Any]) -> str | None:
    contexts = _dict(event.get("contexts"))
    trace = _dict(contexts.get("trace"))
    return _str(trace.get("trace_id"), 64)


def _context(
    event: Mapping[str, Any], logentry: Mapping[str, Any], request: Mapping[str, Any]
) -> dict[str, Any]:
    context: dict[str, Any] = {"source": "sentry"}
    for key in (
        "contexts",
        "extra",
        "platform",
        "logger",
        "server_name",
        "transaction",
        "breadcrumbs",
    ):
        if event.get(key):
            context[key] = event[key]
    if request:
        context["request"] = {
            k: request[k]
            for k in ("method", "url", "query_string", "headers", "data")
            if k in request
        }
    if logentry.get("params"):
        context["params"] = logentry["params"]
    mechanism = _dict(_last_exception(event).get("mechanism"))
    if mechanism:  # the `handled` and `mechanism` tags of the error-group page
        context["mechanism"] = {"type": mechanism.get("type"), "handled": mechanism.get("handled")}
    sdk = event.get("sdk")
    if isinstance(sdk, dict):
        context["sdk"] = {"name": sdk.get("name"), "version": sdk.get("version")}
    return context


def _render_stack(event: Mapping[str, Any]) -> str:
    exc = event.get("exception")
    values = exc.get("values") if isinstance(exc, dict) else []
    parts = []
    for value in values if isinstance(values, list) else []:
        if not isinstance(value, dict):
            continue
        lines = ["Traceback (most recent call last):"]
        for frame in _raw_frames(value):
            where = frame.get("filename") or frame.get("abs_path") or frame.get("module") or "?"
            lines.append(
                f'  File "{where}", line {frame.get("lineno", "?")}, in {frame.get("function", "?")}'
            )
            if frame.get("context_line"):
                lines.append(f"    {str(frame['context_line']).strip()}")
        lines.append(f"{value.get('type', 'Error')}: {value.get('value', '')}")
        parts.append("\n".join(lines))
    separator = "\n\nDuring handling of the above exception, another exception occurred:\n\n"
    return truncate(separator.join(parts), 64_000)
