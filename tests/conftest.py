"""Shared fixtures: a real Postgres (embedded, or TEST_DATABASE_URL), one database per session."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from monitoring_core.db import embedded_url, make_engine
from monitoring_core.migrate import migrate
from monitoring_core.schema import metadata

ROOT = Path(__file__).resolve().parent.parent


def _server_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url.replace("postgresql://", "postgresql+psycopg://", 1)
    return embedded_url(ROOT / ".data" / "test")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, migrated database of its own, dropped at the end of the session."""
    server = make_url(_server_url())
    name = f"test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate(engine, now=datetime.now(UTC))
    engine.dispose()
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def session_engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(session_engine: Engine) -> Engine:
    """The session's engine with every table emptied before the test."""
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with session_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    return session_engine


@pytest.fixture
def now() -> datetime:
    """The current time to the second: partitions exist around it (pure tests build their own)."""
    return datetime.now(UTC).replace(microsecond=0)
