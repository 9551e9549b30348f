"""Demo Web Vitals: every page view reports LCP, FCP, TTFB and CLS, and INP when used."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import Connection

from monitoring_core.demo.copy import Column, coded, copy_columns, fixed, random_ids, text
from monitoring_core.demo.traffic import Spell, spread_events
from monitoring_core.performance.vitals import VITAL_THRESHOLDS

__all__ = ["DEVICES", "PAGES", "PAGE_VIEWS_PER_HOUR", "Page", "load_web_vitals"]

PAGE_VIEWS_PER_HOUR = 45  # sampled page views per hour at an average load


@dataclass(frozen=True)
class Page:
    route: str
    weight: float
    lcp_ms: float  # desktop median
    ttfb_ms: float
    cls: float
    inp_ms: float


PAGES: tuple[Page, ...] = (
    Page("/", 14, 1500, 250, 0.03, 110),
    Page("/suppliers", 18, 2000, 320, 0.07, 140),
    Page("/suppliers/[slug]", 16, 2200, 300, 0.06, 120),
    Page("/planning/timeline", 10, 1700, 380, 0.04, 160),
    Page("/planning/guests", 8, 1600, 360, 0.03, 190),
    Page("/planning/budget", 6, 1500, 340, 0.03, 150),
    Page("/checklist", 7, 1300, 280, 0.02, 100),
    Page("/photos", 9, 2700, 300, 0.11, 170),
    Page("/checkout", 3, 1600, 420, 0.04, 210),
    Page("/supplier/dashboard", 9, 2300, 600, 0.05, 230),
)
# Phones have slower CPUs and networks: everything but TTFB suffers most there.
DEVICES = ("mobile", "desktop", "tablet")
_DEVICE_P = np.array([0.58, 0.36, 0.06])
_DEVICE_SLOWDOWN = np.array([1.45, 1.0, 1.2])
_DEVICE_SHIFT = np.array([1.5, 1.0, 1.2])  # layout shift (smaller viewports, late ads)
_CONNECTIONS = ("4g", "3g", "wifi", "ethernet")
_CONNECTION_P = {
    0: [0.62, 0.10, 0.28, 0.0],
    1: [0.0, 0.0, 0.78, 0.22],
    2: [0.10, 0.0, 0.90, 0.0],
}
_NETWORK_SLOWDOWN = np.array([1.25, 2.0, 1.0, 0.9])
_BROWSERS = ("Chrome", "Safari", "Firefox", "Edge", "Samsung Internet")
_BROWSER_P = np.array([0.48, 0.32, 0.06, 0.08, 0.06])
_COUNTRIES = ("GB", "IE", "US", "ES", "FR", "DE")
_COUNTRY_P = np.array([0.70, 0.08, 0.07, 0.05, 0.05, 0.05])
_NAVIGATION = ("navigate", "reload", "back-forward")
_NAVIGATION_P = np.array([0.85, 0.05, 0.10])
# The five vitals browsers report today (FID was replaced by INP in 2024).
_NAMES = ("LCP", "INP", "CLS", "FCP", "TTFB")


def load_web_vitals(
    conn: Connection,
    hours: np.ndarray,
    shape: np.ndarray,
    start: datetime,
    now: datetime,
    spells: dict[str, Spell],
    rng: np.random.Generator,
) -> int:
    """COPY the vitals of page views spread over the hours; rows written."""
    times = spread_events(hours, shape * PAGE_VIEWS_PER_HOUR, start, now, rng)
    views = _page_views(times, spells, rng)
    return copy_columns(conn, "web_vitals", _rows(views, rng))


def _attr(name: str) -> np.ndarray:
    return np.array([getattr(page, name) for page in PAGES])


def _page_views(
    times: np.ndarray, spells: dict[str, Spell], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    n = len(times)
    weights = _attr("weight")
    page = rng.choice(len(PAGES), size=n, p=weights / weights.sum())
    device = rng.choice(len(DEVICES), size=n, p=_DEVICE_P)
    connection = np.empty(n, dtype=np.int64)
    for index, shares in _CONNECTION_P.items():
        mask = device == index
        connection[mask] = rng.choice(len(_CONNECTIONS), size=int(mask.sum()), p=shares)
    network = _NETWORK_SLOWDOWN[connection]
    slow = _DEVICE_SLOWDOWN[device]
    # The slow database hour shows up in the browser as a slow first byte.
    server = np.where(spells["slow_database"].covers(times), 3.5, 1.0)
    ttfb = rng.lognormal(np.log(_attr("ttfb_ms")[page] * network * server), 0.45)
    fcp = ttfb + rng.lognormal(np.log(_attr("lcp_ms")[page] * 0.35 * slow * network), 0.35)
    lcp = fcp + rng.lognormal(np.log(_attr("lcp_ms")[page] * 0.4 * slow), 0.45)
    cls = np.minimum(rng.lognormal(np.log(_attr("cls")[page] * _DEVICE_SHIFT[device]), 0.8), 1.5)
    inp = rng.lognormal(np.log(_attr("inp_ms")[page] * 0.8 * slow), 0.5)
    return {
        "time": times,
        "page": page,
        "device": device,
        "connection": connection,
        "LCP": lcp.round(1),
        "FCP": fcp.round(1),
        "TTFB": ttfb.round(1),
        "CLS": cls.round(4),
        "INP": np.where(rng.random(n) < 0.75, inp.round(1), np.nan),
    }


_RATINGS = ("good", "needs-improvement", "poor")


def _rate(name: str, values: np.ndarray) -> np.ndarray:
    """Codes into _RATINGS by the web.dev thresholds."""
    good, poor = VITAL_THRESHOLDS[name]
    return np.where(values <= good, 0, np.where(values <= poor, 1, 2))


def _rows(views: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, Column]:
    n = len(views["time"])
    per_view = {
        "time": views["time"],
        "page_route": views["page"],
        "device_type": views["device"],
        "connection_type": views["connection"],
        "browser": rng.choice(len(_BROWSERS), size=n, p=_BROWSER_P),
        "country_code": rng.choice(len(_COUNTRIES), size=n, p=_COUNTRY_P),
        "session_id": random_ids(rng, n, "s_", 12),
        "navigation_type": rng.choice(len(_NAVIGATION), size=n, p=_NAVIGATION_P),
    }
    parts: list[dict[str, np.ndarray]] = []
    for code, name in enumerate(_NAMES):
        present = ~np.isnan(views[name])
        values = views[name][present]
        part = {key: column[present] for key, column in per_view.items()}
        part.update(name=np.full(len(values), code), value=values, rating=_rate(name, values))
        parts.append(part)
    merged = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    order = np.argsort(merged["time"], kind="stable")
    m = {key: column[order] for key, column in merged.items()}
    return {
        "time": fixed("timestamptz", m["time"]),
        "name": coded(m["name"], _NAMES),
        "value": fixed("float8", m["value"]),
        "rating": coded(m["rating"], _RATINGS),
        "page_route": coded(m["page_route"], [page.route for page in PAGES]),
        "device_type": coded(m["device_type"], DEVICES),
        "connection_type": coded(m["connection_type"], _CONNECTIONS),
        "browser": coded(m["browser"], _BROWSERS),
        "country_code": coded(m["country_code"], _COUNTRIES),
        "session_id": text(m["session_id"]),
        "navigation_type": coded(m["navigation_type"], _NAVIGATION),
    }
