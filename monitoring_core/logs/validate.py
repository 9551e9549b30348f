"""The own JSON batch of log records (`POST /api/monitoring/logs`): checked into rows."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from monitoring_core.ingest.validate import ItemChecker, Limits, json_type

__all__ = ["LOG_FIELDS", "SEVERITY_NAMES", "validate_logs"]

LOG_FIELDS = frozenset(
    {"timestamp", "severity", "severity_number", "body", "service", "trace_id", "span_id",
     "attributes"}
)  # fmt: skip
# OTLP's ranges (docs/PROTOCOLS.md "OTLP/HTTP", Logs): a name stands for its range's first number.
SEVERITY_NAMES = {
    "TRACE": 1,
    "DEBUG": 5,
    "INFO": 9,
    "NOTICE": 10,
    "WARN": 13,
    "WARNING": 13,
    "ERROR": 17,
    "CRITICAL": 21,
    "FATAL": 21,
}
MAX_BODY = 32_768
_HEX = {32: re.compile(r"^[0-9a-f]{32}$"), 16: re.compile(r"^[0-9a-f]{16}$")}


def _hex(check: ItemChecker, item: Mapping[str, Any], i: int, key: str, size: int) -> str | None:
    value = check.text(item, i, key, max_len=size + 4)
    if value is None:
        return None
    value = value.lower().replace("-", "")
    if not _HEX[size].match(value) or not value.strip("0"):
        check.fail(i, key, f"must be {size} hexadecimal digits, not all zero")
        return None
    return value


def _severity(check: ItemChecker, item: Mapping[str, Any], i: int) -> tuple[int, str | None]:
    text = check.text(item, i, "severity", max_len=20)
    if "severity_number" in item:
        number = check.integer(item, i, "severity_number", low=0, high=24)
        return number or 0, text
    if text is None:
        return 9, "INFO"  # a record without a level is informational
    number = SEVERITY_NAMES.get(text.strip().upper())
    if number is None:
        check.fail(i, "severity", f"must be one of {', '.join(SEVERITY_NAMES)}")
        return 0, None
    return number, text.strip().upper()


def validate_logs(
    items: Sequence[Mapping[str, Any]], *, limits: Limits, now: datetime
) -> list[tuple[Any, ...]]:
    """Rows in `logs.store.LOG_COLUMNS` order, or InvalidItems naming every problem."""
    check = ItemChecker(limits, now)
    rows = []
    for i, item in enumerate(items):
        before = len(check.errors)
        check.keys(item, LOG_FIELDS, i)
        attributes = item.get("attributes") or {}
        if not isinstance(attributes, dict):
            check.fail(i, "attributes", f"must be an object, got {json_type(attributes)}")
        number, text = _severity(check, item, i)
        row: tuple[Any, ...] = (
            check.time(item, i),
            number,
            text,
            check.text(item, i, "body", required=True, max_len=MAX_BODY),
            _hex(check, item, i, "trace_id", 32),
            _hex(check, item, i, "span_id", 16),
            check.text(item, i, "service", required=True),
            attributes,
            {},
        )
        if len(check.errors) == before:
            rows.append(row)
    check.raise_if_any()
    return rows
