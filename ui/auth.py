"""Login against the users table and role checks for pages (viewer < responder < admin).

Every page starts with `require_role(Role.VIEWER)` (a page file can be run without app.py on a
fresh server, see app.py), calls `require_role(Role.RESPONDER)` before any action and uses
`has_role(...)` to decide whether to show an action at all. app.py draws `login_form()`, and
calls `refresh_user()` at the start of every run, so a user deactivated or given another role
since signing in is signed out, or has the new role, from their next click on.

Sessions:
- Sign-in goes through `accounts.sign_in` with the client address Streamlit reports
  (`st.context.ip_address`; None behind some proxies, in AppTest and on localhost, and then
  the throttle is per user name only). A throttled attempt reads "Too many failed sign-ins;
  try again in N s." whether the name exists or not; every attempt is in the audit log.
- Idle expiry: each run of a signed-in session stamps `clock.now()` in its session state;
  a run that comes MONITORING_SESSION_IDLE_MINUTES (default 60) or more after the previous
  one signs the session out and shows the sign-in form with the reason. The auto-refresh
  toggle reruns the app, so a wall display left on auto-refresh stays signed in.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from monitoring_core import clock, roles
from monitoring_core.accounts import SignIn, User, active_user, sign_in
from monitoring_core.config import ConfigError
from monitoring_core.db import DatabaseUnavailable
from monitoring_core.enums import Role
from ui.data import get_engine, get_settings

__all__ = [
    "current_user",
    "has_role",
    "login_form",
    "logout_button",
    "refresh_user",
    "require_role",
]

log = logging.getLogger(__name__)
_USER_KEY = "auth_user"
_ACTIVE_KEY = "auth_last_active"  # when this signed-in session last ran (clock.now())
_IDLE_NOTICE_KEY = "auth_idle_signed_out"  # the sign-in form says why the session ended


def current_user() -> User | None:
    """The logged-in user of this browser session, or None."""
    user = st.session_state.get(_USER_KEY)
    return user if isinstance(user, User) else None


def refresh_user() -> User | None:
    """The session's user as stored now: None (and signed out) when deactivated or deleted.

    When the database cannot be reached the session is kept: nothing can be read or changed
    without it, and the page says so.
    """
    user = current_user()
    if user is None:
        return None
    if _idle_expired():
        return None
    try:
        with get_engine().connect() as conn:
            stored = active_user(conn, user_id=user.id)
    except (SQLAlchemyError, DatabaseUnavailable, ConfigError, OSError) as exc:
        log.warning("could not re-read user %s: %s", user.username, exc)
        return user
    if stored is None:
        st.session_state.pop(_USER_KEY, None)
    elif stored != user:
        st.session_state[_USER_KEY] = stored
    return stored


def _idle_expired() -> bool:
    """Sign out a session idle for the configured time; else stamp this run as its activity."""
    now = clock.now()
    last = st.session_state.get(_ACTIVE_KEY)
    idle = timedelta(minutes=get_settings().session_idle_minutes)
    if isinstance(last, datetime) and now - last >= idle:
        st.session_state.pop(_USER_KEY, None)
        st.session_state.pop(_ACTIVE_KEY, None)
        st.session_state[_IDLE_NOTICE_KEY] = get_settings().session_idle_minutes
        return True
    st.session_state[_ACTIVE_KEY] = now
    return False


def has_role(role: Role) -> bool:
    """True when the logged-in user's role is `role` or above."""
    user = current_user()
    return user is not None and roles.has_role(user.role, role)


def require_role(role: Role) -> User:
    """The user when their role is high enough; otherwise an explanation and the page stops."""
    user = current_user()
    if user is None:
        # Reached only when a page runs without app.py (see app.py `_page`): never show data.
        st.warning(
            "You are not signed in. Open the [start page](/) to sign in.", icon=":material/lock:"
        )
        st.stop()
    if not has_role(role):
        st.error(f"This needs the **{role.value}** role (or higher).", icon=":material/lock:")
        st.stop()
    assert user is not None
    return user


def _client_address() -> str | None:
    try:
        address = st.context.ip_address
    except (AttributeError, RuntimeError):  # no context outside a script run
        return None
    return address if isinstance(address, str) and address else None  # AppTest: a mock


def _check_password(username: str, password: str) -> SignIn | None:
    """The sign-in's answer, or None (and an error shown) when the database is unreachable."""
    try:
        with get_engine().begin() as conn:
            return sign_in(
                conn,
                username=username,
                password=password,
                address=_client_address(),
                now=clock.now(),
            )
    except (SQLAlchemyError, DatabaseUnavailable, ConfigError, OSError):
        log.exception("login check failed")
        st.error("The user database cannot be reached right now; try again in a moment.")
        return None


def login_form() -> None:
    """The sign-in form; on success the user goes into the session and the app reruns."""
    _, middle, _ = st.columns([1, 2, 1])
    with middle:
        _login_form()


def _login_form() -> None:
    st.title("Wedding platform monitoring")
    idle_minutes = st.session_state.get(_IDLE_NOTICE_KEY)
    if idle_minutes is not None:
        st.info(
            f"You were signed out after {int(idle_minutes)} minutes without activity.",
            icon=":material/schedule:",
        )
    with st.form("login", clear_on_submit=False):
        username = st.text_input("Username", key="login_username")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        st.caption(
            "First run: `make run` prints the admin login (also saved in "
            "`.data/first-run-credentials.txt`). More accounts: "
            "`python -m monitoring_core user add NAME --role viewer`."
        )
        return
    answer = _check_password(username.strip(), password)
    if answer is None:
        return
    if answer.retry_after > timedelta(0):
        wait_s = math.ceil(answer.retry_after.total_seconds())
        st.error(f"Too many failed sign-ins; try again in {wait_s} s.")
        return
    if answer.user is None:
        st.error("Wrong username or password.")
        return
    st.session_state[_USER_KEY] = answer.user
    st.session_state[_ACTIVE_KEY] = clock.now()
    st.session_state.pop(_IDLE_NOTICE_KEY, None)
    st.rerun()


def logout_button() -> None:
    """A sidebar line with who is signed in and a sign-out button."""
    user = current_user()
    if user is None:
        return
    st.sidebar.caption(f"Signed in as **{user.username}** ({user.role.value})")
    clicked = st.sidebar.button("Sign out", key="logout", icon=":material/logout:")
    if clicked:
        st.session_state.pop(_USER_KEY, None)
        st.session_state.pop(_ACTIVE_KEY, None)
        st.rerun()
