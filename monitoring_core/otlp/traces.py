"""OTLP spans as `spans` rows, and server spans as API timings (docs/PROTOCOLS.md "OTLP").

Pure: a decoded ExportTraceServiceRequest and the accepted time window in, rows and the
count of refused spans (with the first reason) out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from monitoring_core.ingest.validate import MAX_DURATION_MS, Limits
from monitoring_core.otlp.values import attributes, clean_text, hex_id, service_of, time_of

__all__ = ["SPAN_KIND_SERVER", "SpanBatch", "server_timing", "spans_from_request"]

SPAN_KIND_SERVER = 2
STATUS_ERROR = 2
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_MAX_EVENTS = 128


@dataclass
class SpanBatch:
    """`spans` rows (SPAN_COLUMNS order), `api_timings` rows, and what was refused."""

    spans: list[tuple[Any, ...]] = field(default_factory=list)
    timings: list[tuple[Any, ...]] = field(default_factory=list)
    rejected: int = 0
    reason: str = ""

    def refuse(self, reason: str) -> None:
        self.rejected += 1
        self.reason = self.reason or reason


def server_timing(
    start: datetime, duration_ms: float, attrs: dict[str, Any], name: str, status_code: int
) -> tuple[Any, ...] | None:
    """An `api_timings` row for an HTTP server span, or None when it is not one.

    Endpoint: `http.route` (else the span name's part after the method, as HTTP semantic
    conventions name server spans "{method} {route}"); method: `http.request.method` (or the
    older `http.method`); status: `http.response.status_code` (or `http.status_code`), else
    500 for a span with error status and 200 otherwise.
    """
    method = str(attrs.get("http.request.method") or attrs.get("http.method") or "").upper()
    if method not in _METHODS:
        return None
    route = attrs.get("http.route")
    if not route and name.upper().startswith(method + " "):
        route = name[len(method) + 1 :]
    if not route or not isinstance(route, str):
        return None
    status = attrs.get("http.response.status_code", attrs.get("http.status_code"))
    try:
        code = int(status) if status is not None else (500 if status_code == STATUS_ERROR else 200)
    except (TypeError, ValueError):
        return None
    if not 100 <= code <= 599 or duration_ms > MAX_DURATION_MS:
        return None
    return (start, method, route[:300], code, duration_ms, None, None, None, None, None)


def _events(span: Any) -> list[dict[str, Any]]:
    events = span.events
    if not events:  # most spans: no list copy
        return []
    return [
        {
            "name": clean_text(event.name, 500),
            "time": time_of(event.time_unix_nano).isoformat(),
            "attributes": attributes(event.attributes),
        }
        for event in list(events)[:_MAX_EVENTS]
    ]


def spans_from_request(request: Any, limits: Limits) -> SpanBatch:
    """Rows for every acceptable span; a span is refused for a bad id, a start outside the
    accepted window, or an end before its start."""
    batch = SpanBatch()
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        service = service_of(resource)
        for scope_spans in resource_spans.scope_spans:
            scope = clean_text(scope_spans.scope.name, 200) or None
            for span in scope_spans.spans:
                row = _span_row(span, resource, service, scope, limits, batch)
                if row is not None:
                    batch.spans.append(row)
    return batch


def _span_row(
    span: Any,
    resource: dict[str, Any],
    service: str,
    scope: str | None,
    limits: Limits,
    batch: SpanBatch,
) -> tuple[Any, ...] | None:
    trace_id, span_id = hex_id(span.trace_id, 16), hex_id(span.span_id, 8)
    if trace_id is None or span_id is None:
        batch.refuse("a span has a missing or invalid trace_id (16 bytes) or span_id (8 bytes)")
        return None
    if span.end_time_unix_nano < span.start_time_unix_nano:
        batch.refuse(f"span {span_id} ends before it starts")
        return None
    start = time_of(span.start_time_unix_nano)
    if not limits.oldest <= start <= limits.newest:
        batch.refuse(
            f"span {span_id} starts at {start.isoformat()}, outside the accepted window "
            f"{limits.oldest.isoformat()} .. {limits.newest.isoformat()}"
        )
        return None
    duration_ms = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
    attrs = attributes(span.attributes)
    name = clean_text(span.name, 500) or "(unnamed)"
    if span.kind == SPAN_KIND_SERVER:
        timing = server_timing(start, duration_ms, attrs, name, span.status.code)
        if timing is not None:
            batch.timings.append(timing)
    return (
        start,
        trace_id,
        span_id,
        hex_id(span.parent_span_id, 8),
        service,
        name,
        int(span.kind),
        duration_ms,
        int(span.status.code),
        clean_text(span.status.message, 2000) or None,
        attrs,
        _events(span),
        resource,
        scope,
    )
