"""The UI's only way to the database: one cached engine and TTL-cached read calls.

Pages call `read(queries.endpoint_table, tr)`: any `monitoring_core` read function whose first
argument is a Connection. Results are cached for `TTL_S` seconds per function and arguments
(so several people looking at the same range share one query), and a database failure becomes
a friendly message instead of a traceback.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import streamlit as st
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from monitoring_core.config import ConfigError, Settings, load_settings
from monitoring_core.db import DatabaseUnavailable, database_url, make_engine
from monitoring_core.replica import ReadRouter, read_router

__all__ = [
    "TTL_S",
    "DatabaseProblem",
    "get_engine",
    "get_read_router",
    "get_settings",
    "read",
    "read_or_stop",
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


@st.cache_data(ttl=TTL_S, show_spinner=False, max_entries=500)
def _cached_call(target: str, args: tuple[Any, ...], kwargs: tuple[tuple[str, Any], ...]) -> Any:
    # Functions are cached by their import path, not the object, so the key is stable across
    # reruns and the cache entry can be shared by every session.
    module_name, _, name = target.partition(":")
    function = getattr(importlib.import_module(module_name), name)
    with get_read_router().connect() as conn:
        return function(conn, *args, **dict(kwargs))


def read(function: Callable[Concatenate[Connection, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`function(conn, *args, **kwargs)` through the TTL cache; DatabaseProblem on failure."""
    target = f"{function.__module__}:{function.__qualname__}"
    try:
        result: R = _cached_call(target, args, tuple(sorted(kwargs.items())))
    except (OperationalError, InterfaceError, DatabaseUnavailable, ConfigError, OSError) as exc:
        log.warning("read %s: database unavailable: %s", target, exc)
        raise DatabaseProblem(type(exc).__name__, unavailable=True) from exc
    except Exception as exc:  # a failing query must cost one panel, never show a traceback
        log.exception("read %s failed", target)
        raise DatabaseProblem(type(exc).__name__, unavailable=False) from exc
    return result


def read_or_stop(
    function: Callable[Concatenate[Connection, P], R], *args: P.args, **kwargs: P.kwargs
) -> R:
    """Like `read`, but on failure shows a friendly message and stops the page there."""
    try:
        return read(function, *args, **kwargs)
    except DatabaseProblem as problem:
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
        raise  # st.stop() raises; this line only satisfies type checkers
