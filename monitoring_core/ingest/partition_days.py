"""Which daily partitions exist, cached per process, and on-demand creation of missing ones.

Used by the ingest routes before their write transaction: the creation commits in its own
short transaction (DDL takes a strong lock on the parent table; it must not be held for a
whole ingest), under an advisory lock so that concurrent requests do not race on the name.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

import psycopg
from sqlalchemy import Connection, Engine, text

from monitoring_core.ingest.validate import Limits
from monitoring_core.partitions import ensure_partitions, list_partitions

__all__ = ["FUTURE_LIMIT", "PartitionDays"]

T = TypeVar("T")

FUTURE_LIMIT = timedelta(days=1)
_LOCK_KEY = 7_236_001  # pg_advisory_xact_lock key for partition creation by the API
_REFRESH_S = 60.0


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


class PartitionDays:
    """Per-table sets of days that have a partition, refreshed every minute (retention drops)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._clock = clock
        self._days: dict[str, tuple[set[date], float]] = {}
        self._lock = threading.Lock()

    def _known(self, table: str) -> set[date]:
        entry = self._days.get(table)
        if entry is None or entry[1] <= self._clock():
            with self._engine.connect() as conn:
                days = set(list_partitions(conn, table))
            with self._lock:
                self._days[table] = (days, self._clock() + _REFRESH_S)
            return days
        return entry[0]

    def limits(self, table: str, now: datetime) -> Limits:
        """Accepted timestamps: from the oldest partition (or yesterday) to now + 1 day."""
        known = self._known(table)
        yesterday = now.astimezone(UTC).date() - timedelta(days=1)
        oldest = min(known) if known else yesterday
        return Limits(oldest=_midnight(min(oldest, yesterday)), newest=now + FUTURE_LIMIT)

    def ensure(self, table: str, days: Iterable[date]) -> None:
        """Create the partitions missing for these UTC days (committed right away)."""
        known = self._known(table)
        missing = set(days) - known
        if not missing:
            return
        with self._engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            for day in sorted(missing):
                ensure_partitions(conn, start=_midnight(day), end=_midnight(day), tables=(table,))
        with self._lock:
            self._days[table] = (known | missing, self._days[table][1])

    def forget(self, table: str) -> None:
        """Drop what is known about `table` (it is read again on next use)."""
        with self._lock:
            self._days.pop(table, None)

    def write(self, needs: Mapping[str, Iterable[date]], write: Callable[[Connection], T]) -> T:
        """Ensure the partitions, then run `write` in one transaction (committed on return).

        Retention may drop a partition this cache still lists: Postgres then refuses the row
        ("no partition of relation … found for row"), and the write is retried once after
        the partitions were read again and re-created.
        """
        days = {table: set(needed) for table, needed in needs.items()}
        for table, needed in days.items():
            self.ensure(table, needed)
        try:
            with self._engine.begin() as conn:
                return write(conn)
        except psycopg.errors.CheckViolation as exc:
            if "no partition" not in str(exc):
                raise
        for table, needed in days.items():
            self.forget(table)
            self.ensure(table, needed)
        with self._engine.begin() as conn:
            return write(conn)
