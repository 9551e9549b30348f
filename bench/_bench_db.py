"""Databases of the benchmarks' own on the embedded server's clusters (`.data/bench` unless
told), so a benchmark never touches the data `make run` shows."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitoring_core.db import embedded_url, make_engine  # noqa: E402
from monitoring_core.migrate import migrate  # noqa: E402

NAME = "bench_health"
TABLES = ("health_checks", "metric_points", "metric_series", "api_keys", "audit_log")


def database_url(name: str, *, fresh: bool = True, cluster: str = "bench") -> str:
    """URL of database `name`: dropped and created anew when `fresh`, else created if missing.
    `name` is one of the benchmarks' constants (it is not a bound parameter in DDL)."""
    server = make_url(embedded_url(ROOT / ".data" / cluster))
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if (
            fresh
            or not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        ):
            conn.execute(f'CREATE DATABASE "{name}"')
    return server.set(database=name).render_as_string(hide_password=False)


def bench_database() -> tuple[str, Engine]:
    """(URL, engine) of a freshly emptied, migrated `bench_health` database (health and
    Pushgateway benchmarks)."""
    url = database_url(NAME, fresh=False)
    engine = make_engine(url)
    migrate(engine, now=datetime.now(UTC), days_back=1)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    return url, engine
