"""API timings and Web Vitals: one route, told apart by their fields; COPY into two tables."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection

from monitoring_core.ingest.copy import copy_rows
from monitoring_core.ingest.validate import MAX_DURATION_MS, ItemChecker, Limits
from monitoring_core.performance.vitals import VITAL_NAMES, rate_vital

__all__ = [
    "TIMING_FIELDS",
    "VITAL_FIELDS",
    "PerformanceBatch",
    "RequestContext",
    "normalise_path",
    "validate_performance",
    "write_performance",
]

TIMING_FIELDS = frozenset(
    {
        "method",
        "endpoint",
        "status_code",
        "response_time_ms",
        "timestamp",
        "user_type",
        "database_query_time_ms",
        "external_api_time_ms",
        "cache_hit",
        "request_id",
    }
)
# `delta`, `entries` and `attribution` come with the web-vitals library's object: accepted
# so that `JSON.stringify(metric)` can be sent as is, and not stored.
VITAL_FIELDS = frozenset(
    {
        "name",
        "value",
        "page_route",
        "url",
        "page",
        "device_type",
        "connection_type",
        "browser",
        "country_code",
        "session_id",
        "id",
        "rating",
        "navigationType",
        "timestamp",
        "delta",
        "entries",
        "attribution",
    }
)
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_DEVICES = frozenset({"mobile", "tablet", "desktop", "unknown"})
_ID_SEGMENT = re.compile(
    r"^(\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,})$"
)

TIMING_COLUMNS = (
    ("time", "timestamptz"),
    ("method", "text"),
    ("endpoint", "text"),
    ("status_code", "int2"),
    ("response_time_ms", "float8"),
    ("user_type", "text"),
    ("database_query_time_ms", "float8"),
    ("external_api_time_ms", "float8"),
    ("cache_hit", "bool"),
    ("request_id", "text"),
)
VITAL_COLUMNS = (
    ("time", "timestamptz"),
    ("name", "text"),
    ("value", "float8"),
    ("rating", "text"),
    ("page_route", "text"),
    ("device_type", "text"),
    ("connection_type", "text"),
    ("browser", "text"),
    ("country_code", "text"),
    ("session_id", "text"),
    ("metric_id", "text"),
    ("navigation_type", "text"),
)


@dataclass(frozen=True)
class RequestContext:
    """What the HTTP request itself says about browser items (sendBeacon sends no fields)."""

    referer: str | None = None
    user_agent: str | None = None


@dataclass
class PerformanceBatch:
    timings: list[tuple[Any, ...]] = field(default_factory=list)
    vitals: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def times(self) -> list[datetime]:
        return [row[0] for row in self.timings] + [row[0] for row in self.vitals]


def normalise_path(url_or_path: str) -> str:
    """A page route from a URL or path: no query or fragment; ids, UUIDs and hashes as `:id`."""
    path = urlsplit(url_or_path).path or "/"
    segments = [":id" if _ID_SEGMENT.match(s) else s for s in path.split("/")]
    return "/".join(segments)[:300] or "/"


def device_from_user_agent(user_agent: str | None) -> str:
    """mobile, tablet or desktop for a browser's User-Agent; unknown for other clients."""
    if not user_agent or not user_agent.startswith("Mozilla/"):
        return "unknown"
    if "iPad" in user_agent or "Tablet" in user_agent:
        return "tablet"
    if "Mobi" in user_agent or "Android" in user_agent:
        return "mobile"
    return "desktop"


