"""Sentry `transaction` events as spans and API timings (docs/PROTOCOLS.md "Sentry envelopes").

Pure. A transaction is a root span (`contexts.trace`) plus its child `spans`; times are Unix
seconds (floats) or RFC 3339 strings. An `http.server` transaction is also an API timing:
method from `request.method`, endpoint from the transaction name, status from
`contexts.response.status_code` (else the trace status: `ok` 200, others 500).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from monitoring_core.ingest.validate import MAX_DURATION_MS, Limits

__all__ = ["SentrySpans", "transaction_spans"]

SPAN_KIND_INTERNAL, SPAN_KIND_SERVER = 1, 2
STATUS_OK, STATUS_ERROR = 1, 2
_HEX = re.compile(r"^[0-9a-f]+$")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
# Sentry span statuses that are HTTP-like failures (the rest of non-ok ones are errors too).
_STATUS_HTTP = {"not_found": 404, "unauthenticated": 401, "permission_denied": 403}


@dataclass
class SentrySpans:
    spans: list[tuple[Any, ...]] = field(default_factory=list)
    timings: list[tuple[Any, ...]] = field(default_factory=list)
    rejected: int = 0


def _moment(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None


def _id(value: Any, size: int) -> str | None:
    if isinstance(value, str):
        value = value.lower().replace("-", "")
        if len(value) == size and _HEX.match(value) and value.strip("0"):
            return value
    return None


def _text(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    out = str(value).replace("\x00", "\ufffd")
    return out[:limit] or None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _span(
    raw: dict[str, Any], trace_id: str, service: str, resource: dict[str, Any], kind: int, name: str
) -> tuple[Any, ...] | None:
    span_id = _id(raw.get("span_id"), 16)
    start, end = _moment(raw.get("start_timestamp")), _moment(raw.get("timestamp"))
    if span_id is None or start is None or end is None or end < start:
        return None
    status = raw.get("status")
    attrs = {**_dict(raw.get("tags")), **_dict(raw.get("data"))}
    if raw.get("op"):
        attrs["sentry.op"] = raw["op"]
    return (
        start,
        trace_id,
        span_id,
        _id(raw.get("parent_span_id"), 16),
        service,
        name[:500] or "(unnamed)",
        kind,
        (end - start).total_seconds() * 1000,
        0 if status is None else (STATUS_OK if status == "ok" else STATUS_ERROR),
        None if status in (None, "ok") else _text(status, 200),
        attrs,
        [],
        resource,
        "sentry",
    )


def transaction_spans(event: dict[str, Any], project_id: str, limits: Limits) -> SentrySpans:
    """The transaction's spans (root first) and its API timing, inside `limits`."""
    out = SentrySpans()
    contexts = _dict(event.get("contexts"))
    trace = _dict(contexts.get("trace"))
    trace_id = _id(trace.get("trace_id"), 32)
    root_start = _moment(event.get("start_timestamp"))
    if trace_id is None or root_start is None or not limits.oldest <= root_start <= limits.newest:
        out.rejected = 1 + len(event.get("spans") or [])
        return out
    tags = _dict(event.get("tags"))
    service = _text(tags.get("service") or event.get("server_name"), 200) or f"sentry:{project_id}"
    resource = {
        k: v
        for k, v in {
            "service.name": service,
            "service.version": event.get("release"),
            "deployment.environment": event.get("environment"),
            "sentry.project": project_id,
        }.items()
        if v is not None
    }
    op = trace.get("op") or ""
    name = _text(event.get("transaction"), 500) or op or "transaction"
    root = {
        **trace,
        "start_timestamp": event.get("start_timestamp"),
        "timestamp": event.get("timestamp"),
        "tags": tags,
    }
    kind = SPAN_KIND_SERVER if op == "http.server" else SPAN_KIND_INTERNAL
    row = _span(root, trace_id, service, resource, kind, name)
    if row is None:
        out.rejected = 1 + len(event.get("spans") or [])
        return out
    out.spans.append(row)
    if kind == SPAN_KIND_SERVER:
        timing = _timing(event, row, trace)
        if timing is not None:
            out.timings.append(timing)
    for child in event.get("spans") or []:
        if not isinstance(child, dict):
            out.rejected += 1
            continue
        child_name = _text(child.get("description"), 500) or _text(child.get("op"), 200) or ""
        span = _span(child, trace_id, service, resource, SPAN_KIND_INTERNAL, child_name)
        if span is None:
            out.rejected += 1
        else:
            out.spans.append(span)
    return out


def _timing(
    event: dict[str, Any], row: tuple[Any, ...], trace: dict[str, Any]
) -> tuple[Any, ...] | None:
    request = _dict(event.get("request"))
    method = str(request.get("method") or "").upper()
    endpoint = row[5]
    if method not in _METHODS or not endpoint.startswith("/"):
        return None
    response = _dict(_dict(event.get("contexts")).get("response"))
    data = _dict(trace.get("data"))
    code = response.get("status_code") or data.get("http.response.status_code")
    status = trace.get("status")
    if not isinstance(code, int) or isinstance(code, bool) or not 100 <= code <= 599:
        code = 200 if status in (None, "ok") else _STATUS_HTTP.get(str(status), 500)
    duration = row[7]
    if duration > MAX_DURATION_MS:
        return None
    return (row[0], method, endpoint[:300], code, duration, None, None, None, None, None)
