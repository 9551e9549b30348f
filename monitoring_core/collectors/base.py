"""The collector seam: one small protocol, `collect(now) -> list[MetricPoint]`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

__all__ = ["Collector", "MetricPoint"]


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One measurement on its way to `metric_series` + `metric_points`."""

    name: str
    value: float
    time: datetime
    dimensions: Mapping[str, str] = field(default_factory=dict)
    source_system: str | None = None


@runtime_checkable
class Collector(Protocol):
    """Something that measures on demand; the worker schedules it every `interval_seconds`."""

    name: str
    interval_seconds: int

    def collect(self, now: datetime) -> list[MetricPoint]: ...
