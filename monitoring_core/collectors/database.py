"""The database's own health from `pg_stat_*` and `pg_locks`: connections, cache hit ratio,
slow queries, locks (held, and sessions waiting for one), deadlocks, sizes of the largest
tables and replication lag where there is replication.

The cache hit ratio is over the time since the previous run of the same collector (so one
instance lives per worker process, see jobs/collectors.py); the first run has none."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection, Engine, text

from monitoring_core.ingest.points import MetricPoint

__all__ = ["DatabaseCollector", "cache_hit_ratio"]

SOURCE_SYSTEM = "postgres"
_DATABASE = text(
    """
    SELECT current_database() AS db, numbackends, blks_hit, blks_read, deadlocks,
           xact_commit, xact_rollback, pg_database_size(current_database()) AS size
    FROM pg_stat_database WHERE datname = current_database()
    """
)
_ACTIVITY = text(
    """
    SELECT count(*) AS total,
           count(*) FILTER (WHERE state = 'active') AS active,
           count(*) FILTER (WHERE state = 'idle in transaction') AS idle_in_transaction,
           count(*) FILTER (WHERE state = 'active' AND now() - query_start > make_interval(secs => :slow))
               AS slow,
           coalesce(max(extract(epoch FROM now() - query_start))
                    FILTER (WHERE state = 'active' AND pid <> pg_backend_pid()), 0) AS longest
    FROM pg_stat_activity WHERE datname = current_database()
    """
)
# Locks held by this database's sessions, and sessions waiting for one (a row lock waits on
# a transaction id, a lock with no database of its own: hence by session, not by database).
_LOCKS = text(
    """
    SELECT count(*) FILTER (WHERE l.granted) AS held,
           count(DISTINCT l.pid) FILTER (WHERE NOT l.granted) AS waiting
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE a.datname = current_database()
    """
)
_SETTINGS = text("SELECT current_setting('max_connections')::int AS max_connections")
_TABLES = text(
    """
    SELECT relname, pg_total_relation_size(relid) AS size, n_live_tup, n_dead_tup
    FROM pg_stat_user_tables ORDER BY pg_total_relation_size(relid) DESC LIMIT :top
    """
)
_REPLICATION = text(
    """
    SELECT application_name, coalesce(extract(epoch FROM replay_lag), 0) AS lag
    FROM pg_stat_replication
    """
)
_STANDBY = text(
    """
    SELECT pg_is_in_recovery() AS standby,
           extract(epoch FROM now() - pg_last_xact_replay_timestamp()) AS lag
    """
)


def cache_hit_ratio(before: tuple[int, int] | None, after: tuple[int, int]) -> float | None:
    """Share of block reads served from shared buffers between two (hit, read) samples.

    None without a previous sample, when nothing was read in between, or after a statistics
    reset (counters went back). The lifetime ratio is `db_cache_hit_ratio_since_reset`: on a
    database up for months it hardly moves, so a cold cache right now would not show in it.
    """
    if before is None:
        return None
    hits, reads = after[0] - before[0], after[1] - before[1]
    if hits < 0 or reads < 0 or hits + reads == 0:
        return None
    return hits / (hits + reads)


class _PointFactory(Protocol):
    def __call__(self, name: str, value: float, **extra: str) -> MetricPoint: ...


class DatabaseCollector:
    name = "database"

    def __init__(
        self,
        engine: Engine,
        *,
        interval_seconds: int = 60,
        slow_query_seconds: float = 5.0,
        top_tables: int = 10,
        lock_timeout_s: float = 5.0,
    ) -> None:
        self.interval_seconds = interval_seconds
        self.engine = engine
        self._lock_timeout_ms = max(1, round(lock_timeout_s * 1000))
        self._slow = slow_query_seconds
        self._top = top_tables
        self._last_blocks: tuple[int, int] | None = None  # (hit, read) at the previous run

    def collect(self, now: datetime) -> list[MetricPoint]:
        with self.engine.connect() as conn:
            # Table sizes need a share lock: a table held exclusively (VACUUM FULL, a migration)
            # must fail this run quickly (collector_up 0), never hang the worker with it.
            conn.execute(
                text("SELECT set_config('lock_timeout', :ms, true)"),
                {"ms": f"{self._lock_timeout_ms}ms"},
            )
            return self.collect_on(conn, now)

    def collect_on(self, conn: Connection, now: datetime) -> list[MetricPoint]:
        db = conn.execute(_DATABASE).mappings().one()
        dims = {"database": db["db"]}

        def point(name: str, value: float, **extra: str) -> MetricPoint:
            return MetricPoint(name, float(value), now, {**dims, **extra}, SOURCE_SYSTEM)

        activity = conn.execute(_ACTIVITY, {"slow": self._slow}).mappings().one()
        max_connections = conn.execute(_SETTINGS).scalar_one()
        locks = conn.execute(_LOCKS).mappings().one()
        blocks = db["blks_hit"] + db["blks_read"]
        points = [
            point("db_connections", activity["total"]),
            point("db_connections_active", activity["active"]),
            point("db_connections_idle_in_transaction", activity["idle_in_transaction"]),
            point("db_connections_used_percent", 100.0 * activity["total"] / max_connections),
            point("db_slow_queries", activity["slow"]),
            point("db_longest_query_seconds", activity["longest"]),
            point("db_locks", locks["held"]),
            point("db_sessions_waiting_for_lock", locks["waiting"]),
            point("db_deadlocks_total", db["deadlocks"]),
            point("db_size_bytes", db["size"]),
        ]
        if blocks:
            points.append(point("db_cache_hit_ratio_since_reset", db["blks_hit"] / blocks))
        counters, self._last_blocks = self._last_blocks, (db["blks_hit"], db["blks_read"])
        ratio = cache_hit_ratio(counters, self._last_blocks)
        if ratio is not None:
            points.append(point("db_cache_hit_ratio", ratio))
        for row in conn.execute(_TABLES, {"top": self._top}).mappings():
            points.append(point("db_table_size_bytes", row["size"], table=row["relname"]))
            points.append(point("db_table_dead_rows", row["n_dead_tup"], table=row["relname"]))
        points += self._replication(conn, point)
        return points

    def _replication(self, conn: Connection, point: _PointFactory) -> list[MetricPoint]:
        points = [
            point(
                "db_replication_lag_seconds",
                row["lag"],
                replica=row["application_name"] or "replica",
            )
            for row in conn.execute(_REPLICATION).mappings()
        ]
        standby = conn.execute(_STANDBY).mappings().one()
        if standby["standby"] and standby["lag"] is not None:
            points.append(point("db_replication_lag_seconds", standby["lag"], replica="self"))
        return points
