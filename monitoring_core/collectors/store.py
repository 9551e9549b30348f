"""Admin-defined collectors (`sql_collectors` rows: SQL queries and Prometheus scrapes).

Validation is pure (`validate_collector`); the store functions take a Connection and never
commit. Database URLs are secrets: `public_collector` shows them with the password masked.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError

from monitoring_core.audit import record_audit
from monitoring_core.collectors.readonly import SELF_URL, database_url_error
from monitoring_core.ingest.validate import InvalidItems, ItemError
from monitoring_core.schema import sql_collectors

__all__ = [
    "COLLECTOR_FIELDS",
    "COLLECTOR_KINDS",
    "list_collectors",
    "public_collector",
    "save_collector",
    "validate_collector",
]

COLLECTOR_KINDS = ("sql", "prometheus_scrape")
COLLECTOR_FIELDS = frozenset(
    {"name", "kind", "url", "query", "metric_name", "interval_seconds", "is_enabled"}
)
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:.]{0,199}")


def _url_error(kind: str, url: Any) -> str | None:
    if not isinstance(url, str) or not url:
        return "is required"
    if kind == "prometheus_scrape":
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.netloc)
        return None if ok else "must be an http:// or https:// URL of a /metrics endpoint"
    return database_url_error(url)


def _field_errors(merged: dict[str, Any]) -> list[ItemError]:
    errors: list[ItemError] = []

    def bad(field: str, message: str) -> None:
        errors.append(ItemError(None, field, message))

    name, kind = merged.get("name"), merged.get("kind", "sql")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
        bad("name", "must be a string of 1 to 200 characters")
    if kind not in COLLECTOR_KINDS:
        bad("kind", f"must be one of {', '.join(COLLECTOR_KINDS)}")
    elif message := _url_error(kind, merged.get("url")):
        bad("url", message)
    query = merged.get("query")
    if kind == "sql" and (not isinstance(query, str) or not query.strip() or len(query) > 10_000):
        bad("query", "a SELECT of at most 10,000 characters is required for kind 'sql'")
    metric = merged.get("metric_name")
    if metric is not None and (not isinstance(metric, str) or not _METRIC_NAME.fullmatch(metric)):
        bad("metric_name", "must look like a metric name, e.g. platform_users")
    interval = merged.get("interval_seconds", 60)
    if isinstance(interval, bool) or not isinstance(interval, int) or not 10 <= interval <= 86_400:
        bad("interval_seconds", "must be a whole number between 10 and 86400")
    if not isinstance(merged.get("is_enabled", True), bool):
        bad("is_enabled", "must be true or false")
    return errors


def validate_collector(body: Any, *, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """Clean column values for an insert (`current` None) or a partial update; InvalidItems."""
    if not isinstance(body, dict):
        raise InvalidItems([ItemError(None, "", "body must be a JSON object")])
    unknown = [
        ItemError(None, key, f"unknown field; allowed: {', '.join(sorted(COLLECTOR_FIELDS))}")
        for key in body
        if key not in COLLECTOR_FIELDS
    ]
    errors = unknown + _field_errors({**(current or {}), **body})
    if errors:
        raise InvalidItems(errors)
    clean = dict(body)
    if isinstance(clean.get("name"), str):
        clean["name"] = clean["name"].strip()
    return clean


def list_collectors(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(sql_collectors).order_by(sql_collectors.c.name)).mappings()
    return [dict(row) for row in rows]


def public_collector(row: dict[str, Any]) -> dict[str, Any]:
    """A collector as shown to people: the database URL's or scrape URL's password hidden."""
    shown = dict(row)
    if row["kind"] == "prometheus_scrape":
        parts = urlsplit(row["url"])
        if parts.password is not None:
            host = parts.netloc.rsplit("@", 1)[1]
            shown["url"] = urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
        return shown
    if row["kind"] == "sql" and row["url"] != SELF_URL:
        try:
            shown["url"] = make_url(row["url"]).render_as_string(hide_password=True)
        except ArgumentError:
            shown["url"] = "(invalid URL)"
    return shown


def save_collector(
    conn: Connection, body: Any, *, collector_id: int | None, actor: str, now: datetime
) -> dict[str, Any] | None:
    """Create or partly update a collector; None when collector_id does not exist."""
    current = None
    if collector_id is not None:
        found = conn.execute(select(sql_collectors).where(sql_collectors.c.id == collector_id))
        row = found.mappings().one_or_none()
        if row is None:
            return None
        current = dict(row)
    fields = validate_collector(body, current=current)
    if collector_id is None:
        stmt: Any = insert(sql_collectors).values(**fields)
    else:
        stmt = update(sql_collectors).where(sql_collectors.c.id == collector_id).values(**fields)
    try:
        with conn.begin_nested():
            saved = dict(conn.execute(stmt.returning(sql_collectors)).mappings().one())
    except IntegrityError:
        raise InvalidItems(
            [ItemError(None, "name", "a collector with this name already exists")]
        ) from None
    action = "collector.create" if collector_id is None else "collector.update"
    details = {k: v for k, v in fields.items() if k != "url"}  # URLs may hold passwords
    record_audit(
        conn, actor=actor, action=action, target=str(saved["id"]), details=details, now=now
    )
    return saved
