"""Engine construction and the embedded Postgres shared by the API, worker and UI."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from monitoring_core.config import Settings

__all__ = [
    "DatabaseUnavailable",
    "database_url",
    "embedded_url",
    "engine_from_settings",
    "make_engine",
    "ping",
]

log = logging.getLogger(__name__)
EMBEDDED_DB_NAME = "monitoring"
_servers: dict[Path, Any] = {}


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached."""


def embedded_url(data_dir: Path, *, keep_running: bool = False) -> str:
    """Start (or attach to) the embedded Postgres under data_dir and return its URL.

    The first process starts the server; others attach to the running one (pgserver keeps a
    list of attached pids and stops the server when the last one exits, unless keep_running).
    As root, pgserver runs Postgres as a dedicated system user, since Postgres refuses root.
    """
    pgdata = (data_dir / "pg").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    if pgdata not in _servers:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import pgserver

            _servers[pgdata] = pgserver.get_server(
                pgdata, cleanup_mode=None if keep_running else "stop"
            )
    server = _servers[pgdata]
    _ensure_database(server.get_uri())
    url = make_url(server.get_uri()).set(drivername="postgresql+psycopg", database=EMBEDDED_DB_NAME)
    return url.render_as_string(hide_password=False)


def _ensure_database(admin_uri: str) -> None:
    import psycopg

    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DB_NAME,)
        ).fetchone()
        if not exists:
            try:
                conn.execute(f'CREATE DATABASE "{EMBEDDED_DB_NAME}"')
            except psycopg.errors.DuplicateDatabase:
                pass  # another process created it a moment ago


def database_url(settings: Settings, *, keep_running: bool = False) -> str:
    """DATABASE_URL when set, else the embedded server's URL (starting it if needed)."""
    if settings.database_url:
        return settings.database_url
    return embedded_url(settings.data_dir, keep_running=keep_running)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with pre-ping so a restarted database is reconnected transparently."""
    options: dict[str, Any] = {
        "pool_pre_ping": True,
        "pool_size": 5,
        "max_overflow": 10,
        "connect_args": {"connect_timeout": 5, "application_name": "monitoring"},
    }
    options.update(kwargs)
    return create_engine(url, **options)


def ping(engine: Engine) -> bool:
    """True when the database answers SELECT 1."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        log.warning("database ping failed", exc_info=True)
        return False


def engine_from_settings(
    settings: Settings, *, keep_running: bool = False, **kwargs: Any
) -> Engine:
    """The process entry points' way to get an engine (embedded server started if needed)."""
    return make_engine(database_url(settings, keep_running=keep_running), **kwargs)
