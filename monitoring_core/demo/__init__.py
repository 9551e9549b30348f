"""The demo data set: a wedding platform's last N days, loaded domain by domain with COPY.

Each domain has a module here with `load(conn, *, days, now, rng) -> dict[str, int]` (rows
written per table). To add a domain, import its module and append it to `LOADERS`; order
matters only where one domain reads another's rows (e.g. incidents after alerts). Every loader
gets its own seeded generator, so adding a domain never changes another domain's rows.
Demo data never creates API keys or anyone who can sign in: the on-call people it adds have
random passwords nobody knows; the supervisor prints the first admin login.
"""

from __future__ import annotations

import logging
import time
import zlib
from datetime import UTC, datetime, timedelta
from types import ModuleType

import numpy as np
from sqlalchemy import Connection, Engine, exists, select

from monitoring_core.demo import (
    alerts,
    business,
    dashboards,
    errors,
    feed,
    health,
    incidents,
    oncall,
    performance,
    telemetry,
)
from monitoring_core.partitions import ensure_partitions
from monitoring_core.schema import api_timing_packs, api_timings

__all__ = ["LOADERS", "SEED", "load_demo_data", "loader_rng"]

log = logging.getLogger(__name__)
SEED = 20260606  # a Saturday in June: peak wedding season

# One line per domain; each module exposes `load(conn, *, days, now, rng) -> dict[str, int]`.
LOADERS: list[ModuleType] = [
    performance,
    health,
    business,
    errors,
    telemetry,  # after errors: traces and logs share the error bursts' trace ids
    alerts,
    oncall,  # after alerts: the demo policies page its rota
    incidents,
    dashboards,
]


def loader_rng(module: ModuleType) -> np.random.Generator:
    """The generator of one domain: seeded from SEED and the module's name, so deterministic."""
    return np.random.default_rng([SEED, zlib.crc32(module.__name__.encode())])


def _has_data(conn: Connection) -> bool:
    if conn.execute(select(exists().select_from(api_timings))).scalar():
        return True
    # API timings older than a day are packed (compaction.pack_api_timings)
    return bool(conn.execute(select(exists().select_from(api_timing_packs))).scalar())


def load_demo_data(engine: Engine, *, days: int, now: datetime, only_if_empty: bool) -> str:
    """Load `days` of demo data ending at `now` (one transaction), roll it up; a summary line."""
    if days < 1:
        raise ValueError("days must be at least 1")
    started = time.perf_counter()
    written: dict[str, int] = {}
    seconds: dict[str, float] = {}
    with engine.begin() as conn:
        if only_if_empty and _has_data(conn):
            return "demo data skipped: the database already holds API timings"
        ensure_partitions(conn, start=now - timedelta(days=days), end=now + timedelta(days=1))
        for module in LOADERS:
            began = time.perf_counter()
            counts = module.load(conn, days=days, now=now, rng=loader_rng(module))
            seconds[module.__name__.rsplit(".", 1)[-1]] = time.perf_counter() - began
            for table, rows in counts.items():
                written[table] = written.get(table, 0) + rows
        feed.mark_loaded(conn, now)  # the worker's demo feed continues from here
    loaded_s = time.perf_counter() - started
    _roll_up(engine)
    rows = ", ".join(f"{table} {count:,}" for table, count in written.items())
    per_domain = ", ".join(f"{name} {s:.1f} s" for name, s in seconds.items())
    return (
        f"demo data: {days} days up to {now:%Y-%m-%d %H:%M} UTC loaded in {loaded_s:.1f} s "
        f"({per_domain}; {rows}); rolled up in {time.perf_counter() - started - loaded_s:.1f} s"
    )


def _roll_up(engine: Engine) -> None:
    from monitoring_core.rollups import run_rollups

    # Rollup watermarks follow ingestion time (the rows' `ingested_at`, the wall clock), not
    # the data's `now`, which tests set in the past. Our load has committed, so no lag is
    # needed; run_rollups still holds back for other writers' open transactions.
    report = run_rollups(engine, datetime.now(UTC), safety_lag=timedelta(0))
    log.info("demo rollups: %s", report)
