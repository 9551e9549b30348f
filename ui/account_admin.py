"""Settings' section for API keys and users: list, create, revoke, limit and expire keys; add,
deactivate and reset the passwords of users; each through `monitoring_core.accounts`, which
writes the audit row.

Flash messages name keys and users by id only: names are user data and messages are markdown.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st
from sqlalchemy import Connection

from monitoring_core import accounts, clock
from monitoring_core.accounts import AccountInvalid, AccountNotFound
from monitoring_core.audit import user_actor
from monitoring_core.enums import ApiScope, Role
from ui import actions as ui_actions
from ui import data, fmt

__all__ = ["key_rows", "keys_and_users", "user_rows"]

_REFUSED = (AccountInvalid, AccountNotFound)
_SCOPES_HELP = (
    "Ingest: writes only (apps, Sentry DSNs) · Read: the read API only · "
    "Browser: Web Vitals from the allowed origins only · Admin: everything"
)


def keys_and_users(flash: str, me: accounts.User) -> None:
    """The two subsections; `me` is the signed-in admin (the actor, and not deactivatable)."""
    actor = user_actor(me.username)
    st.subheader("API keys")
    keys = data.read_or_stop(accounts.list_api_keys)
    _key_table(keys)
    _new_key_form(flash, actor)
    _key_changes(flash, actor, [k for k in keys if k["revoked_at"] is None])
    st.subheader("Users")
    people = data.read_or_stop(accounts.list_users)
    tz, now = data.business_tz(), clock.now()
    st.dataframe(pd.DataFrame(user_rows(people, tz, now), columns=USER_COLUMNS), hide_index=True)
    _new_user_form(flash, actor)
    _user_changes(flash, actor, me, [u for u in people if u["is_active"]])


USER_COLUMNS = ["Id", "User", "Role", "Active", "Last sign-in"]
KEY_COLUMNS = ["Id", "Key", "Prefix", "Scope", "Requests/min", "Points/min", "Origins"]
KEY_COLUMNS += ["Expires", "Last used", "Status"]


def user_rows(people: list[dict[str, Any]], tz: ZoneInfo, now: datetime) -> list[dict[str, Any]]:
    """Users as people read them: role and state in words, the last sign-in in words."""
    return [
        {
            "Id": u["id"],
            "User": u["username"],
            "Role": fmt.label(u["role"]),
            "Active": "Yes" if u["is_active"] else "No",
            "Last sign-in": fmt.when(u["last_login_at"], tz, now)
            if u["last_login_at"]
            else "never",
        }
        for u in people
    ]


def _rate(limit: int | None) -> str:
    return "default" if limit is None else "unlimited" if limit == 0 else fmt.count(limit)


def _key_status(key: dict[str, Any], tz: ZoneInfo, now: datetime) -> str:
    if key["revoked_at"] is not None:
        return f"Revoked {fmt.when(key['revoked_at'], tz, now)}"
    if key["expires_at"] is not None and key["expires_at"] <= now:
        return "Expired"
    return "Active"


def key_rows(keys: list[dict[str, Any]], tz: ZoneInfo, now: datetime) -> list[dict[str, Any]]:
    """API keys as people read them: limits, origins, times and state in words."""
    return [
        {
            "Id": k["id"],
            "Key": k["name"],
            "Prefix": k["prefix"],
            "Scope": fmt.label(k["scope"]),
            "Requests/min": _rate(k["rate_limit_per_minute"]),
            "Points/min": _rate(k["points_per_minute"]),
            "Origins": ", ".join(k["allowed_origins"] or ()) or "—",
            "Expires": fmt.when(k["expires_at"], tz, now) if k["expires_at"] else "never",
            "Last used": fmt.when(k["last_used_at"], tz, now) if k["last_used_at"] else "never",
            "Status": _key_status(k, tz, now),
        }
        for k in keys
    ]


def _key_table(keys: list[dict[str, Any]]) -> None:
    rows = key_rows(keys, data.business_tz(), clock.now())
    st.dataframe(pd.DataFrame(rows, columns=KEY_COLUMNS), hide_index=True)
    limits = data.key_limits()  # the key_rate_limits setting (Admin → Settings)
    st.caption(
        "Rates per key and minute: empty means the default"
        f" ({limits.requests_per_minute:,} requests, {limits.points_per_minute:,}"
        " points: metric points, samples, events), 0 means unlimited. Past a rate the API"
        " answers 429 with Retry-After."
    )


def _rates(where: Any, key: str) -> tuple[int | None, int | None]:
    """Requests and points per minute as typed: None (empty) for the default, 0 unlimited."""
    left, right = where.columns(2)
    requests = left.number_input(
        "Requests per minute", 0, 1_000_000, None, step=1, key=f"{key}_limit"
    )
    points = right.number_input(
        "Points per minute", 0, 1_000_000_000, None, step=1, key=f"{key}_points"
    )
    return (None if requests is None else int(requests)), (None if points is None else int(points))


def _expiry(days: float) -> datetime | None:
    return clock.now() + timedelta(days=days) if days else None


def _new_key_form(flash: str, actor: str) -> None:
    with st.form("new_api_key"):
        name = st.text_input("Name", key="apikey_name")
        scope = st.selectbox(
            "Scope", [s.value for s in ApiScope], key="apikey_scope", format_func=fmt.label
        )
        st.caption(_SCOPES_HELP)
        limit, points = _rates(st, "apikey")
        days = st.number_input("Expires in days (0: never)", 0, 3650, 0)
        origins = st.text_input("Allowed origins, comma-separated (browser keys)", key="apikey_o")
        if st.form_submit_button("Create key"):
            work = partial(
                accounts.add_api_key,
                name=name,
                scope=scope,
                actor=actor,
                now=clock.now(),
                rate_limit_per_minute=limit,
                points_per_minute=points,
                expires_at=_expiry(days),
                allowed_origins=[o.strip() for o in origins.split(",") if o.strip()],
            )
            ui_actions.run(
                flash,
                work,
                done=lambda made: (
                    f"Key {made[0]['id']} created. Copy it now, it is not shown again: `{made[1]}`"
                ),
                refused=_REFUSED,
                failed="Key not created: ",
            )


def _key_changes(flash: str, actor: str, active: list[dict[str, Any]]) -> None:
    if not active:
        return
    names = {k["id"]: f"{k['id']} · {k['name']} ({k['scope']})" for k in active}
    # The key is picked outside the form, so revoking it can ask first (a popover cannot sit
    # in a form) and both actions name the key shown.
    picked = st.selectbox("Key", list(names), format_func=lambda i: names[i], key="apikey_pick")
    key_id = int(picked or 0)  # never 0: there is at least one active key here
    with st.form("change_api_key"):
        limit, points = _rates(st, "apikey_new")
        days = st.number_input("Expires in days from now (0: never)", 0, 3650, 0)
        if st.form_submit_button("Save limit and expiry"):
            work = partial(
                accounts.update_api_key,
                key_id=key_id,
                actor=actor,
                now=clock.now(),
                rate_limit_per_minute=limit,
                points_per_minute=points,
                expires_at=_expiry(days),
            )
            ui_actions.run(flash, work, done=f"Key {key_id} changed", refused=_REFUSED)
    question = (
        f"Revoke **{fmt.md_escape(names[key_id])}**? Every request with it is refused (401) "
        "from now on; this cannot be undone."
    )
    if ui_actions.confirmed(
        "Revoke key",
        question,
        key="apikey_revoke",
        confirm=f"Revoke key {key_id}",
        icon=":material/key_off:",
    ):
        work = partial(accounts.revoke_api_key, key_id=key_id, actor=actor, now=clock.now())
        ui_actions.run(flash, work, done=f"Key {key_id} revoked", refused=_REFUSED)


def _new_user_form(flash: str, actor: str) -> None:
    with st.form("new_user"):
        left, mid, right = st.columns(3)
        name = left.text_input("User name", key="new_user_name")
        role = mid.selectbox(
            "Role", [r.value for r in Role], key="new_user_role", format_func=fmt.label
        )
        password = right.text_input("Password", type="password", key="new_user_password")
        if st.form_submit_button("Add user"):
            work = partial(
                accounts.add_user,
                username=name,
                password=password,
                role=role or "",
                actor=actor,
                now=clock.now(),
            )
            ui_actions.run(
                flash,
                work,
                done=lambda made: f"User {made['id']} added",
                refused=_REFUSED,
                failed="User not added: ",
            )


def _user_changes(flash: str, actor: str, me: accounts.User, active: list[dict[str, Any]]) -> None:
    names = {u["id"]: f"{u['username']} ({u['role']})" for u in active}
    with st.form("change_user"):
        picked = st.selectbox("User", list(names), format_func=lambda i: names[i], key="user_pick")
        user_id = int(picked or 0)  # never 0: the signed-in admin is active
        password = st.text_input("New password", type="password", key="user_password")
        reset, deactivate = st.columns(2)
        if reset.form_submit_button("Reset password"):
            work = partial(
                accounts.reset_password,
                user=user_id,
                password=password,
                actor=actor,
                now=clock.now(),
            )
            ui_actions.run(flash, work, done=f"Password of user {user_id} reset", refused=_REFUSED)
        if deactivate.form_submit_button("Deactivate user"):
            ui_actions.run(
                flash,
                partial(_deactivate, user_id=user_id, me=me, actor=actor),
                done=f"User {user_id} deactivated",
                refused=_REFUSED,
            )


def _deactivate(conn: Connection, *, user_id: int, me: accounts.User, actor: str) -> None:
    if user_id == me.id:  # the last admin could lock everyone out
        raise AccountInvalid("you cannot deactivate yourself; another admin can")
    accounts.deactivate_user(conn, user=user_id, actor=actor, now=clock.now())
