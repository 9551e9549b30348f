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
- Reloads and new tabs: a sign-in also starts a stored session (monitoring_core.sessions)
  whose token the browser keeps in a cookie; a fresh Streamlit session presenting it is signed
  in again while it is open. Sign-out, idling and deactivation end it.
- Single sign-on (ui/auth_oidc.py): with an identity provider configured, the sign-in page
  also offers "Sign in with single sign-on"; the provider's verified e-mail names the account,
  and the sign-in starts the same stored session.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timedelta

import streamlit as st
import streamlit.components.v1 as components
from sqlalchemy.exc import SQLAlchemyError

from monitoring_core import clock, roles, sessions
from monitoring_core.accounts import SignIn, User, active_user, sign_in
from monitoring_core.audit import record_audit, user_actor
from monitoring_core.config import ConfigError
from monitoring_core.db import DatabaseUnavailable
from monitoring_core.enums import Role
from ui import auth_oidc
from ui.data import get_engine, get_settings

__all__ = [
    "current_user",
    "has_role",
    "login_form",
    "logout_button",
    "refresh_user",
    "require_role",
    "session_cookie",
]

log = logging.getLogger(__name__)
_USER_KEY = "auth_user"
_ACTIVE_KEY = "auth_last_active"  # when this signed-in session last ran (clock.now())
_IDLE_NOTICE_KEY = "auth_idle_signed_out"  # the sign-in form says why the session ended
_TOKEN_KEY = "auth_session_token"  # this browser's ui_sessions token (also in its cookie)
_SEEN_KEY = "auth_session_seen"  # when the stored session's last use was last moved
_COOKIE_TODO_KEY = "auth_cookie_todo"  # "set" after sign-in, "clear" after sign-out


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
        return _resume_from_cookie() or _sign_in_from_identity()
    if _idle_expired():
        _forget_session(user, "idle")
        auth_oidc.sign_out()
        return None
    try:
        with get_engine().connect() as conn:
            stored = active_user(conn, user_id=user.id)
    except (SQLAlchemyError, DatabaseUnavailable, ConfigError, OSError) as exc:
        log.warning("could not re-read user %s: %s", user.username, exc)
        return user
    if stored is None:
        st.session_state.pop(_USER_KEY, None)
        _forget_session(user, "deactivated")
        auth_oidc.sign_out()
    elif stored != user:
        st.session_state[_USER_KEY] = stored
    if stored is not None:
        _keep_session_alive()
    return stored


def _cookie_token() -> str | None:
    try:
        token = st.context.cookies.get(sessions.COOKIE)
    except (AttributeError, RuntimeError):  # no browser context (AppTest, bare runs)
        return None
    return token if isinstance(token, str) and token else None


def _resume_from_cookie() -> User | None:
    """A reload or a new tab: the session cookie signs the browser in again while its
    session is open (monitoring_core.sessions)."""
    token = _cookie_token()
    if token is None or st.session_state.get(_TOKEN_KEY) == token:  # ended here already
        return None
    now = clock.now()
    idle = timedelta(minutes=get_settings().session_idle_minutes)
    try:
        with get_engine().begin() as conn:
            user = sessions.resume(conn, token, now=now, idle=idle)
    except (SQLAlchemyError, DatabaseUnavailable, ConfigError, OSError) as exc:
        log.warning("could not resume a session: %s", exc)
        return None
    if user is None:
        st.session_state[_COOKIE_TODO_KEY] = "clear"
        return None
    st.session_state[_USER_KEY] = user
    st.session_state[_ACTIVE_KEY] = now
    st.session_state[_TOKEN_KEY] = token
    st.session_state[_SEEN_KEY] = now
    return user


def _keep_session_alive() -> None:
    """Move the stored session's last use along (at most once a minute), so a reload after
    an hour of clicking is not taken for an idle session."""
    token = st.session_state.get(_TOKEN_KEY)
    seen = st.session_state.get(_SEEN_KEY)
    now = clock.now()
    if not token or (isinstance(seen, datetime) and now - seen < timedelta(minutes=1)):
        return
    idle = timedelta(minutes=get_settings().session_idle_minutes)
    try:
        with get_engine().begin() as conn:
            sessions.resume(conn, token, now=now, idle=idle)
    except (SQLAlchemyError, DatabaseUnavailable, ConfigError, OSError):
        return
    st.session_state[_SEEN_KEY] = now


