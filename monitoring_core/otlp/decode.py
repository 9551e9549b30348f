"""OTLP/HTTP request and response bodies, in binary protobuf or JSON (docs/PROTOCOLS.md "OTLP").

The messages are the `opentelemetry-proto` classes; nothing here decodes protobuf by hand.
OTLP/JSON differs from protobuf's canonical JSON mapping in one way that matters: trace and
span ids are hex strings, not base64. They are turned into base64 before `ParseDict`, which
then handles the rest of the quirks itself: lowerCamelCase or snake_case names, 64-bit
integers as strings or numbers, enums as names or integers, unknown fields ignored.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

__all__ = [
    "PROTOBUF",
    "JSON",
    "Signal",
    "UnreadableBody",
    "encoding_of",
    "item_count",
    "parse_request",
    "response_body",
    "status_body",
]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# Keys whose string values are hex ids in OTLP/JSON (both spellings ParseDict accepts).
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})
_MAX_JSON_DEPTH = 64  # attributes nest (arrays, kvlists); deeper JSON is refused as unreadable


class Signal(StrEnum):
    TRACES = "traces"
    METRICS = "metrics"
    LOGS = "logs"


_REQUESTS: dict[Signal, type[Message]] = {
    Signal.TRACES: trace_service_pb2.ExportTraceServiceRequest,
    Signal.METRICS: metrics_service_pb2.ExportMetricsServiceRequest,
    Signal.LOGS: logs_service_pb2.ExportLogsServiceRequest,
}
_RESPONSES: dict[Signal, type[Message]] = {
    Signal.TRACES: trace_service_pb2.ExportTraceServiceResponse,
    Signal.METRICS: metrics_service_pb2.ExportMetricsServiceResponse,
    Signal.LOGS: logs_service_pb2.ExportLogsServiceResponse,
}
_REJECTED_FIELD = {
    Signal.TRACES: "rejected_spans",
    Signal.METRICS: "rejected_data_points",
    Signal.LOGS: "rejected_log_records",
}


class UnreadableBody(ValueError):
    """The body is not a readable OTLP message of this signal (a 400)."""


def encoding_of(content_type: str) -> str | None:
    """PROTOBUF or JSON for a Content-Type header, None for anything else (a 415)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media in (PROTOBUF, "application/protobuf", "application/vnd.google.protobuf"):
        return PROTOBUF
    if media == JSON:
        return JSON
    return None


def parse_request(signal: Signal, body: bytes, encoding: str) -> Any:
    """The Export…ServiceRequest in `body`, or UnreadableBody naming what is wrong."""
    message = _REQUESTS[signal]()
    if encoding == PROTOBUF:
        try:
            message.ParseFromString(body)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise UnreadableBody(f"not a protobuf {message.DESCRIPTOR.name}: {exc}") from None
        return message
    try:
        data = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise UnreadableBody(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UnreadableBody(f"body must be a JSON object ({message.DESCRIPTOR.name})")
    try:
        json_format.ParseDict(_hex_ids_to_base64(data, 0), message, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, TypeError, ValueError) as exc:
        raise UnreadableBody(f"not an OTLP/JSON {message.DESCRIPTOR.name}: {exc}") from None
    return message


def item_count(signal: Signal, request: Any) -> int:
    """Spans, log records or metric data points in a request (what per-key point rates count)."""
    if signal is Signal.TRACES:
        return sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
    if signal is Signal.LOGS:
        return sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)
    total = 0
    for resource in request.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                which = metric.WhichOneof("data")
                total += len(getattr(metric, which).data_points) if which else 0
    return total


def _hex_ids_to_base64(value: Any, depth: int) -> Any:
    """A copy with the hex id strings as base64 (an id that is not hex becomes empty, which
    the mappers reject per item rather than failing the whole request)."""
    if depth > _MAX_JSON_DEPTH:
        raise UnreadableBody(f"JSON nests deeper than {_MAX_JSON_DEPTH} levels")
    if type(value) is dict:
        out = {}
        for key, child in value.items():
            if key in _ID_KEYS and type(child) is str:
                out[key] = _hex_to_base64(child)
            else:
                out[key] = _hex_ids_to_base64(child, depth + 1)
        return out
    if type(value) is list:
        return [_hex_ids_to_base64(child, depth + 1) for child in value]
    return value


def _hex_to_base64(text: str) -> str:
    try:
        raw = binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        return ""
    return base64.b64encode(raw).decode()


def response_body(signal: Signal, encoding: str, rejected: int, message: str) -> bytes:
    """The Export…ServiceResponse; `partial_success` is set only when something was refused."""
    response = _RESPONSES[signal]()
    if rejected or message:
        partial = response.partial_success
        setattr(partial, _REJECTED_FIELD[signal], rejected)
        partial.error_message = message
    return _encode(response, encoding)


def status_body(code: int, message: str, encoding: str) -> bytes:
    """A google.rpc.Status (code from the gRPC code table, as OTLP/HTTP error bodies carry)."""
    return _encode(status_pb2.Status(code=code, message=message), encoding)


def _encode(message: Message, encoding: str) -> bytes:
    if encoding == PROTOBUF:
        return message.SerializeToString()
    return json_format.MessageToJson(message, indent=None).encode()
