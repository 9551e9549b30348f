"""Own-API error items (`POST /api/monitoring/errors`) checked and turned into ErrorInputs."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from monitoring_core.enums import ErrorLevel, Severity
from monitoring_core.errors.model import ErrorInput
from monitoring_core.ingest.validate import InvalidItems, ItemError, check_keys, parse_timestamp

__all__ = [
    "ALLOWED_FIELDS",
    "MAX_AGE",
    "MAX_FUTURE",
    "parse_error_items",
    "truncate",
]

REQUIRED = ("error_type", "message", "service_name", "level")
OPTIONAL_TEXT = (
    "severity",
    "stack_trace",
    "endpoint_path",
    "user_id",
    "organization_id",
    "session_id",
    "request_id",
    "trace_id",
    "release",
    "environment",
)
ALLOWED_FIELDS = frozenset(
    {*REQUIRED, *OPTIONAL_TEXT, "context", "tags", "fingerprint", "timestamp"}
)
# Events older than this fall outside the partitions the API keeps ready; clients that queue
# errors offline for longer should not page anyone about them either.
MAX_AGE = timedelta(days=7)
MAX_FUTURE = timedelta(hours=1)  # browsers' clocks drift
_LIMITS = {"error_type": 200, "service_name": 100, "message": 8_000, "stack_trace": 64_000}
_DEFAULT_LIMIT = 500
_LEVELS = frozenset(ErrorLevel)
_SEVERITIES = frozenset(Severity)


def truncate(value: str, limit: int) -> str:
    """The string cut to `limit` characters, marked when cut."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def parse_error_items(items: Sequence[Mapping[str, Any]], *, now: datetime) -> list[ErrorInput]:
    """Every item as an ErrorInput, or InvalidItems listing each bad field of each item."""
    errors: list[ItemError] = []
    parsed: list[ErrorInput] = []
    random = os.urandom(16 * len(items))  # one system call for every event id of the batch
    for index, item in enumerate(items):
        item_errors = check_keys(item, ALLOWED_FIELDS, index)
        event_id = uuid.UUID(bytes=random[16 * index : 16 * index + 16], version=4)
        result = _parse_one(item, index, now, item_errors, event_id)
        errors += item_errors
        if result is not None and not item_errors:
            parsed.append(result)
    if errors:
        raise InvalidItems(errors)
    return parsed


def _parse_one(
    item: Mapping[str, Any],
    index: int,
    now: datetime,
    errors: list[ItemError],
    event_id: uuid.UUID,
) -> ErrorInput | None:
    def fail(field: str, message: str) -> None:
        errors.append(ItemError(index, field, message))

    text = _texts(item, fail)
    if text["level"] is not None and text["level"] not in _LEVELS:
        fail("level", f"must be one of {', '.join(ErrorLevel)}")
    if text["severity"] is not None and text["severity"] not in _SEVERITIES:
        fail("severity", f"must be one of {', '.join(Severity)}")
    time = _time(item.get("timestamp"), now, fail)
    context = _object(item, "context", fail)
    tags = {str(k): str(v)[:200] for k, v in _object(item, "tags", fail).items()}
    fingerprint = _fingerprint(item.get("fingerprint"), fail)
    if errors or time is None:
        return None
    return ErrorInput(
        error_type=str(text["error_type"]),
        message=str(text["message"]),
        service_name=str(text["service_name"]),
        level=str(text["level"]),
        time=time,
        event_id=event_id,
        severity=text["severity"],
        stack_trace=text["stack_trace"],
        endpoint_path=text["endpoint_path"],
        user_id=text["user_id"],
        organization_id=text["organization_id"],
        session_id=text["session_id"],
        request_id=text["request_id"],
        trace_id=text["trace_id"],
        release=text["release"],
        environment=text["environment"],
        tags=tags,
        context=context,
        fingerprint=fingerprint,
    )


_TEXT_FIELDS = frozenset((*REQUIRED, *OPTIONAL_TEXT))


def _texts(item: Mapping[str, Any], fail: Callable[[str, str], None]) -> dict[str, str | None]:
    out: dict[str, str | None] = dict.fromkeys(_TEXT_FIELDS)
    for name, value in item.items():  # only the fields the item has
        if name not in _TEXT_FIELDS or value is None:
            continue
        if type(value) is str:
            out[name] = (
                value if len(value) <= 200 else truncate(value, _LIMITS.get(name, _DEFAULT_LIMIT))
            )
        elif (
            isinstance(value, int | float) and not isinstance(value, bool) and name.endswith("_id")
        ):
            out[name] = str(value)  # numeric ids are common; store them as text
        else:
            fail(name, f"must be a string, got {type(value).__name__}")
    for name in REQUIRED:
        value = item.get(name)
        if value is None or (value == "" and name != "message"):
            fail(name, "is required")
    return out


def _time(value: Any, now: datetime, fail: Callable[[str, str], None]) -> datetime | None:
    try:
        moment = parse_timestamp(value, default=now)
    except ValueError as exc:
        fail("timestamp", str(exc))
        return None
    if not now - MAX_AGE <= moment <= now + MAX_FUTURE:
        fail("timestamp", f"must lie between {MAX_AGE.days} days ago and 1 hour ahead")
        return None
    return moment


def _object(item: Mapping[str, Any], name: str, fail: Callable[[str, str], None]) -> dict[str, Any]:
    value = item.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail(name, "must be a JSON object")
        return {}
    return value


def _fingerprint(value: Any, fail: Callable[[str, str], None]) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        fail("fingerprint", "must be a string or a list of strings")
        return None
    return [str(v)[:200] for v in value] or None
