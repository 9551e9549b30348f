"""Fixtures for page tests with `streamlit.testing.v1.AppTest` (registered in conftest.py).

- `demo_engine`: a database of its own holding only DEMO_DAYS of demo data up to DEMO_NOW,
  copied afresh for each test module from a template built once (tests/db_templates.py). The demo is always loaded at DEMO_NOW, a weekday afternoon, whatever TEST_NOW says:
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
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url
from streamlit.testing.v1 import AppTest

from monitoring_core import clock
from monitoring_core.accounts import User, create_user
from monitoring_core.db import make_engine
from monitoring_core.enums import Role
from tests.db_templates import admin_url, copy_base, copy_template, drop_database, url_for

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
    """The value of the one table on the page (st.dataframe, or st.table for the short ones
    `widgets.small_table` draws) whose columns include `columns`."""
    tables = [*at.dataframe, *at.table]
    found = [df.value for df in tables if set(columns) <= set(_columns(df.value))]
    assert len(found) == 1, f"{len(found)} tables have the columns {columns}"
    return found[0]


def _columns(frame: pd.DataFrame) -> Iterable[str]:
    return [str(c) for c in frame.columns]


DEMO_FIXTURES = {"demo_engine", "business_engine"}  # fixtures holding demo data at DEMO_NOW
_demo_urls: dict[str, str] = {}  # session database URL -> its demo copy's URL, while one is open


def _build_demo(name: str) -> None:
    """DEMO_DAYS of demo data up to DEMO_NOW (the demo template, built once)."""
    from monitoring_core.demo import load_demo_data

    copy_base(name)
    engine = make_engine(url_for(name))
    load_demo_data(engine, days=DEMO_DAYS, now=_DEMO_LOADED_AT, only_if_empty=False)
    engine.dispose()


@pytest.fixture(scope="module")
def demo_engine(database_url: str) -> Iterator[Engine]:
    """A database of its own holding only demo data, copied afresh for each test module.

    The demo is loaded once into a template database (tests/db_templates.py) and each module
    gets a file copy of it in a few seconds; `logged_in_app` points the pages at that copy.
    """
    name = f"{make_url(database_url).database}_demo"
    copy_template("demo", _build_demo, name)
    engine = make_engine(url_for(name))
    _demo_urls[database_url] = url_for(name)
    yield engine
    _demo_urls.pop(database_url, None)
    engine.dispose()
    drop_database(admin_url(), name)


@pytest.fixture
def logged_in_app(
    session_engine: Engine,
    database_url: str,
    test_instant: datetime,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[Role | None], AppTest]]:
    """Factory of AppTests of app.py on the test database, signed in with the given role."""
    on_demo = bool(DEMO_FIXTURES & set(request.fixturenames))
    users = session_engine
    if "demo_engine" in request.fixturenames:  # the pages read the module's demo copy
        users = request.getfixturevalue("demo_engine")
        database_url = _demo_urls[database_url]
    monkeypatch.setenv("DATABASE_URL", database_url)
    clock.set_now(DEMO_NOW if on_demo else test_instant)
    request.addfinalizer(lambda: clock.set_now(None))
    # The UI caches the engine and query results per process: start every test afresh.
    st.cache_data.clear()
    st.cache_resource.clear()

    def make(role: Role | None = Role.VIEWER) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=60)
        if role is not None:
            with users.begin() as conn:
                at.session_state[USER_KEY] = make_user(conn, role)
        return at

    yield make
    st.cache_data.clear()
    st.cache_resource.clear()
