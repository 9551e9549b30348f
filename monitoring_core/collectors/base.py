"""The collector seam: one small protocol, `collect(now) -> list[MetricPoint]`."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from monitoring_core.ingest.points import MetricPoint

__all__ = ["Collector"]


@runtime_checkable
class Collector(Protocol):
    """Something that measures on demand; the worker schedules it every `interval_seconds`."""

    name: str
    interval_seconds: int

    def collect(self, now: datetime) -> list[MetricPoint]: ...
