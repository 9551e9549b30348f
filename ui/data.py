"""The UI's only way to the database: one cached engine and TTL-cached read calls.

A user limited to organisations reads through the `monitoring_scoped` role instead, so the
database's row-level security decides what they see (`monitoring_core.org_scope`).

Pages call `read(queries.endpoint_table, tr)`: any `monitoring_core` read function whose first
argument is a Connection. Results are cached for `TTL_S` seconds per function and arguments
(so several people looking at the same range share one query), and a database failure becomes
a friendly message instead of a traceback.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, Concatenate, NoReturn, ParamSpec, TypeVar
from zoneinfo import ZoneInfo

import streamlit as st
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

from monitoring_core import clock, org_scope
from monitoring_core.config import ConfigError, Settings, load_settings
from monitoring_core.db import DatabaseUnavailable, database_url, make_engine, scoped_url
from monitoring_core.live_settings import KeyLimits, LiveCache, LiveSettings, defaults
from monitoring_core.replica import ReadRouter, read_router

__all__ = [
    "TTL_S",
    "DatabaseProblem",
    "business_tz",
    "get_engine",
    "get_read_router",
    "get_scoped_engine",
    "get_settings",
    "key_limits",
    "live_settings",
    "guarded",
    "prefetch",
    "read",
    "read_or_stop",
    "stop_with",
]

log = logging.getLogger(__name__)
TTL_S = 30
P = ParamSpec("P")
R = TypeVar("R")


class DatabaseProblem(RuntimeError):
    """A read failed: the database is `unavailable` (down), or the query itself failed."""

    def __init__(self, message: str, *, unavailable: bool) -> None:
        super().__init__(message)
        self.unavailable = unavailable


@st.cache_resource(show_spinner=False)
def get_settings() -> Settings:
    """The process's settings (read from the environment once)."""
    return load_settings()


@st.cache_resource(show_spinner=False)
def get_engine() -> Engine:
    """One engine per UI process (DATABASE_URL, else the embedded server)."""
    return make_engine(database_url(get_settings()))


@st.cache_resource(show_spinner=False)
def get_read_router() -> ReadRouter:
    """Where page reads go: the DATABASE_READ_URL replica while it is usable, else the primary."""
    return read_router(get_settings(), get_engine())


@st.cache_resource(show_spinner=False)
def get_scoped_engine() -> Engine | None:
    """The `monitoring_scoped` role's engine for users limited to organisations (None when the
    installation has no such role: an external database without DATABASE_SCOPED_URL)."""
    get_engine()  # the embedded cluster and its roles first
    url = scoped_url(get_settings())
    return None if url is None else make_engine(url)


@st.cache_resource(show_spinner=False)
def live_settings() -> LiveCache:
    """This UI process's copy of the settings an admin changes live (at most 5 s behind)."""
    return LiveCache(get_engine(), get_settings())


def business_tz() -> ZoneInfo:
    """The business calendar: the time zone pages show times in, carrying the wedding season
    (`wedding_calendar.Calendar`, the `wedding_calendar` setting; MONITORING_TZ without it)."""
    return _live().calendar


def key_limits() -> KeyLimits:
    """The per-minute limits of keys without their own (the `key_rate_limits` setting)."""
    return _live().key_limits


def _live() -> LiveSettings:
    """The live settings; the environment's while the database cannot be reached at all (a
    page then shows its own database message, not a failure of the time zone)."""
    try:
        return live_settings().current()
    except (OperationalError, InterfaceError, DatabaseUnavailable, OSError):
        log.warning("live settings unavailable: the environment's apply", exc_info=True)
        return defaults(get_settings())


_GRANT_KEY = "org_scope_grant"  # (token, organisations, expiry) of this browser session


def _scope_token(user_id: int, organizations: tuple[str, ...]) -> str:
    """This session's live grant for `organizations`, opened or renewed when near its end."""
    now = clock.now()
    held = st.session_state.get(_GRANT_KEY)
    if held and held[1] == organizations and held[2] > now + timedelta(minutes=5):
        return str(held[0])
    with get_engine().begin() as conn:
        token = org_scope.open_grant(conn, user_id=user_id, organizations=organizations)
    st.session_state[_GRANT_KEY] = (token, organizations, now + org_scope.GRANT_TTL)
    return token


