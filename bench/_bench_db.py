"""A database of its own for the health / Pushgateway benchmarks (the embedded server's
`.data/bench` cluster, database `bench_health`), migrated and emptied."""

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


def bench_database() -> tuple[str, Engine]:
    """(URL, engine) of a freshly emptied, migrated `bench_health` database."""
    server = make_url(embedded_url(ROOT / ".data" / "bench"))
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (NAME,)).fetchone():
            conn.execute(f'CREATE DATABASE "{NAME}"')
    url = server.set(database=NAME).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate(engine, now=datetime.now(UTC), days_back=1)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    return url, engine
