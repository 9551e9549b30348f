"""Metric families in `metric_catalog`: what remote write declares or implies, and the
Prometheus metadata API's read of it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, text

from monitoring_core.prometheus.remote_write import CatalogEntry

__all__ = ["read_metadata", "record_catalog"]

# Declared metadata (type, help, unit from the sender) replaces what was inferred before;
# an inferred type never overwrites a row that exists (an admin's or a declared one).
_DECLARED = text(
    """
    INSERT INTO metric_catalog (name, description, unit, metric_type, category)
    SELECT * FROM unnest(CAST(:names AS text[]), CAST(:helps AS text[]), CAST(:units AS text[]),
                         CAST(:types AS text[]), CAST(:cats AS text[]))
    ON CONFLICT (name) DO UPDATE SET
        description = EXCLUDED.description, unit = EXCLUDED.unit,
        metric_type = EXCLUDED.metric_type
    WHERE (metric_catalog.description, metric_catalog.unit, metric_catalog.metric_type)
        IS DISTINCT FROM (EXCLUDED.description, EXCLUDED.unit, EXCLUDED.metric_type)
    """
)
_INFERRED = text(
    """
    INSERT INTO metric_catalog (name, description, unit, metric_type, category)
    SELECT * FROM unnest(CAST(:names AS text[]), CAST(:helps AS text[]), CAST(:units AS text[]),
                         CAST(:types AS text[]), CAST(:cats AS text[]))
    ON CONFLICT (name) DO NOTHING
    """
)
CATEGORY = "prometheus"


def _params(entries: list[CatalogEntry]) -> dict[str, list[str]]:
    return {
        "names": [e.name for e in entries],
        "helps": [e.help for e in entries],
        "units": [e.unit for e in entries],
        "types": [e.metric_type for e in entries],
        "cats": [CATEGORY] * len(entries),
    }


def record_catalog(conn: Connection, entries: Iterable[CatalogEntry]) -> None:
    """Upsert the families (declared ones win); the caller owns the transaction."""
    by_name = sorted({e.name: e for e in entries}.values(), key=lambda e: e.name)
    declared = [e for e in by_name if e.declared]
    inferred = [e for e in by_name if not e.declared]
    if declared:
        conn.execute(_DECLARED, _params(declared))
    if inferred:
        conn.execute(_INFERRED, _params(inferred))


def read_metadata(
    conn: Connection, *, metric: str | None = None, limit: int | None = None
) -> dict[str, list[dict[str, Any]]]:
    """`{family: [{type, help, unit}]}` as `/api/v1/metadata` answers it."""
    sql = "SELECT name, metric_type, description, unit FROM metric_catalog"
    params: dict[str, Any] = {}
    if metric:
        sql += " WHERE name = :name"
        params["name"] = metric
    sql += " ORDER BY name"
    if limit is not None and limit >= 0:
        sql += " LIMIT :limit"
        params["limit"] = limit
    return {
        row.name: [{"type": row.metric_type, "help": row.description, "unit": row.unit}]
        for row in conn.execute(text(sql), params)
    }
