"""Small hand-made raw data for the rollup, query and retention tests (rows inserted as-is)."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text


def add_series(conn: Connection, name: str, dimensions: dict[str, Any] | None = None) -> int:
    return conn.execute(
        text(
            "INSERT INTO metric_series (name, dimensions) VALUES (:n, CAST(:d AS jsonb)) "
            "ON CONFLICT (name, dimensions) DO UPDATE SET name = EXCLUDED.name RETURNING id"
        ),
        {"n": name, "d": json.dumps(dimensions or {})},
    ).scalar_one()


def add_points(
    conn: Connection,
    series_id: int,
    points: Sequence[tuple[datetime, float]],
    ingested_at: datetime | None = None,
) -> None:
    conn.execute(
        text(
            "INSERT INTO metric_points (time, series_id, value, ingested_at) "
            "VALUES (:t, :s, :v, coalesce(CAST(:i AS timestamptz), now()))"
        ),
        [{"t": t, "s": series_id, "v": v, "i": ingested_at} for t, v in points],
    )


def add_timings(
    conn: Connection,
    rows: Sequence[tuple[datetime, str, str, int, float]],
    ingested_at: datetime | None = None,
) -> None:
    """rows: (time, method, endpoint, status_code, response_time_ms)."""
    conn.execute(
        text(
            "INSERT INTO api_timings (time, method, endpoint, status_code, response_time_ms, "
            "ingested_at) VALUES (:t, :m, :e, :s, :r, coalesce(CAST(:i AS timestamptz), now()))"
        ),
        [{"t": t, "m": m, "e": e, "s": s, "r": r, "i": ingested_at} for t, m, e, s, r in rows],
    )


def add_vitals(
    conn: Connection,
    rows: Sequence[tuple[datetime, str, float, str, str, str]],
    ingested_at: datetime | None = None,
) -> None:
    """rows: (time, name, value, rating, page_route, device_type)."""
    conn.execute(
        text(
            "INSERT INTO web_vitals (time, name, value, rating, page_route, device_type, "
            "ingested_at) VALUES (:t, :n, :v, :r, :p, :d, coalesce(CAST(:i AS timestamptz), now()))"
        ),
        [
            {"t": t, "n": n, "v": v, "r": r, "p": p, "d": d, "i": ingested_at}
            for t, n, v, r, p, d in rows
        ],
    )


def random_timings(
    start: datetime, minutes: int, per_minute: int, seed: int = 7
) -> list[tuple[datetime, str, str, int, float]]:
    """Lognormal latencies for three endpoints, ~2 % server errors, ~3 % client errors."""
    rng = random.Random(seed)
    shapes = {("GET", "/api/vendors"): 4.5, ("POST", "/api/bookings"): 5.5, ("GET", "/api/me"): 3.0}
    rows = []
    for minute in range(minutes):
        for _ in range(per_minute):
            (method, endpoint), mu = rng.choice(list(shapes.items()))
            status = rng.choices([200, 500, 404], [95, 2, 3])[0]
            moment = start + timedelta(minutes=minute, seconds=rng.uniform(0, 59.999))
            rows.append((moment, method, endpoint, status, rng.lognormvariate(mu, 0.6)))
    return rows