def _timing(check: ItemChecker, item: Mapping[str, Any], i: int) -> tuple[Any, ...] | None:
    check.keys(item, TIMING_FIELDS, i)
    method = check.text(item, i, "method", required=True, max_len=16)
    if method is not None and method.upper() not in _METHODS:
        check.fail(i, "method", f"must be one of {', '.join(sorted(_METHODS))}")
    row = (
        check.time(item, i),
        method.upper() if method else None,
        check.text(item, i, "endpoint", required=True, max_len=300),
        check.integer(item, i, "status_code", low=100, high=599),
        check.number(
            item, i, "response_time_ms", required=True, minimum=0, maximum=MAX_DURATION_MS
        ),
        check.text(item, i, "user_type", max_len=50),
        check.number(item, i, "database_query_time_ms", minimum=0, maximum=MAX_DURATION_MS),
        check.number(item, i, "external_api_time_ms", minimum=0, maximum=MAX_DURATION_MS),
        check.boolean(item, i, "cache_hit"),
        check.text(item, i, "request_id", max_len=100),
    )
    return None if check.errors else row


def _page_route(
    check: ItemChecker, item: Mapping[str, Any], i: int, context: RequestContext
) -> str | None:
    route = check.text(item, i, "page_route", max_len=300)
    if route:
        return route
    for key in ("url", "page"):
        value = check.text(item, i, key, max_len=2000)
        if value:
            return normalise_path(value)
    if context.referer:
        return normalise_path(context.referer)
    check.fail(i, "page_route", "is required (or url/page, or a Referer header)")
    return None


def _vital(
    check: ItemChecker, item: Mapping[str, Any], i: int, context: RequestContext
) -> tuple[Any, ...] | None:
    check.keys(item, VITAL_FIELDS, i)
    name = check.text(item, i, "name", required=True, max_len=8)
    if name is not None and name not in VITAL_NAMES:
        check.fail(i, "name", f"must be one of {', '.join(sorted(VITAL_NAMES))}")
        name = None
    value = check.number(item, i, "value", required=True, minimum=0, maximum=MAX_DURATION_MS)
    device = check.text(item, i, "device_type", max_len=20)
    if device is not None and device not in _DEVICES:
        check.fail(i, "device_type", f"must be one of {', '.join(sorted(_DEVICES))}")
    check.text(item, i, "rating", max_len=20)  # checked for type only: recomputed below
    row = (
        check.time(item, i),
        name,
        value,
        rate_vital(name, value) if name is not None and value is not None else None,
        _page_route(check, item, i, context),
        device or device_from_user_agent(context.user_agent),
        check.text(item, i, "connection_type", max_len=20),
        check.text(item, i, "browser", max_len=50),
        check.text(item, i, "country_code", max_len=8),
        check.text(item, i, "session_id", max_len=100),
        check.text(item, i, "id", max_len=100),
        check.text(item, i, "navigationType", max_len=30),
    )
    return None if check.errors else row


def validate_performance(
    items: Sequence[Mapping[str, Any]],
    *,
    limits: Limits,
    now: datetime,
    context: RequestContext | None = None,
) -> PerformanceBatch:
    """API timings (with `endpoint`) and Web Vitals (with `name`), or InvalidItems."""
    context = context or RequestContext()
    check = ItemChecker(limits, now)
    batch = PerformanceBatch()
    for i, item in enumerate(items):
        if "endpoint" in item or "method" in item or "status_code" in item:
            row = _timing(check, item, i)
            if row is not None:
                batch.timings.append(row)
        elif "name" in item:
            row = _vital(check, item, i, context)
            if row is not None:
                batch.vitals.append(row)
        else:
            check.fail(
                i,
                "",
                "neither an API timing (method, endpoint, status_code, response_time_ms) "
                "nor a Web Vital (name, value)",
            )
    check.raise_if_any()
    return batch


def write_performance(conn: Connection, batch: PerformanceBatch) -> tuple[int, int]:
    """COPY timings and vitals in the caller's transaction; returns (timings, vitals) counts."""
    timings = vitals = 0
    if batch.timings:
        names, types = zip(*TIMING_COLUMNS, strict=True)
        timings = copy_rows(conn, "api_timings", names, types, batch.timings)
    if batch.vitals:
        names, types = zip(*VITAL_COLUMNS, strict=True)
        vitals = copy_rows(conn, "web_vitals", names, types, batch.vitals)
    return timings, vitals
