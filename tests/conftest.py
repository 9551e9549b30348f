"""Shared fixtures: a real Postgres (embedded, or TEST_DATABASE_URL), one database per session.

The test instant: tests read "now" from the `now` fixture, and pages from monitoring_core.clock
set to it (by `logged_in_app`; `clock.frozen(dt)` elsewhere), never from the real clock. It is
TEST_INSTANT, a Wednesday afternoon in London, unless TEST_NOW=<ISO 8601 with offset> names
another, in the past (Postgres stamps some rows with its own now()); tests/clock_proof.py runs
the `clock` tests at the awkward instants. Tests that talk to a real-clock process (the API
server's ingest routes, a worker subprocess) use the `real_now` fixture instead.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from monitoring_core.db import make_engine
from monitoring_core.migrate import migrate
from monitoring_core.schema import metadata
from tests.db_templates import admin_url, copy_base, drop_database, url_for
from tests.ui_harness import (  # noqa: F401 - fixtures for page tests
    DEMO_FIXTURES,
    DEMO_NOW,
    demo_engine,
    logged_in_app,
)

ROOT = Path(__file__).resolve().parent.parent
TEST_INSTANT = DEMO_NOW  # Wednesday 14:00 in London (BST): the demo's instant too


def _test_instant() -> datetime:
    """TEST_NOW if set (aware ISO 8601, whole seconds), else TEST_INSTANT."""
    raw = os.environ.get("TEST_NOW")
    if not raw:
        return TEST_INSTANT
    moment = datetime.fromisoformat(raw)
    if moment.utcoffset() is None:
        raise pytest.UsageError(f"TEST_NOW needs an offset, e.g. {raw}+00:00")
    return moment.astimezone(UTC).replace(microsecond=0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under TEST_NOW, leave out tests that cannot see it: on demo data the pages' clock stands
    at DEMO_NOW and the database is a copy of the demo template, so unless a test also asks
    for `now` it runs exactly as in the default session, which runs it."""
    if not os.environ.get("TEST_NOW"):
        return
    blind = [
        item
        for item in items
        if DEMO_FIXTURES & set(getattr(item, "fixturenames", ()))
        and "now" not in getattr(item, "fixturenames", ())
    ]
    if blind:
        config.hook.pytest_deselected(items=blind)
        items[:] = [item for item in items if item not in blind]


def pytest_report_header() -> str:
    return f"test instant: {_test_instant().isoformat()} (TEST_NOW to change it)"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, migrated database of its own, dropped at the end of the session."""
    name = f"test_{os.getpid()}_{secrets.token_hex(3)}"
    copy_base(name)  # migrated, partitions around the real clock's today
    url = url_for(name)
    engine = make_engine(url)
    migrate(engine, now=_test_instant())
    migrate(engine, now=datetime.now(UTC))  # partitions for the tests on the real clock too
    engine.dispose()
    yield url
    drop_database(admin_url(), name)


@pytest.fixture(scope="session")
def session_engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(session_engine: Engine) -> Engine:
    """The session's engine with every table emptied before the test."""
    # TRUNCATE of every table and partition costs ~1 s on a busy machine; truncating only the
    # tables holding rows (found in ~10 ms) and restarting every table-owned sequence (used
    # by rolled-back inserts too) leaves the same state.
    exists = " UNION ALL ".join(
        f"SELECT '{t.name}' WHERE EXISTS (SELECT 1 FROM \"{t.name}\")"  # noqa: S608 (our tables)
        for t in metadata.sorted_tables
    )
    with session_engine.begin() as conn:
        filled = conn.execute(text(exists)).scalars().all()
        if filled:
            names = ", ".join(f'"{name}"' for name in filled)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        conn.execute(
            text(
                "SELECT setval(s.oid::regclass, 1, false) FROM pg_class s "
                "JOIN pg_depend d ON d.objid = s.oid AND d.deptype IN ('a', 'i') "
                "WHERE s.relkind = 'S'"
            )
        )
    return session_engine


@pytest.fixture(scope="session")
def test_instant() -> datetime:
    """The session's "now": TEST_INSTANT, or TEST_NOW when set."""
    return _test_instant()


@pytest.fixture
def now(test_instant: datetime) -> datetime:
    """The test instant: partitions exist around it (pure tests build their own)."""
    return test_instant


@pytest.fixture
def real_now() -> datetime:
    """The real time to the second, for tests of processes on the real clock (API ingest, worker)."""
    return datetime.now(UTC).replace(microsecond=0)


# ---------------------------------------------------------------- API server
@pytest.fixture(scope="session")
def _api_app(database_url: str, session_engine: Engine) -> Iterator[tuple[Any, str]]:
    """One real uvicorn server per session, on a free port, in a background thread."""
    import dataclasses

    from monitoring_core.api.app import create_app
    from monitoring_core.config import load_settings
    from tests.serving import running_server

    settings = dataclasses.replace(load_settings({}), database_url=database_url)
    app = create_app(settings, session_engine)
    with running_server(app) as url:
        # The API's public URL (ping URLs, acknowledge links) is this server, as
        # MONITORING_API_PUBLIC_URL would say in production.
        app.state.settings = dataclasses.replace(settings, api_public_url=url)
        yield app, url  # running_server stops its usage sync: the database is dropped next


@pytest.fixture
def api_app(engine: Engine, _api_app: tuple[Any, str]) -> Iterator[Any]:
    """The running server's FastAPI app, its caches reset (tables were just truncated)."""
    from monitoring_core.api.app import reset_app_state

    reset_app_state(_api_app[0])
    yield _api_app[0]
    # Its per-key usage sync runs a transaction every second: left running into the next
    # tests, it holds their rollups below its start (rollups._safe_upper) and made
    # test_rollups miss its hour once (ci12).
    _api_app[0].state.usage_sync.stop()


@pytest.fixture
def api_server(api_app: Any, _api_app: tuple[Any, str]) -> str:
    """Base URL of a real API server on the test database (empty tables, fresh caches)."""
    return _api_app[1]


@pytest.fixture
def ingest_key(engine: Engine) -> str:
    from monitoring_core.accounts import create_api_key
    from monitoring_core.enums import ApiScope

    with engine.begin() as conn:
        return create_api_key(conn, name="test-ingest", scope=ApiScope.INGEST)


@pytest.fixture
def admin_key(engine: Engine) -> str:
    from monitoring_core.accounts import create_api_key
    from monitoring_core.enums import ApiScope

    with engine.begin() as conn:
        return create_api_key(conn, name="test-admin", scope=ApiScope.ADMIN)