def _forget_session(user: User, reason: str) -> None:
    """End the stored session (`reason`: "sign-out", "idle", "deactivated"; audited as
    `auth.logout`) and clear the cookie next run."""
    token = st.session_state.get(_TOKEN_KEY)
    method = "oidc" if auth_oidc.identity() is not None else "password"
    try:
        with get_engine().begin() as conn:
            if token:
                sessions.end_session(conn, token, now=clock.now())
            record_audit(
                conn,
                actor=user_actor(user.username),
                action="auth.logout",
                target=f"user:{user.username}",
                details={"reason": reason, "method": method},
                now=clock.now(),
            )
    except (SQLAlchemyError, DatabaseUnavailable, ConfigError, OSError):
        log.warning("could not end a session", exc_info=True)
    st.session_state[_COOKIE_TODO_KEY] = "clear"


def session_cookie() -> None:
    """Set or clear the session cookie when a sign-in or sign-out asked for it (app.py calls
    this on every run; it draws nothing otherwise). A script in a zero-height component: the
    component's frame shares the app's origin, so the cookie is the app's."""
    todo = st.session_state.pop(_COOKIE_TODO_KEY, None)
    token = st.session_state.get(_TOKEN_KEY)
    if todo is None and token and st.context.cookies.get(sessions.COOKIE) != token:
        # Signed in in this session (the browser did not bring the cookie): the script stays
        # on the page in every run. Drawn only once, a rerun right after the sign-in (a click
        # at once) could remove its frame before it ran, and a reload then signed the user out.
        todo = "set"
    if todo is None:
        return
    secure = "; Secure" if get_settings().public_url.startswith("https://") else ""
    if todo == "set" and st.session_state.get(_TOKEN_KEY):
        value, age = st.session_state[_TOKEN_KEY], int(sessions.MAX_AGE.total_seconds())
    else:
        value, age = "", 0
    cookie = f"{sessions.COOKIE}={value}; Max-Age={age}; Path=/; SameSite=Strict{secure}"
    components.html(
        f"<script>window.parent.document.cookie = {json.dumps(cookie)};</script>", height=0
    )


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


def require_role(role: Role, *, organisations: bool = False) -> User:
    """The user when their role is high enough; otherwise an explanation and the page stops.
    A user limited to organisations passes only on a page that says `organisations=True`: one
    whose every read goes through row-level security for them (ui.organisations)."""
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
    if user.organization_ids is not None and not organisations:
        st.error(
            "This page shows every organisation's data; your account sees only its own "
            "organisations' errors, business figures and incidents (the pages in the menu).",
            icon=":material/lock:",
        )
        st.stop()
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
    auth_oidc.sign_in_button()
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
    _start_session(answer.user)
    st.rerun()


def _start_session(user: User) -> None:
    """`user` signed in: into this session, and a stored session for reloads and tabs."""
    st.session_state[_USER_KEY] = user
    st.session_state[_ACTIVE_KEY] = clock.now()
    st.session_state.pop(_IDLE_NOTICE_KEY, None)
    try:  # stay signed in across reloads and tabs (monitoring_core.sessions)
        with get_engine().begin() as conn:
            token = sessions.start_session(conn, user_id=user.id, now=clock.now())
    except (SQLAlchemyError, DatabaseUnavailable, ConfigError, OSError):
        log.warning("could not start a session: signed in for this tab only", exc_info=True)
    else:
        st.session_state[_TOKEN_KEY] = token
        st.session_state[_SEEN_KEY] = clock.now()
        st.session_state[_COOKIE_TODO_KEY] = "set"


def _sign_in_from_identity() -> User | None:
    """Single sign-on: the identity provider's verified e-mail mapped to an account
    (ui/auth_oidc.py); None when single sign-on is off, nobody signed in there, or refused."""
    answer = auth_oidc.sign_in_from_identity(_client_address())
    if answer is None or answer.user is None:
        return None
    _start_session(answer.user)
    return answer.user


def logout_button() -> None:
    """A sidebar line with who is signed in and a sign-out button."""
    user = current_user()
    if user is None:
        return
    st.sidebar.caption(f"Signed in as **{user.username}** ({user.role.value})")
    clicked = st.sidebar.button("Sign out", key="logout", icon=":material/logout:")
    if clicked:
        _forget_session(user, "sign-out")
        st.session_state.pop(_USER_KEY, None)
        st.session_state.pop(_ACTIVE_KEY, None)
        if not auth_oidc.sign_out():  # else the page goes through /auth/logout
            st.rerun()
