"""Demo performance data: API timings of ~20 endpoints, Web Vitals and a few gauges."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import Connection

from monitoring_core.demo import gauges, vitals
from monitoring_core.demo.copy import Column, coded, copy_columns, fixed, random_ids, text
from monitoring_core.demo.traffic import (
    Spell,
    bad_spells,
    hour_grid,
    shape_at,
    spread_events,
    traffic_shape,
)

__all__ = ["ENDPOINTS", "REQUESTS_PER_HOUR", "Endpoint", "load"]

REQUESTS_PER_HOUR = 700  # sampled timings per hour at an average load


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    weight: float  # share of traffic
    median_ms: float  # lognormal median
    sigma: float  # lognormal shape: larger = longer tail
    server_errors: float  # share of 5xx
    client_errors: float  # share of 4xx
    db_share: float  # part of the time spent in the database
    external_share: float = 0.0  # part spent waiting on a third party
    cacheable: bool = False
    creates: bool = False  # answers 201


E = Endpoint
ENDPOINTS: tuple[Endpoint, ...] = (
    E("GET", "/api/suppliers/search", 14, 180, 0.55, 0.002, 0.010, 0.60, cacheable=True),
    E("GET", "/api/suppliers/{id}", 12, 70, 0.45, 0.001, 0.020, 0.50, cacheable=True),
    E("GET", "/api/suppliers/{id}/availability", 6, 140, 0.50, 0.002, 0.010, 0.70),
    E("GET", "/api/suppliers/{id}/reviews", 4, 95, 0.45, 0.001, 0.010, 0.60, cacheable=True),
    E("GET", "/api/couples/{id}/timeline", 9, 120, 0.50, 0.001, 0.010, 0.60),
    E("GET", "/api/couples/{id}/guests", 6, 90, 0.50, 0.001, 0.010, 0.70),
    E("POST", "/api/couples/{id}/guests", 2, 110, 0.45, 0.002, 0.040, 0.60, creates=True),
    E("GET", "/api/couples/{id}/budget", 4, 80, 0.45, 0.001, 0.010, 0.60),
    E("PUT", "/api/couples/{id}/budget/items/{id}", 1.5, 95, 0.45, 0.002, 0.030, 0.60),
    E("GET", "/api/checklist", 5, 60, 0.40, 0.001, 0.010, 0.50, cacheable=True),
    E("POST", "/api/forms/submit", 4, 320, 0.60, 0.004, 0.050, 0.40, 0.20),
    E("GET", "/api/forms/{id}", 3, 75, 0.45, 0.001, 0.020, 0.50),
    E("POST", "/api/bookings", 1.5, 450, 0.55, 0.004, 0.030, 0.50, 0.10, creates=True),
    E("POST", "/api/bookings/{id}/confirm", 0.8, 380, 0.50, 0.004, 0.020, 0.40, 0.35),
    E("POST", "/api/payments/charge", 0.7, 850, 0.45, 0.006, 0.040, 0.15, 0.75),
    E("POST", "/api/photos/upload", 2.5, 1400, 0.70, 0.005, 0.020, 0.05, 0.60, creates=True),
    E("GET", "/api/photos/gallery/{id}", 4, 210, 0.55, 0.002, 0.010, 0.30, 0.20, True),
    E("GET", "/api/messages", 5, 65, 0.45, 0.001, 0.010, 0.60),
    E("POST", "/api/messages", 2.5, 140, 0.50, 0.002, 0.020, 0.40, 0.10, creates=True),
    E("GET", "/api/notifications", 7, 35, 0.40, 0.001, 0.005, 0.50, cacheable=True),
    E("POST", "/api/auth/login", 2, 260, 0.35, 0.001, 0.080, 0.10),
    E("GET", "/api/reports/supplier-dashboard", 1, 1100, 0.60, 0.003, 0.010, 0.85),
)
_CLIENT_CODES = np.array([400, 401, 403, 404, 409, 422, 429])
_CLIENT_P = np.array([0.15, 0.15, 0.05, 0.35, 0.05, 0.20, 0.05])
_SERVER_CODES = np.array([500, 502, 503, 504])
_SERVER_P = np.array([0.50, 0.20, 0.10, 0.20])
_USER_TYPES = ("couple", "supplier", "planner", "anonymous")
_USER_P = np.array([0.55, 0.30, 0.05, 0.10])


def load(conn: Connection, *, days: int, now: datetime, rng: np.random.Generator) -> dict[str, int]:
    """Write API timings, Web Vitals and gauges for [now - days, now)."""
    return load_window(conn, now - timedelta(days=days), now, bad_spells(now), rng)


def load_window(
    conn: Connection,
    start: datetime,
    now: datetime,
    spells: dict[str, Spell],
    rng: np.random.Generator,
) -> dict[str, int]:
    """API timings and Web Vitals in [start, now), gauges each whole minute after `start`'s
    and before `now`, with the incidents `spells` (the demo's own, or the load's for the
    minutes the demo feed adds after it: `demo.feed`)."""
    hours = hour_grid(start, now)
    shape = traffic_shape(hours)
    counts = {"api_timings": _load_api_timings(conn, hours, shape, start, now, spells, rng)}
    counts["web_vitals"] = vitals.load_web_vitals(conn, hours, shape, start, now, spells, rng)
    counts["metric_points"] = gauges.load_gauges(conn, hours, shape, start, now, spells, rng)
    return counts


def _attr(name: str) -> np.ndarray:
    return np.array([getattr(endpoint, name) for endpoint in ENDPOINTS])


def _load_api_timings(
    conn: Connection,
    hours: np.ndarray,
    shape: np.ndarray,
    start: datetime,
    now: datetime,
    spells: dict[str, Spell],
    rng: np.random.Generator,
) -> int:
    times = spread_events(hours, shape * REQUESTS_PER_HOUR, start, now, rng)
    weights = _attr("weight")
    ep = rng.choice(len(ENDPOINTS), size=len(times), p=weights / weights.sum())
    columns = _timing_columns(times, ep, shape_at(times, hours, shape), spells, rng)
    return copy_columns(conn, "api_timings", columns)


def _timing_columns(
    times: np.ndarray,
    ep: np.ndarray,
    load: np.ndarray,
    spells: dict[str, Spell],
    rng: np.random.Generator,
) -> dict[str, Column]:
    n = len(times)
    # Busy hours are a little slower: queueing in the app servers and the database pool.
    latency = rng.lognormal(np.log(_attr("median_ms")[ep]), _attr("sigma")[ep]) * (0.8 + 0.2 * load)
    cached = _attr("cacheable")[ep] & (rng.random(n) < 0.65)
    latency = np.where(cached, latency * 0.3, latency)
    server_p, client_p = _attr("server_errors")[ep], _attr("client_errors")[ep]
    latency, server_p, forced = _apply_spells(times, ep, latency, server_p, spells)
    status, latency = _statuses(ep, latency, server_p, client_p, forced, rng)
    latency = np.clip(latency, 2.0, 30_000.0).round(2)
    db_share, ext_share = _attr("db_share")[ep], _attr("external_share")[ep]
    db_time = latency * db_share * rng.uniform(0.7, 1.1, n)
    ext_time = latency * ext_share * rng.uniform(0.8, 1.0, n)
    return {
        "time": fixed("timestamptz", times),
        "method": coded(ep, [endpoint.method for endpoint in ENDPOINTS]),
        "endpoint": coded(ep, [endpoint.path for endpoint in ENDPOINTS]),
        "status_code": fixed("int2", status),
        "response_time_ms": fixed("float8", latency),
        "user_type": coded(rng.choice(len(_USER_TYPES), size=n, p=_USER_P), _USER_TYPES),
        "database_query_time_ms": fixed(
            "float8", np.minimum(db_time, latency).round(2), null=db_share == 0
        ),
        "external_api_time_ms": fixed("float8", ext_time.round(2), null=ext_share == 0),
        "cache_hit": fixed("bool", cached, null=~_attr("cacheable")[ep]),
        "request_id": text(random_ids(rng, n, "req_", 16)),
    }


def _apply_spells(
    times: np.ndarray,
    ep: np.ndarray,
    latency: np.ndarray,
    server_p: np.ndarray,
    spells: dict[str, Spell],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latency and 5xx share inside the bad spells; `forced` is the status they fail with."""
    path = _attr("path")[ep]
    forced = np.zeros(len(times), dtype=np.int16)
    slow_db = spells["slow_database"].covers(times) & (_attr("db_share")[ep] >= 0.5)
    latency = np.where(slow_db, latency * (1 + 6 * _attr("db_share")[ep]), latency)
    server_p = np.where(slow_db, server_p + 0.03, server_p)
    forced = np.where(slow_db, 504, forced)
    outage = spells["payment_outage"].covers(times)
    charge = outage & (path == "/api/payments/charge")
    confirm = outage & (path == "/api/bookings/{id}/confirm")
    latency = np.where(charge, latency * 5, np.where(confirm, latency * 2.5, latency))
    server_p = np.where(charge, 0.45, np.where(confirm, 0.15, server_p))
    forced = np.where(charge | confirm, 502, forced)
    photos = spells["photo_slowdown"].covers(times) & (path == "/api/photos/upload")
    latency = np.where(photos, latency * 3.5, latency)
    forms = spells["form_failures"].covers(times) & (path == "/api/forms/submit")
    server_p = np.where(forms, 0.12, server_p)
    forced = np.where(forms, 503, forced)
    regressed = spells["search_regression"].covers(times) & (path == "/api/suppliers/search")
    latency = np.where(regressed, latency * 2.4, latency)
    return latency, server_p, forced


def _statuses(
    ep: np.ndarray,
    latency: np.ndarray,
    server_p: np.ndarray,
    client_p: np.ndarray,
    forced: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    n = len(ep)
    draw = rng.random(n)
    ok = np.where(_attr("creates")[ep], 201, 200)
    server = np.where(forced > 0, forced, rng.choice(_SERVER_CODES, size=n, p=_SERVER_P))
    client = rng.choice(_CLIENT_CODES, size=n, p=_CLIENT_P)
    status = np.where(draw < server_p, server, np.where(draw < server_p + client_p, client, ok))
    # Validation and auth failures answer early.
    latency = np.where((status >= 400) & (status < 500), latency * 0.35, latency)
    return status, latency
