"""OTLP log records as `log_records` rows (pure; docs/PROTOCOLS.md "OTLP")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from monitoring_core.ingest.validate import Limits
from monitoring_core.otlp.values import (
    MAX_TEXT,
    any_value,
    attributes,
    clean_text,
    hex_id,
    service_of,
    time_of,
)

__all__ = ["LogBatch", "SEVERITY_NUMBERS", "logs_from_request", "severity_number"]

# OTLP SeverityNumber ranges: TRACE 1-4, DEBUG 5-8, INFO 9-12, WARN 13-16, ERROR 17-20,
# FATAL 21-24; a record with only a text gets the first number of its range.
SEVERITY_NUMBERS = {
    "TRACE": 1,
    "DEBUG": 5,
    "INFO": 9,
    "INFORMATION": 9,
    "NOTICE": 10,
    "WARN": 13,
    "WARNING": 13,
    "ERROR": 17,
    "CRITICAL": 21,
    "FATAL": 21,
}


def severity_number(number: int, text: str) -> int:
    """The record's number when set (clamped to 0..24), else the number its text names."""
    if number:
        return max(0, min(24, number))
    return SEVERITY_NUMBERS.get(text.strip().upper(), 0)


@dataclass
class LogBatch:
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rejected: int = 0
    reason: str = ""


def _body(value: Any) -> str:
    text = value.string_value  # most bodies: a non-empty string (no oneof lookup)
    if text:
        return text if len(text) <= MAX_TEXT and "\x00" not in text else clean_text(text)
    body = any_value(value)
    if body is None:
        return ""
    if isinstance(body, str):
        return body
    return clean_text(orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS).decode())


def logs_from_request(request: Any, limits: Limits) -> LogBatch:
    """Rows for every record whose time (or observed time) lies in the accepted window."""
    batch = LogBatch()
    oldest, newest, append = limits.oldest, limits.newest, batch.rows.append
    for resource_logs in request.resource_logs:
        resource = attributes(resource_logs.resource.attributes)
        service = service_of(resource)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                nanos = record.time_unix_nano or record.observed_time_unix_nano
                moment = time_of(nanos)
                if not nanos or not oldest <= moment <= newest:
                    batch.rejected += 1
                    batch.reason = batch.reason or (
                        f"a log record's time {moment.isoformat() if nanos else '(none)'} is "
                        f"outside the accepted window {limits.oldest.isoformat()} .. "
                        f"{limits.newest.isoformat()}"
                    )
                    continue
                text = record.severity_text
                if len(text) > 50 or "\x00" in text:
                    text = clean_text(text, 50)
                number = record.severity_number
                append(
                    (
                        moment,
                        max(0, min(24, number)) if number else severity_number(0, text),
                        text or None,
                        _body(record.body),
                        hex_id(record.trace_id, 16),
                        hex_id(record.span_id, 8),
                        service,
                        attributes(record.attributes),
                        resource,
                    )
                )
    return batch
