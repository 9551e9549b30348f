"""Numbers as people read them on a dashboard."""

from __future__ import annotations

import math

__all__ = ["count", "milliseconds", "number", "percent", "per_minute", "plural"]


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def milliseconds(value: float | None) -> str:
    """`84 ms`, `1.25 s`; an em dash when there is no value."""
    if value is None or _missing(value):
        return "—"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def percent(share: float | None, digits: int = 2) -> str:
    """A share (0..1) as a percentage."""
    if share is None or _missing(share):
        return "—"
    return f"{share * 100:.{digits}f} %"


def per_minute(value: float | None) -> str:
    """Requests per minute."""
    if value is None or _missing(value):
        return "—"
    return f"{value:,.1f}/min" if value < 100 else f"{value:,.0f}/min"


def number(value: float | None) -> str:
    """A measured value with up to four significant digits: `1,234`, `0.25`, `inf`."""
    if value is None or _missing(value):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def count(value: int | float | None) -> str:
    """A count with thousands separators."""
    if value is None or _missing(float(value)):
        return "—"
    return f"{int(value):,}"


def plural(number: int, noun: str) -> str:
    """`1 endpoint`, `3 endpoints`."""
    return f"{number:,} {noun}" + ("" if number == 1 else "s")
