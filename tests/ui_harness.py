"""Fixtures for page tests with `streamlit.testing.v1.AppTest` (registered in conftest.py).

- `demo_engine`: the session database holding only DEMO_DAYS of demo data up to DEMO_NOW, set
  up once per test module (tests that use it must not also use `engine`, which empties the
  tables). The demo is always loaded at DEMO_NOW, a weekday afternoon, whatever TEST_NOW says:
  what the page tests assert about it (a regression at a busy hour, a week of traffic) is true
  of that instant, and the page sees that instant too.
- `logged_in_app(role)`: an AppTest of app.py on the test database, signed in with that role
  (`None`: signed out), with monitoring_core.clock standing at DEMO_NOW when the test uses
  demo data (DEMO_FIXTURES), else at the test instant (the `now` fixture); run it, then
  `at.switch_page("pages/x.py").run()` for other pages.
- `table_with(at, *columns)`: the one st.dataframe whose columns include those.
- `make_user(conn, role)`: a user with a known password, for sign-in tests.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from sqlalchemy import Connection, Engine, text
from streamlit.testing.v1 import AppTest

from monitoring_core import clock
from monitoring_core.accounts import User, create_user
from monitoring_core.enums import Role
from monitoring_core.schema import metadata

__all__ = [
    "DEMO_DAYS",
    "DEMO_NOW",
    "USER_KEY",
    "demo_engine",
    "logged_in_app",
    "make_user",
    "table_with",
]

APP = str(Path(__file__).resolve().parent.parent / "app.py")
DEMO_DAYS = 8  # a week and a day: enough for the regression baseline (same hour last week)
USER_KEY = "auth_user"  # ui.auth keeps the signed-in user here
PASSWORD = "correct horse battery"
DEMO_NOW = datetime(2026, 6, 10, 13, 0, tzinfo=UTC)  # Wednesday 14:00 in London (BST)
# The demo ends a few seconds before the page's now, as it would a moment after loading.
_DEMO_LOADED_AT = DEMO_NOW - timedelta(seconds=5)


def make_user(conn: Connection, role: Role) -> User:
    """A new user with a unique name and the password PASSWORD."""
    name = f"{role.value}-{secrets.token_hex(3)}"
    return create_user(conn, username=name, password=PASSWORD, role=role)


def table_with(at: AppTest, *columns: str) -> pd.DataFrame:
    """The value of the one st.dataframe on the page whose columns include `columns`."""
    found = [df.value for df in at.dataframe if set(columns) <= set(_columns(df.value))]
    assert len(found) == 1, f"{len(found)} tables have the columns {columns}"
    return found[0]


def _columns(frame: pd.DataFrame) -> Iterable[str]:
    return [str(c) for c in frame.columns]


DEMO_FIXTURES = {"demo_engine", "business_engine"}  # fixtures holding demo data at DEMO_NOW
_SNAPSHOT = "demo_snapshot"  # a schema of the session database holding the loaded demo rows
_snapshot_taken: list[bool] = []


def _truncate_all(conn: Connection) -> None:
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


def _take_snapshot(conn: Connection) -> None:
    conn.execute(text(f"DROP SCHEMA IF EXISTS {_SNAPSHOT} CASCADE"))
    conn.execute(text(f"CREATE SCHEMA {_SNAPSHOT}"))
    for table in metadata.sorted_tables:
        conn.execute(text(f'CREATE TABLE {_SNAPSHOT}."{table.name}" AS TABLE "{table.name}"'))


def _restore_snapshot(conn: Connection) -> None:
    """Put the snapshot back (parents before children) and move id sequences past it."""
    _truncate_all(conn)
    for table in metadata.sorted_tables:
        conn.execute(
            text(
                f'INSERT INTO "{table.name}" OVERRIDING SYSTEM VALUE '  # noqa: S608 - our names
                f'SELECT * FROM {_SNAPSHOT}."{table.name}"'
            )
        )
        if "id" in table.c and table.c.id.autoincrement is True:
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', 'id'), "  # noqa: S608
                    f'coalesce(max(id), 1), max(id) IS NOT NULL) FROM "{table.name}"'
                )
            )


@pytest.fixture(scope="module")
def demo_engine(session_engine: Engine) -> Engine:
    """The session database with only demo data in it, fresh for each test module.

    The first module loads it (all domains, DEMO_DAYS days up to DEMO_NOW, rolled up) and
    keeps a copy in a schema of its own; later modules restore that copy in a few seconds
    instead of loading again (the instant is fixed, so the copy never goes stale).
    """
    from monitoring_core.demo import load_demo_data

    with session_engine.begin() as conn:
        if _snapshot_taken:
            _restore_snapshot(conn)
            return session_engine
        _truncate_all(conn)
    load_demo_data(session_engine, days=DEMO_DAYS, now=_DEMO_LOADED_AT, only_if_empty=False)
    with session_engine.begin() as conn:
        _take_snapshot(conn)
    _snapshot_taken[:] = [True]
    return session_engine


@pytest.fixture
def logged_in_app(
    session_engine: Engine,
    database_url: str,
    test_instant: datetime,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[Role | None], AppTest]]:
    """Factory of AppTests of app.py on the test database, signed in with the given role."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    on_demo = bool(DEMO_FIXTURES & set(request.fixturenames))
    clock.set_now(DEMO_NOW if on_demo else test_instant)
    request.addfinalizer(lambda: clock.set_now(None))
    # The UI caches the engine and query results per process: start every test afresh.
    st.cache_data.clear()
    st.cache_resource.clear()

    def make(role: Role | None = Role.VIEWER) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=60)
        if role is not None:
            with session_engine.begin() as conn:
                at.session_state[USER_KEY] = make_user(conn, role)
        return at

    yield make
    st.cache_data.clear()
    st.cache_resource.clear()
