"""Sentry envelope `log` items as `log_records` rows (docs/PROTOCOLS.md "Sentry SDK", pure).

A `log` item (content type `application/vnd.sentry.items.log+json`, sent by sentry_sdk with
`enable_logs=True`) holds `{"items": [{timestamp, level, body, attributes, trace_id?,
span_id?}]}`; `timestamp` is Unix seconds, `attributes` map names to `{value, type}`, and
`sentry.severity_number` among them carries OTLP's severity number.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from monitoring_core.ingest.validate import Limits
from monitoring_core.logs.validate import SEVERITY_NAMES

__all__ = ["sentry_log_rows"]

_HEX = re.compile(r"^[0-9a-f]+$")
MAX_BODY = 32_768


def _hex(value: Any, size: int) -> str | None:
    if isinstance(value, str):
        value = value.lower().replace("-", "")
        if len(value) == size and _HEX.match(value) and value.strip("0"):
            return value
    return None


def _text(value: Any, limit: int) -> str:
    return str(value).replace("\x00", "\ufffd")[:limit]


def _attributes(raw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(raw, dict):
        for key, value in list(raw.items())[:128]:
            plain = value.get("value") if isinstance(value, dict) else value
            if isinstance(plain, str):
                plain = _text(plain, 2000)
            elif not isinstance(plain, bool | int | float) or plain != plain:
                plain = None if plain is None else _text(plain, 2000)
            out[_text(key, 200)] = plain
    return out


def sentry_log_rows(
    payload: dict[str, Any], project_id: str, limits: Limits
) -> tuple[list[tuple[Any, ...]], int]:
    """(rows in `logs.store.LOG_COLUMNS` order, records refused)."""
    rows: list[tuple[Any, ...]] = []
    refused = 0
    items = payload.get("items")
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            refused += 1
            continue
        stamp = item.get("timestamp")
        try:
            moment = datetime.fromtimestamp(float(stamp), UTC) if stamp is not None else None
        except (TypeError, ValueError, OverflowError, OSError):
            moment = None
        if moment is None or not limits.oldest <= moment <= limits.newest:
            refused += 1
            continue
        attributes = _attributes(item.get("attributes"))
        level = _text(item.get("level") or "info", 20).upper()
        number = attributes.get("sentry.severity_number")
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= 24:
            number = SEVERITY_NAMES.get(level, 0)
        service = attributes.get("service.name") or attributes.get("server.address")
        rows.append(
            (
                moment,
                number,
                level,
                _text(item.get("body") or "", MAX_BODY),
                _hex(item.get("trace_id"), 32),
                _hex(item.get("span_id"), 16),
                _text(service, 200) if service else f"sentry:{project_id}",
                attributes,
                {"sentry.project": project_id},
            )
        )
    return rows, refused
