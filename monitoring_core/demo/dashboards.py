"""Demo dashboards: two teams' boards over the demo's gauges (monitoring_core.dashboards)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert

from monitoring_core.dashboards import validate_panels
from monitoring_core.schema import dashboards

__all__ = ["BOARDS", "load"]

BOARDS: list[tuple[str, str, list[dict[str, Any]]]] = [
    (
        "Platform capacity",
        "Platform",
        [
            {"title": "Active users", "metric": "active_users", "aggregation": "avg"},
            {
                "title": "Busiest connection pool",
                "metric": "db_connections",
                "aggregation": "max",
                "chart": "stat",
            },  # fmt: skip
            {
                "title": "Queue depth by queue",
                "metric": "queue_depth",
                "aggregation": "max",
                "group_by": ["queue"],
            },  # fmt: skip
            {
                "title": "Queues now",
                "metric": "queue_depth",
                "aggregation": "avg",
                "group_by": ["queue"],
                "chart": "table",
            },  # fmt: skip
        ],
    ),
    (
        "Payments on the day",
        "Payments",
        [
            {
                "title": "Payment webhooks waiting",
                "metric": "queue_depth",
                "aggregation": "max",
                "filters": {"queue": "payment_webhooks"},
                "chart": "bar",
            },  # fmt: skip
            {
                "title": "Most webhooks waiting",
                "metric": "queue_depth",
                "aggregation": "max",
                "filters": {"queue": "payment_webhooks"},
                "chart": "stat",
            },  # fmt: skip
        ],
    ),
]


def load(conn: Connection, *, days: int, now: datetime, rng: np.random.Generator) -> dict[str, int]:
    rows = [
        {
            "name": name,
            "team": team,
            "panels": validate_panels(panels),
            "updated_by": "demo",
            "updated_at": now,
        }  # fmt: skip
        for name, team, panels in BOARDS
    ]
    conn.execute(insert(dashboards).values(rows).on_conflict_do_nothing(index_elements=["name"]))
    return {"dashboards": len(rows)}
