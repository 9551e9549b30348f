"""Business events in: validate a batch (all or nothing), then one binary COPY.

`POST /api/monitoring/business-events` items are
`{event_type, user_id?, organization_id?, session_id?, properties?, revenue?, currency?, timestamp?}`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Connection

from monitoring_core.business.definitions import EventType
from monitoring_core.ingest.validate import (
    InvalidItems,
    ItemError,
    Limits,
    check_keys,
    parse_timestamp,
)
from monitoring_core.partitions import ensure_partitions

__all__ = [
    "ALLOWED_FIELDS",
    "RETENTION_DAYS",
    "BusinessEvent",
    "copy_events",
    "ingest_business_events",
    "limits_at",
    "validate_events",
]

RETENTION_DAYS = 800
FUTURE_TOLERANCE = timedelta(hours=1)  # clock skew of producers
ALLOWED_FIELDS = frozenset(
    {
        "event_type",
        "user_id",
        "organization_id",
        "session_id",
        "properties",
        "revenue",
        "currency",
        "timestamp",
    }
)
MAX_ID_CHARS = 200
MAX_PROPERTIES_BYTES = 16_384
_EVENT_TYPE = re.compile(r"^[A-Za-z0-9_.:\-/ ]{1,100}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_REVENUE_LIMIT = Decimal("1e12")  # numeric(14, 2)
_COLUMNS = (
    "time",
    "event_type",
    "user_id",
    "organization_id",
    "session_id",
    "properties",
    "revenue",
    "currency",
)
_TYPES = ("timestamptz", "text", "text", "text", "text", "jsonb", "numeric", "text")


@dataclass(frozen=True)
class BusinessEvent:
    time: datetime
    event_type: str
    user_id: str | None = None
    organization_id: str | None = None
    session_id: str | None = None
    properties: Mapping[str, Any] | None = None
    revenue: Decimal | None = None
    currency: str | None = None

    def row(self) -> tuple[Any, ...]:
        return (
            self.time,
            self.event_type,
            self.user_id,
            self.organization_id,
            self.session_id,
            dict(self.properties or {}),
            self.revenue,
            self.currency,
        )


def limits_at(now: datetime) -> Limits:
    """Timestamps older than the retention or in the future are refused, not stored and lost."""
    return Limits.around(now, oldest=now - timedelta(days=RETENTION_DAYS), future=FUTURE_TOLERANCE)


def _identifier(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("must be a string (or an integer id)")
    text = str(value)
    if not text or len(text) > MAX_ID_CHARS:
        raise ValueError(f"must be 1 to {MAX_ID_CHARS} characters")
    return text


def _event_type(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("is required and must be a string")
    if not _EVENT_TYPE.match(value):
        raise ValueError("must be 1-100 characters of letters, digits, space and _ . : - /")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("must be a finite number")
    return float(value)


def _revenue(value: Any) -> Decimal:
    amount = Decimal(str(_number(value))).quantize(Decimal("0.01"))
    if abs(amount) >= _REVENUE_LIMIT:
        raise ValueError("is out of range")
    return amount


def _currency(value: Any) -> str:
    if not isinstance(value, str) or not _CURRENCY.match(value):
        raise ValueError("must be an ISO 4217 code like 'GBP'")
    return value


def _properties(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    if len(orjson.dumps(value)) > MAX_PROPERTIES_BYTES:
        raise ValueError(f"must be at most {MAX_PROPERTIES_BYTES} bytes as JSON")
    return value


def _typed_properties(props: Mapping[str, Any], event_type: str) -> list[tuple[str, str]]:
    """Properties the KPIs read: (field, message) for each one missing or of the wrong type."""
    bad: list[tuple[str, str]] = []
    if event_type in (EventType.SUBSCRIPTION_STARTED, EventType.SUBSCRIPTION_CHANGED):
        mrr = props.get("mrr")
        if isinstance(mrr, bool) or not isinstance(mrr, int | float) or not math.isfinite(mrr):
            bad.append(("properties.mrr", "is required: the organization's MRR after the change"))
        elif mrr < 0:
            bad.append(("properties.mrr", "must be >= 0"))
    if event_type == EventType.FEATURE_USED:
        feature = props.get("feature")
        if not isinstance(feature, str) or not 1 <= len(feature) <= 100:
            bad.append(("properties.feature", "is required: the feature's name (1-100 chars)"))
    return bad


_PARSERS = {
    "user_id": _identifier,
    "organization_id": _identifier,
    "session_id": _identifier,
    "revenue": _revenue,
    "currency": _currency,
}


def _validate_one(
    item: Mapping[str, Any], index: int, now: datetime, limits: Limits
) -> tuple[BusinessEvent | None, list[ItemError]]:
    errors = check_keys(item, ALLOWED_FIELDS, index)
    values: dict[str, Any] = {}
    try:
        values["event_type"] = _event_type(item.get("event_type"))
    except ValueError as exc:
        errors.append(ItemError(index, "event_type", str(exc)))
    for field, parse in _PARSERS.items():
        if item.get(field) is not None:
            try:
                values[field] = parse(item[field])
            except ValueError as exc:
                errors.append(ItemError(index, field, str(exc)))
    errors += _check_properties(item, values, index)
    errors += _check_time(item, values, index, now, limits)
    if errors:
        return None, errors
    return BusinessEvent(**values), []


def _check_properties(
    item: Mapping[str, Any], values: dict[str, Any], index: int
) -> list[ItemError]:
    raw = item.get("properties")
    props: dict[str, Any] = {}
    if raw is not None:
        try:
            props = _properties(raw)
        except ValueError as exc:
            return [ItemError(index, "properties", str(exc))]
    values["properties"] = props
    bad = _typed_properties(props, values.get("event_type", ""))
    return [ItemError(index, field, message) for field, message in bad]


def _check_time(
    item: Mapping[str, Any], values: dict[str, Any], index: int, now: datetime, limits: Limits
) -> list[ItemError]:
    try:
        moment = parse_timestamp(item.get("timestamp"), default=now)
    except ValueError as exc:
        return [ItemError(index, "timestamp", str(exc))]
    if moment < limits.oldest:
        return [ItemError(index, "timestamp", f"is older than the {RETENTION_DAYS}-day retention")]
    if moment > limits.newest:
        return [ItemError(index, "timestamp", "is in the future")]
    values["time"] = moment
    return []


def validate_events(items: Sequence[Mapping[str, Any]], *, now: datetime) -> list[BusinessEvent]:
    """Every item as a BusinessEvent, or InvalidItems listing every bad field of every item."""
    limits = limits_at(now)
    events: list[BusinessEvent] = []
    errors: list[ItemError] = []
    for index, item in enumerate(items):
        event, bad = _validate_one(item, index, now, limits)
        errors += bad
        if event is not None:
            events.append(event)
    if errors:
        raise InvalidItems(errors)
    return events


def copy_events(conn: Connection, events: Iterable[BusinessEvent | tuple[Any, ...]]) -> int:
    """Binary COPY into business_events inside the caller's transaction; partitions must exist.

    Rows may be BusinessEvents or tuples in `_COLUMNS` order (the demo loader's fast path).
    """
    pg = conn.connection.driver_connection
    assert pg is not None
    count = 0
    statement = f"COPY business_events ({', '.join(_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    with pg.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(list(_TYPES))
        for event in events:
            copy.write_row(event.row() if isinstance(event, BusinessEvent) else event)
            count += 1
    return count


def ingest_business_events(
    conn: Connection, items: Sequence[Mapping[str, Any]], *, now: datetime
) -> int:
    """Validate (InvalidItems on any bad item, nothing written), create partitions, COPY."""
    events = validate_events(items, now=now)
    if not events:
        return 0
    times = [e.time for e in events]
    ensure_partitions(conn, start=min(times), end=max(times), tables=("business_events",))
    return copy_events(conn, events)
