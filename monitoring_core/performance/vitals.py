"""Core Web Vitals ratings with the web.dev thresholds (pure)."""

from __future__ import annotations

from monitoring_core.enums import VitalRating

__all__ = ["VITAL_NAMES", "VITAL_THRESHOLDS", "rate_vital"]

# name -> (good when <=, poor when >); milliseconds except CLS (unitless). Source: web.dev
# (LCP, INP, CLS, FCP, TTFB pages); FID was replaced by INP in 2024 and is kept for old clients.
VITAL_THRESHOLDS: dict[str, tuple[float, float]] = {
    "LCP": (2500.0, 4000.0),
    "INP": (200.0, 500.0),
    "CLS": (0.1, 0.25),
    "FCP": (1800.0, 3000.0),
    "TTFB": (800.0, 1800.0),
    "FID": (100.0, 300.0),
}
VITAL_NAMES = frozenset(VITAL_THRESHOLDS)


def rate_vital(name: str, value: float) -> str:
    """`good`, `needs-improvement` or `poor` for a vital's value; KeyError for unknown names."""
    good, poor = VITAL_THRESHOLDS[name]
    if value <= good:
        return VitalRating.GOOD.value
    if value > poor:
        return VitalRating.POOR.value
    return VitalRating.NEEDS_IMPROVEMENT.value
