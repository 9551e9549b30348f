"""The collector and health-check jobs: thin adapters, `func(engine, now) -> summary`.

Imports happen inside the functions so `python -m jobs.worker --list` stays fast. The system
collector keeps its CPU baseline and network counters between runs and the database collector
its block counters, so one instance of each lives per worker process (created on the first run,
never at import, and only once: a second instance would be a second baseline).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine

__all__ = ["collect_configured", "collect_database", "collect_system", "health_checks"]

_state: dict[str, Any] = {}


def collect_system(engine: Engine, now: datetime) -> str:
    from monitoring_core.collectors.runner import run_collector
    from monitoring_core.collectors.system import SystemCollector

    collector = _state.get("system")
    if collector is None:  # not setdefault(…, SystemCollector()): that builds one every run
        collector = _state["system"] = SystemCollector()
    return run_collector(engine, collector, now).summary()


def collect_database(engine: Engine, now: datetime) -> str:
    from monitoring_core.collectors.database import DatabaseCollector
    from monitoring_core.collectors.runner import run_collector

    collector = _state.get("database")
    if collector is None or collector.engine is not engine:
        collector = _state["database"] = DatabaseCollector(engine)
    return run_collector(engine, collector, now).summary()


def collect_configured(engine: Engine, now: datetime) -> str:
    from monitoring_core.collectors.runner import run_configured_collectors

    return run_configured_collectors(engine, now).summary()


def health_checks(engine: Engine, now: datetime) -> str:
    from monitoring_core.health.runner import run_due_checks

    return run_due_checks(engine, now).summary()
