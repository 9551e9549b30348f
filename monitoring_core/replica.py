"""Reads that may go to a Postgres streaming replica, with a fallback to the primary.

`DATABASE_READ_URL` names a hot standby (built with `pg_basebackup -R`, or any streaming
replica). Page reads and read-API queries go through `ReadRouter.connect()`; writes, alert
evaluation and everything the worker does stay on the primary engine.

The router sends a read to the replica only while it is *usable*: it answered the last check,
and it is no more than `max_lag_s` behind. The lag is measured the way that stays right when
the primary is idle: the replica's replayed WAL position is compared with the primary's
current one; equal means no lag at all, otherwise the lag is the time since the replica
replayed its last transaction (`pg_last_xact_replay_timestamp`), which is at least as old as
the oldest change it has not applied. A check runs at most every `recheck_s` seconds (so
reads cost no extra round trips); a replica that refuses a connection is marked down at once
and the read is retried on the primary, so a page never fails because the replica did.

Bounded staleness: a read may miss writes made up to `max_lag_s` (default 30 s) ago; in
practice a streaming replica on the same network is milliseconds behind. A page that must see
its own write (an action followed by its result) reads the primary.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from monitoring_core.config import Settings
from monitoring_core.db import make_engine

__all__ = ["ReadRouter", "ReplicaStatus", "read_router"]

log = logging.getLogger(__name__)

_PRIMARY_LSN = text("SELECT pg_current_wal_lsn()::text")
_REPLICA_STATE = text(
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,"
    " pg_wal_lsn_diff(CAST(:primary AS pg_lsn), pg_last_wal_replay_lsn()),"
    " EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp()))"
)


@dataclass(frozen=True)
class ReplicaStatus:
    """What the last check found. `lag_s`/`lag_bytes` are None when unknown."""

    configured: bool
    usable: bool
    reason: str
    lag_s: float | None = None
    lag_bytes: float | None = None
    checked_monotonic: float | None = None


class ReadRouter:
    """Chooses the replica or the primary for each read (thread-safe; one per process)."""

    def __init__(
        self,
        primary: Engine,
        replica: Engine | None,
        *,
        max_lag_s: float = 30.0,
        recheck_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.replica = replica
        self.max_lag_s = max_lag_s
        self.recheck_s = recheck_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._status = ReplicaStatus(
            configured=replica is not None,
            usable=False,
            reason="not checked yet" if replica is not None else "no DATABASE_READ_URL",
        )

    def status(self, *, refresh: bool = False) -> ReplicaStatus:
        """The replica's state, re-checked when older than `recheck_s` (or when asked)."""
        if self.replica is None:
            return self._status
        with self._lock:
            checked = self._status.checked_monotonic
            stale = checked is None or self._monotonic() - checked >= self.recheck_s
            if refresh or stale:
                self._status = self._check()
            return self._status

    def engine(self) -> Engine:
        """The engine the next read should use."""
        return self.replica if self.replica is not None and self.status().usable else self.primary

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A read connection: the replica when usable, else (or if it fails to open) the
        primary. Only opening the connection falls back; a query error inside is the caller's."""
        engine = self.engine()
        if engine is not self.primary:
            try:
                conn = engine.connect()
            except DBAPIError as exc:
                self._mark_down(f"connection refused: {type(exc.orig).__name__}")
                engine = self.primary
            else:
                with conn:
                    yield conn
                return
        with engine.connect() as conn:
            yield conn

    def _mark_down(self, reason: str) -> None:
        log.warning("read replica unusable, reading from the primary: %s", reason)
        with self._lock:
            self._status = ReplicaStatus(True, False, reason, None, None, self._monotonic())

    def _check(self) -> ReplicaStatus:
        assert self.replica is not None
        now = self._monotonic()
        try:
            with self.primary.connect() as conn:
                primary_lsn = conn.execute(_PRIMARY_LSN).scalar_one()
        except DBAPIError as exc:
            # The primary is down: the replica's lag cannot be known, and reads from it are
            # still better than none (the primary's own reads fail anyway).
            reason = f"primary unreachable ({type(exc.orig).__name__}), lag unknown"
            return ReplicaStatus(True, True, reason, None, None, now)
        try:
            with self.replica.connect() as conn:
                row = conn.execute(_REPLICA_STATE, {"primary": primary_lsn}).one()
        except DBAPIError as exc:
            return ReplicaStatus(
                True, False, f"unreachable ({type(exc.orig).__name__})", None, None, now
            )
        in_recovery, _replay_lsn, behind, since_replay = row
        if not in_recovery:
            return ReplicaStatus(
                True, False, "not a standby (pg_is_in_recovery() is false)", None, None, now
            )
        lag_bytes = float(behind) if behind is not None else None
        lag_s: float | None = None
        if lag_bytes is not None and lag_bytes <= 0:
            lag_s = 0.0
        else:
            lag_s = float(since_replay) if since_replay is not None else None
        if lag_s is None:
            return ReplicaStatus(
                True, False, "lag unknown (nothing replayed yet)", None, lag_bytes, now
            )
        if lag_s > self.max_lag_s:
            reason = f"lagging {lag_s:.1f} s (more than {self.max_lag_s:g} s)"
            return ReplicaStatus(True, False, reason, lag_s, lag_bytes, now)
        return ReplicaStatus(True, True, "streaming", lag_s, lag_bytes, now)


def read_router(settings: Settings, primary: Engine) -> ReadRouter:
    """The process's router: the replica from DATABASE_READ_URL (if set) beside `primary`."""
    replica = None
    if settings.database_read_url:
        replica = make_engine(
            settings.database_read_url,
            connect_args={"connect_timeout": 2, "application_name": "monitoring-read"},
        )
    return ReadRouter(primary, replica, max_lag_s=settings.replica_max_lag_s)
