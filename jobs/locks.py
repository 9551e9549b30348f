"""Leader election for singleton jobs with session-level Postgres advisory locks.

Why session locks on one dedicated connection (and not `pg_try_advisory_xact_lock` per run):
the worker that wins a job's lock keeps it for as long as it lives, so one worker stays the
leader for that job and runs follow one rhythm instead of two workers taking turns. Postgres
releases session locks when the holding backend ends, so when the leader dies (crash, kill -9,
lost network) the next `pg_try_advisory_lock` of another worker succeeds: re-election needs no
timeouts or lease table. Before each run the leader checks its lock connection still answers;
when it does not (database restart, terminated backend) every lock is considered lost, the
connection is replaced, and the locks are competed for again.
"""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

__all__ = ["SingletonLocks", "lock_key"]

log = logging.getLogger(__name__)


def lock_key(job_name: str) -> int:
    """A stable signed 64-bit advisory lock key for a job name."""
    digest = hashlib.sha256(f"monitoring-job:{job_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class SingletonLocks:
    """The advisory locks this worker holds, on one autocommit connection of its own."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Connection | None = None
        self._held: set[str] = set()

    @property
    def held(self) -> frozenset[str]:
        return frozenset(self._held)

    def acquire(self, job_name: str) -> bool:
        """True when this worker is (or just became) the leader for `job_name`."""
        for attempt in (1, 2):
            try:
                return self._try(job_name)
            except DBAPIError:
                log.warning("lock connection lost (attempt %d); locks released", attempt)
                self._reset()
        return False

    def _try(self, job_name: str) -> bool:
        conn = self._connection()
        if job_name in self._held:
            conn.execute(text("SELECT 1"))  # the backend lives, so the session lock is ours
            return True
        got = conn.execute(
            text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key(job_name)}
        ).scalar()
        if got:
            self._held.add(job_name)
            log.info("became leader for job %s", job_name)
        return bool(got)

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    def _reset(self) -> None:
        self._held.clear()
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except DBAPIError:
                pass
            self._conn = None

    def release_all(self) -> None:
        """Give up every lock (clean shutdown): another worker can take over at once."""
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock_all()"))
                self._conn.close()
            except DBAPIError:
                log.warning("could not release locks cleanly; the server drops them anyway")
            self._conn = None
        self._held.clear()
