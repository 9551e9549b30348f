"""Helpers for the business tests: store hand-made events, read the rollup back."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, select

from monitoring_core.business.ingest import BusinessEvent, copy_events
from monitoring_core.partitions import ensure_partitions
from monitoring_core.schema import business_metrics_daily


def ev(
    when: str | datetime,
    event_type: str,
    user: str | None = None,
    org: str | None = None,
    revenue: float | None = None,
    **props: Any,
) -> BusinessEvent:
    """A BusinessEvent from short arguments; `when` is ISO text with an offset."""
    moment = datetime.fromisoformat(when) if isinstance(when, str) else when
    from decimal import Decimal

    amount = None if revenue is None else Decimal(str(revenue))
    return BusinessEvent(
        moment, event_type, user, org, None, props, amount, "GBP" if amount else None
    )


def store(engine: Engine, events: list[BusinessEvent]) -> None:
    """Create the partitions the events need and COPY them in, committed."""
    with engine.begin() as conn:
        times = [e.time for e in events]
        ensure_partitions(conn, start=min(times), end=max(times), tables=("business_events",))
        copy_events(conn, events)


def daily_values(engine: Engine, name: str) -> dict[date, float]:
    t = business_metrics_daily
    with engine.connect() as conn:
        rows = conn.execute(select(t.c.day, t.c.value).where(t.c.metric_name == name))
        return {day: value for day, value in rows}