@st.cache_data(ttl=TTL_S, show_spinner=False, max_entries=500)
def _cached_scoped_call(
    target: str,
    args: tuple[Any, ...],
    kwargs: tuple[tuple[str, Any], ...],
    organizations: tuple[str, ...],  # in the cache key: users with one scope share answers
    _token: str,  # not hashed: any live token for these organisations gives the same rows
) -> Any:
    module_name, _, name = target.partition(":")
    function = getattr(importlib.import_module(module_name), name)
    scoped = get_scoped_engine()
    if scoped is None:
        raise ConfigError("organisation-scoped reads need DATABASE_SCOPED_URL")
    with org_scope.scoped_connection(scoped, _token) as conn:
        return function(conn, *args, **dict(kwargs))


def _organisation_scope() -> tuple[int, tuple[str, ...]] | None:
    from ui.auth import current_user  # ui.auth imports this module

    user = current_user()
    if user is None or user.organization_ids is None:
        return None
    return user.id, user.organization_ids


@st.cache_data(ttl=TTL_S, show_spinner=False, max_entries=500)
def _cached_call(target: str, args: tuple[Any, ...], kwargs: tuple[tuple[str, Any], ...]) -> Any:
    # Functions are cached by their import path, not the object, so the key is stable across
    # reruns and the cache entry can be shared by every session.
    module_name, _, name = target.partition(":")
    function = getattr(importlib.import_module(module_name), name)
    with get_read_router().connect() as conn:
        return function(conn, *args, **dict(kwargs))


def guarded(call: Callable[[], R], what: str) -> R:
    """`call()`, its failure turned into DatabaseProblem (logged as `what`): the database being
    down is `unavailable`; any other failure costs one panel a message, never a traceback."""
    try:
        return call()
    except (OperationalError, InterfaceError, DatabaseUnavailable, ConfigError, OSError) as exc:
        log.warning("read %s: database unavailable: %s", what, exc)
        raise DatabaseProblem(type(exc).__name__, unavailable=True) from exc
    except Exception as exc:
        log.exception("read %s failed", what)
        raise DatabaseProblem(type(exc).__name__, unavailable=False) from exc


def read(function: Callable[Concatenate[Connection, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`function(conn, *args, **kwargs)` through the TTL cache; DatabaseProblem on failure."""
    target = f"{function.__module__}:{function.__qualname__}"
    items = tuple(sorted(kwargs.items()))

    def call() -> R:
        scope = _organisation_scope()
        if scope is None:
            return _cached_call(target, args, items)
        # the database limits these reads to the user's organisations (org_scope, RLS)
        token = _scope_token(*scope)
        return _cached_scoped_call(target, args, items, scope[1], token)

    return guarded(call, target)


def prefetch(*reads: tuple[Callable[..., Any], tuple[Any, ...]]) -> None:
    """Run several `read(function, *args)` at once, one thread and connection each, so the
    page's own `read`/`read_or_stop` calls that follow (same arguments) are cache hits: a page
    whose independent reads took 0.2-0.3 s each one after the other waits for the slowest
    only. A failure is left for that later call to report (failures are not cached)."""
    if len(reads) < 2:
        return
    context = get_script_run_ctx()  # session state and the cache need the script's context

    def one(item: tuple[Callable[..., Any], tuple[Any, ...]]) -> None:
        add_script_run_ctx(threading.current_thread(), context)
        try:
            read(item[0], *item[1])
        except DatabaseProblem:
            pass

    with ThreadPoolExecutor(max_workers=min(4, len(reads))) as pool:
        list(pool.map(one, reads))


def stop_with(problem: DatabaseProblem) -> NoReturn:
    """The friendly message for a failed read, and the page stops there."""
    if problem.unavailable:
        st.error(
            "The monitoring database is not answering right now, so this cannot be shown. "
            "The page recovers on its own once the database is back; try again shortly.",
            icon=":material/cloud_off:",
        )
    else:
        st.error(
            "The rest of this page could not be loaded because a query failed; the details "
            "are in the UI's log. Other pages are not affected.",
            icon=":material/error:",
        )
    st.stop()
    raise problem  # st.stop() raises; this line only satisfies type checkers


def read_or_stop(
    function: Callable[Concatenate[Connection, P], R], *args: P.args, **kwargs: P.kwargs
) -> R:
    """Like `read`, but on failure shows a friendly message and stops the page there."""
    try:
        return read(function, *args, **kwargs)
    except DatabaseProblem as problem:
        stop_with(problem)
