"""Demo gauges, one point a minute: active users, database connections, queue depths."""

from __future__ import annotations

from datetime import datetime

import numpy as np
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert

from monitoring_core.demo.copy import copy_columns, fixed
from monitoring_core.demo.traffic import Spell, shape_at, to_np
from monitoring_core.schema import metric_catalog, metric_series

__all__ = ["CATALOG", "load_gauges"]

MINUTE = np.timedelta64(1, "m")
# name -> (description, unit, category)
CATALOG = {
    "active_users": ("Users with a request in the last 5 minutes", "users", "business"),
    "db_connections": (
        "Open connections in the database pool (max 100)",
        "connections",
        "infrastructure",
    ),
    "queue_depth": ("Jobs waiting in a background queue", "jobs", "infrastructure"),
}


def load_gauges(
    conn: Connection,
    hours: np.ndarray,
    shape: np.ndarray,
    start: datetime,
    now: datetime,
    spells: dict[str, Spell],
    rng: np.random.Generator,
) -> int:
    """Register the series and COPY a point per minute for each; rows written."""
    _register_catalog(conn)
    minutes = np.arange(to_np(start).astype("datetime64[m]") + MINUTE, to_np(now), MINUTE)
    minutes = minutes.astype("datetime64[us]")
    load = shape_at(minutes, hours, shape)
    series = _series_values(minutes, load, spells, rng)
    ids = [_series_id(conn, name, dimensions) for name, dimensions in series]
    columns = {
        "time": fixed("timestamptz", np.tile(minutes, len(series))),
        "series_id": fixed("int8", np.repeat(np.array(ids, dtype=np.int64), len(minutes))),
        "value": fixed("float8", np.concatenate([v.round(2) for v in series.values()])),
    }
    return copy_columns(conn, "metric_points", columns)


def _series_values(
    minutes: np.ndarray, load: np.ndarray, spells: dict[str, Spell], rng: np.random.Generator
) -> dict[tuple[str, tuple[tuple[str, str], ...]], np.ndarray]:
    n = len(minutes)
    slow_db = spells["slow_database"].covers(minutes)
    outage = spells["payment_outage"].covers(minutes)
    pool = np.clip(8 + 26 * load + rng.normal(0, 2.5, n), 2, 100)
    pool = np.where(slow_db, rng.uniform(92, 100, n).round(), pool.round())
    # Payment webhooks pile up during the outage and drain over the next hour.
    webhooks = rng.poisson(1.0, n) + _backlog(outage, rise=6.0, drain=0.1)
    return {
        ("active_users", ()): (30 + 850 * load * rng.lognormal(0, 0.06, n)).round(),
        ("db_connections", (("pool", "primary"),)): pool,
        ("queue_depth", (("queue", "emails"),)): rng.poisson(2 + 5 * load).astype(float),
        ("queue_depth", (("queue", "photo_processing"),)): rng.poisson(6 * load).astype(float),
        ("queue_depth", (("queue", "payment_webhooks"),)): webhooks.astype(float),
    }


def _backlog(during: np.ndarray, *, rise: float, drain: float) -> np.ndarray:
    """A queue that grows by `rise` a minute while `during`, then shrinks by `drain` of itself."""
    depth = np.zeros(len(during))
    level = 0.0
    for i, active in enumerate(during.tolist()):
        level = level + rise if active else level * (1 - drain)
        depth[i] = level
    return depth.round()


def _register_catalog(conn: Connection) -> None:
    rows = [
        {"name": name, "description": text, "unit": unit, "category": category}
        for name, (text, unit, category) in CATALOG.items()
    ]
    conn.execute(insert(metric_catalog).values(rows).on_conflict_do_nothing())


def _series_id(conn: Connection, name: str, dimensions: tuple[tuple[str, str], ...]) -> int:
    statement = (
        insert(metric_series)
        .values(name=name, dimensions=dict(dimensions), source_system="demo")
        .on_conflict_do_update(
            index_elements=["name", "dimensions"], set_={"source_system": "demo"}
        )
        .returning(metric_series.c.id)
    )
    return int(conn.execute(statement).scalar_one())
