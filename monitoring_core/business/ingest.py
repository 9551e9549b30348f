"""Business events in: validate a batch (all or nothing), then one binary COPY.

`POST /api/monitoring/business-events` items are
`{event_type, user_id?, organization_id?, session_id?, properties?, revenue?, currency?, timestamp?}`.
Validation uses the shared `ItemChecker`, so messages match the other ingest routes.
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
from monitoring_core.ingest.copy import copy_rows
from monitoring_core.ingest.partition_days import FUTURE_LIMIT
from monitoring_core.ingest.validate import ItemChecker, Limits, json_type
from monitoring_core.partitions import ensure_partitions

__all__ = [
    "ALLOWED_FIELDS",
    "COLUMNS",
    "RETENTION_DAYS",
    "TYPES",
    "BusinessEvent",
    "copy_events",
    "ingest_business_events",
    "limits_at",
    "validate_events",
]

RETENTION_DAYS = 800  # as monitoring_core.retention keeps business_events
MAX_PROPERTIES_BYTES = 16_384
_EVENT_TYPE = re.compile(r"^[A-Za-z0-9_.:\-/ ]{1,100}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_REVENUE_LIMIT = Decimal("1e12")  # numeric(14, 2)
COLUMNS = (
    "time",
    "event_type",
    "user_id",
    "organization_id",
    "session_id",
    "properties",
    "revenue",
    "currency",
)
TYPES = ("timestamptz", "text", "text", "text", "text", "jsonb", "numeric", "text")
# What a client may send: the columns, with `timestamp` for the stored `time`.
ALLOWED_FIELDS = frozenset({*COLUMNS[1:], "timestamp"})


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
        props = dict(self.properties or {})
        return (
            self.time,
            self.event_type,
            self.user_id,
            self.organization_id,
            self.session_id,
            props,
            self.revenue,
            self.currency,
        )


def limits_at(now: datetime) -> Limits:
    """Timestamps older than the retention or too far ahead are refused (not stored, then lost)."""
    return Limits(oldest=now - timedelta(days=RETENTION_DAYS), newest=now + FUTURE_LIMIT)


def _identifier(check: ItemChecker, item: Mapping[str, Any], index: int, key: str) -> str | None:
    """A string id; integer ids are common in producers and are stored as their text."""
    value = item.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return check.text(item, index, key, max_len=200)


def _event_type(check: ItemChecker, item: Mapping[str, Any], index: int) -> str | None:
    value = check.text(item, index, "event_type", required=True, max_len=100)
    if value is not None and not _EVENT_TYPE.match(value):
        check.fail(index, "event_type", "may hold letters, digits, space and _ . : - / only")
        return None
    return value


def _revenue(check: ItemChecker, item: Mapping[str, Any], index: int) -> Decimal | None:
    number = check.number(item, index, "revenue")
    if number is None:
        return None
    amount = Decimal(repr(number)).quantize(Decimal("0.01"))
    if abs(amount) >= _REVENUE_LIMIT:
        check.fail(index, "revenue", "is out of range")
        return None
    return amount


def _currency(check: ItemChecker, item: Mapping[str, Any], index: int) -> str | None:
    value = check.text(item, index, "currency", max_len=3)
    if value is not None and not _CURRENCY.match(value):
        check.fail(index, "currency", "must be an ISO 4217 code such as 'GBP'")
        return None
    return value


def _properties(
    check: ItemChecker, item: Mapping[str, Any], index: int, event_type: str | None
) -> dict[str, Any] | None:
    raw = item.get("properties")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        check.fail(index, "properties", f"must be an object, got {json_type(raw)}")
        return None
    encoded = orjson.dumps(raw)
    if len(encoded) > MAX_PROPERTIES_BYTES:
        check.fail(index, "properties", f"is larger than {MAX_PROPERTIES_BYTES} bytes as JSON")
        return None
    if b"\\u0000" in encoded:  # jsonb cannot hold NUL
        check.fail(index, "properties", "must not contain NUL characters")
        return None
    for field, message in _typed_properties(raw, event_type):
        check.fail(index, field, message)
    return raw


def _typed_properties(props: Mapping[str, Any], event_type: str | None) -> list[tuple[str, str]]:
    """The properties KPIs read must be there with the right type: (field, message) each."""
    bad: list[tuple[str, str]] = []
    if event_type in (EventType.SUBSCRIPTION_STARTED, EventType.SUBSCRIPTION_CHANGED):
        mrr = props.get("mrr")
        if isinstance(mrr, bool) or not isinstance(mrr, int | float) or not math.isfinite(mrr):
            bad.append(("properties.mrr", "is required: the organization's MRR after the change"))
        elif not 0 <= mrr < 1e12:
            bad.append(("properties.mrr", "must be between 0 and 1e12"))
    if event_type == EventType.FEATURE_USED:
        feature = props.get("feature")
        if not isinstance(feature, str) or not 1 <= len(feature) <= 100:
            bad.append(("properties.feature", "is required: the feature's name (1-100 chars)"))
    return bad


def _event(check: ItemChecker, item: Mapping[str, Any], index: int) -> BusinessEvent | None:
    check.keys(item, ALLOWED_FIELDS, index)
    event_type = _event_type(check, item, index)
    user = _identifier(check, item, index, "user_id")
    org = _identifier(check, item, index, "organization_id")
    session = _identifier(check, item, index, "session_id")
    props = _properties(check, item, index, event_type)
    revenue = _revenue(check, item, index)
    currency = _currency(check, item, index)
    moment = check.time(item, index)
    if event_type is None or moment is None or props is None:
        return None
    return BusinessEvent(moment, event_type, user, org, session, props, revenue, currency)


def validate_events(items: Sequence[Mapping[str, Any]], *, now: datetime) -> list[BusinessEvent]:
    """Every item as a BusinessEvent, or InvalidItems naming every bad item's index and field."""
    check = ItemChecker(limits_at(now), now)
    events = []
    for index, item in enumerate(items):
        event = _event(check, item, index)
        if event is not None and not check.errors:
            events.append(event)
    check.raise_if_any()
    return events


def copy_events(conn: Connection, events: Iterable[BusinessEvent | Sequence[Any]]) -> int:
    """Binary COPY into business_events in the caller's transaction; partitions must exist.

    Rows may be BusinessEvents or tuples in `COLUMNS` order (the demo loader's fast path).
    """
    rows = (e.row() if isinstance(e, BusinessEvent) else e for e in events)
    return copy_rows(conn, "business_events", COLUMNS, TYPES, rows)


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
