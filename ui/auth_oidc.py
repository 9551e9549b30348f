"""Single sign-on through the team's identity provider: Streamlit's built-in OIDC login
(`st.login()`, `st.user`), beside the password form.

On when Streamlit's secrets hold an `[auth]` block (`.streamlit/secrets.toml`, or the file
`make run` writes from the MONITORING_OIDC_* settings, see jobs/supervisor.py) and Authlib is
installed. The provider's **verified** e-mail names the account (`accounts.sso_sign_in`): the
active user whose user name is that address signs in with their own role; an unknown address
is refused with a message (or, with MONITORING_OIDC_AUTO_CREATE_VIEWERS=1, gets a *viewer*
account), never made an admin. Signing in is audited like a password sign-in and starts the
same stored session (ui/auth.py), so idle expiry, deactivation and role changes apply alike.

Signing out (or idling out) also ends Streamlit's identity cookie (`st.logout()`), so the
next visit asks the provider again instead of signing straight back in.
"""

from __future__ import annotations

import logging

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from monitoring_core import clock
from monitoring_core.accounts import SsoSignIn, sso_sign_in
from monitoring_core.config import ConfigError
from monitoring_core.db import DatabaseUnavailable
from ui.data import get_engine, get_settings

__all__ = ["enabled", "identity", "sign_in_button", "sign_in_from_identity", "sign_out"]

log = logging.getLogger(__name__)
_REFUSED_KEY = "auth_oidc_refused"  # (e-mail, message) of a refused identity in this session


def enabled() -> bool:
    """True when an `[auth]` block configures an identity provider (and Authlib is there)."""
    try:
        from streamlit import auth_util

        return bool(auth_util.get_secrets_auth_section()) and auth_util.is_authlib_installed()
    except (ImportError, OSError, ValueError):  # a secrets file that cannot be read
        log.warning("single sign-on: the secrets cannot be read", exc_info=True)
        return False


def identity() -> tuple[str | None, bool] | None:
    """(e-mail, verified) of the identity Streamlit holds for this browser, or None."""
    try:
        user = st.user
        if not user.get("is_logged_in"):
            return None
        email = user.get("email")
        return (email if isinstance(email, str) else None, user.get("email_verified") is True)
    except (AttributeError, RuntimeError, KeyError):  # no browser context (AppTest)
        return None


def sign_in_from_identity(address: str | None) -> SsoSignIn | None:
    """The provider's identity mapped to an account (audited), or None when there is none to
    map, it was refused already in this session, or the database cannot be reached."""
    if not enabled():
        return None
    found = identity()
    if found is None:
        return None
    email, verified = found
    if st.session_state.get(_REFUSED_KEY, (None,))[0] == email:
        return None  # told once; the form shows the reason
    try:
        with get_engine().begin() as conn:
            answer = sso_sign_in(
                conn,
                email=email,
                verified=verified,
                auto_create_viewer=get_settings().oidc_auto_create_viewers,
                address=address,
                now=clock.now(),
            )
    except (SQLAlchemyError, DatabaseUnavailable, ConfigError, OSError):
        log.exception("single sign-on: could not look the user up")
        return None
    if answer.user is None:
        st.session_state[_REFUSED_KEY] = (email, answer.refused)
    else:
        st.session_state.pop(_REFUSED_KEY, None)
    return answer


def sign_in_button() -> None:
    """On the sign-in page: the provider's button and, after a refusal, why (with a way to
    use another account)."""
    if not enabled():
        return
    refused = st.session_state.get(_REFUSED_KEY)
    if refused is not None:
        st.error(refused[1], icon=":material/block:")
        if st.button("Use another account", key="oidc_other", icon=":material/switch_account:"):
            st.session_state.pop(_REFUSED_KEY, None)
            st.logout()
        return
    if st.button(
        "Sign in with single sign-on",
        key="oidc_login",
        type="primary",
        icon=":material/key:",
        width="stretch",
    ):
        st.login()
    st.caption("Or with a user name and password:")


def sign_out() -> bool:
    """End Streamlit's identity cookie too when this browser signed in through the provider
    (the page then goes through /auth/logout and back to the sign-in page); whether it did."""
    if enabled() and identity() is not None:
        st.logout()
        return True
    return False
