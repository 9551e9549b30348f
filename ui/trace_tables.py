"""The Traces page's tables as Jaeger and Tempo show them: start times in the business time
zone in words, durations with their unit, a span's attributes and resource as name/value rows,
its events at their offset from the span's start, statuses and kinds in words.

Pure functions of the read rows and `now` (tests give both); the page draws what they return.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ui import fmt

__all__ = [
    "KIND_WORDS",
    "STATUS_WORDS",
    "attribute_rows",
    "error_rows",
    "event_rows",
    "log_rows",
    "offset",
    "span_rows",
    "span_summary",
    "trace_rows",
]

STATUS_WORDS = {0: "Unset", 1: "OK", 2: "Error"}  # OTLP's span status codes
KIND_WORDS = {0: "Unspecified", 1: "Internal", 2: "Server", 3: "Client", 4: "Producer",
              5: "Consumer"}  # fmt: skip
INDENT_DEPTH = 20  # deeper spans are indented no further


def status(code: int | None) -> str:
    return STATUS_WORDS.get(code if code is not None else 0, "Unknown")


def offset(ms: float) -> str:
    """A moment relative to a start: `+0 ms`, `+20 ms`, `+1.25 s`, `−3 ms` (before it)."""
    return ("−" if ms < 0 else "+") + fmt.precise_ms(abs(ms))


def trace_rows(
    found: Iterable[Mapping[str, Any]], tz: ZoneInfo, now: datetime
) -> list[dict[str, Any]]:
    """The search's traces, newest first as read."""
    return [
        {
            "Started": fmt.when_exact(r["first_seen"], tz, now),
            "Service": r["service"],
            "Root operation": r["name"],
            "Duration": fmt.precise_ms(r["duration_ms"]),
            "Spans": r["spans"],
            "Errors": r["errors"],
            "Services": r["services"],
            "Trace id": r["trace_id"],
        }
        for r in found
    ]


def span_rows(spans: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One trace's spans in waterfall order, each operation indented by its depth."""
    return [
        {
            "Starts at": offset(s["offset_ms"]),
            "Duration": fmt.precise_ms(s["duration_ms"]),
            "Service": s["service"],
            "Operation": ("· " * min(s["depth"], INDENT_DEPTH)) + s["name"],
            "Kind": KIND_WORDS.get(s["kind"], "Unknown"),
            "Status": status(s["status_code"]),
            "Span id": s["span_id"],
        }
        for s in spans
    ]


def span_summary(span: Mapping[str, Any]) -> str:
    """One line on the chosen span (markdown-safe): kind, start, duration and status."""
    words = status(span["status_code"])
    if span.get("status_message"):
        words += f": {span['status_message']}"
    return fmt.md_escape(
        f"{KIND_WORDS.get(span['kind'], 'Unknown')} span · starts at "
        f"{offset(span['offset_ms'])} · lasts {fmt.precise_ms(span['duration_ms'])} · "
        f"status {words}"
    )


def attribute_rows(attributes: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Attributes (or a resource's) as name/value rows, by name."""
    return [
        {"Attribute": key, "Value": fmt.value(item)}
        for key, item in sorted((attributes or {}).items())
    ]


def _moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else None
    return None


def event_rows(
    events: Iterable[Mapping[str, Any]] | None, span_start: datetime
) -> list[dict[str, Any]]:
    """A span's events (name, ISO time, attributes as stored) at their offset from the
    span's start, in time order; an event without a readable time last, at `—`."""
    rows: list[tuple[float, dict[str, Any]]] = []
    for event in events or ():
        moment = _moment(event.get("time"))
        at = None if moment is None else (moment - span_start).total_seconds() * 1000
        rows.append(
            (
                at if at is not None else float("inf"),
                {
                    "At": "—" if at is None else offset(at),
                    "Event": str(event.get("name") or "—"),
                    "Attributes": fmt.pairs(event.get("attributes")) or "—",
                },
            )
        )
    return [row for _at, row in sorted(rows, key=lambda pair: pair[0])]


def error_rows(
    errors: Iterable[Mapping[str, Any]], tz: ZoneInfo, now: datetime
) -> list[dict[str, Any]]:
    """Error events carrying the trace id."""
    return [
        {
            "Time": fmt.when_exact(e["time"], tz, now),
            "Service": e["service_name"] or "—",
            "Severity": fmt.label(e["severity"]),
            "Type": e["error_type"] or "—",
            "Message": e["message"],
            "Error group": f"#{e['group_id']}" if e["group_id"] is not None else "—",
        }
        for e in errors
    ]


def log_rows(
    logs: Iterable[Mapping[str, Any]], tz: ZoneInfo, now: datetime, *, with_trace: bool = False
) -> list[dict[str, Any]]:
    """Log records (of a trace; `with_trace` adds each one's trace id, for the Logs page)."""
    return [
        {
            "Time": fmt.when_exact(r["time"], tz, now),
            "Service": r["service"],
            "Severity": r["severity_text"] or "—",
            "Message": r["body"],
            **({"Trace id": r["trace_id"] or "—"} if with_trace else {}),
            "Span id": r["span_id"] or "—",
        }
        for r in logs
    ]
