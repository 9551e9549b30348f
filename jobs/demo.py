"""Worker job: the demo's traffic keeps flowing in a database the demo loaded
(`monitoring_core.demo.feed`; anywhere else it writes nothing)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from monitoring_core.demo.feed import feed


def demo_feed(engine: Engine, now: datetime) -> str:
    return feed(engine, now)
