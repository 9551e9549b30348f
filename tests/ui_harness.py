"""Fixtures for page tests with `streamlit.testing.v1.AppTest` (registered in conftest.py).

- `demo_engine`: the session database emptied and loaded with DEMO_DAYS of demo data, once per
  test module (tests that use it must not also use `engine`, which empties the tables).
- `logged_in_app(role)`: an AppTest of app.py on the test database, signed in with that role
  (`None`: signed out); run it, then `at.switch_page("pages/x.py").run()` for other pages.
- `make_user(conn, role)`: a user with a known password, for sign-in tests.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import streamlit as st
from sqlalchemy import Connection, Engine, text
from streamlit.testing.v1 import AppTest

from monitoring_core.accounts import User, create_user
from monitoring_core.enums import Role
from monitoring_core.schema import metadata

__all__ = ["DEMO_DAYS", "USER_KEY", "demo_engine", "logged_in_app", "make_user"]

APP = str(Path(__file__).resolve().parent.parent / "app.py")
DEMO_DAYS = 8  # a week and a day: enough for the regression baseline (same hour last week)
USER_KEY = "auth_user"  # ui.auth keeps the signed-in user here
PASSWORD = "correct horse battery"


def make_user(conn: Connection, role: Role) -> User:
    """A new user with a unique name and the password PASSWORD."""
    name = f"{role.value}-{secrets.token_hex(3)}"
    return create_user(conn, username=name, password=PASSWORD, role=role)


@pytest.fixture(scope="module")
def demo_engine(session_engine: Engine) -> Engine:
    """The session database with only demo data in it (loaded once for the module)."""
    from monitoring_core.demo import load_demo_data

    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with session_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    load_demo_data(session_engine, days=DEMO_DAYS, now=now, only_if_empty=False)
    return session_engine


@pytest.fixture
def logged_in_app(
    session_engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[Role | None], AppTest]]:
    """Factory of AppTests of app.py on the test database, signed in with the given role."""
    monkeypatch.setenv("DATABASE_URL", database_url)
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
