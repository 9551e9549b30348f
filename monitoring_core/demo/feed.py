"""The demo keeps flowing: after `make run` loaded its days of history, a worker job adds the
minutes since, so its charts reach the present and its alert rules keep seeing data (without
it, every demo rule turned to "no data" a quarter of an hour after start, and the last hour's
charts of every page were empty an hour later).

Only in a database the demo loaded: `load_demo_data` writes the settings row FED (when it
loaded, and up to when the data goes); a database without that row is never written to, so
a real installation with `MONITORING_DEMO` left on gets nothing. The feed adds API timings,
Web Vitals and the gauges (`performance.load_window`, the loader's own code, with the load's
incidents: the search regression still going on), errors through the ingest pipeline
(`errors.load_window`) and the vendor-search traces with their logs
(`telemetry.load_window`), at most MAX_GAP back after a pause. Business events end where
they were loaded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects.postgresql import insert

from monitoring_core.demo import errors, performance, telemetry
from monitoring_core.demo.traffic import bad_spells
from monitoring_core.partitions import ensure_partitions
from monitoring_core.schema import settings

__all__ = ["FED", "MAX_GAP", "feed", "mark_loaded"]

FED = "demo_feed"  # settings row: {"loaded_at": ISO time, "fed_until": ISO time}
MAX_GAP = timedelta(hours=6)  # after a pause, the feed starts at most this far back
_US = timedelta(microseconds=1)


def mark_loaded(conn: Connection, now: datetime) -> None:
    """The demo's history ends at `now`: the feed continues from there."""
    value = {"loaded_at": now.isoformat(), "fed_until": now.isoformat()}
    statement = insert(settings).values(key=FED, value=value, updated_at=now, updated_by="demo")
    conn.execute(statement.on_conflict_do_update(index_elements=["key"], set_={"value": value}))


def feed(engine: Engine, now: datetime) -> str:
    """Add the demo's traffic from where it stops to the last whole minute before `now`."""
    from monitoring_core.demo import SEED  # the package imports this module

    with engine.begin() as conn:
        found = conn.execute(
            select(settings.c.value).where(settings.c.key == FED).with_for_update()
        ).scalar()
        if found is None:
            return "not a demo database: nothing added"
        loaded = datetime.fromisoformat(found["loaded_at"])
        since = max(datetime.fromisoformat(found["fed_until"]), now - MAX_GAP)
        until = now.astimezone(UTC).replace(second=0, microsecond=0)
        if until <= since:
            return "the demo's data is up to date"
        ensure_partitions(conn, start=since, end=until + timedelta(days=1))
        # from just before `since`: its minute was written (gauges start after it), its
        # events were not (they stop before it)
        rng = np.random.default_rng([SEED, int(until.timestamp())])
        counts = performance.load_window(conn, since - _US, until, bad_spells(loaded), rng)
        counts.update(errors.load_window(conn, since, until, loaded, rng))
        counts.update(telemetry.load_window(conn, since, until, loaded, rng))
        value = {**found, "fed_until": until.isoformat()}
        conn.execute(settings.update().where(settings.c.key == FED).values(value=value))
    rows = ", ".join(f"{table} {count:,}" for table, count in counts.items())
    return f"demo data added for {since:%H:%M:%S}–{until:%H:%M} UTC: {rows}"
