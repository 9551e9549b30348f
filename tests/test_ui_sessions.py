"""Sign-ins that survive a reload: the stored session behind the cookie, and the UI's use of it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, select, update
from streamlit.testing.v1 import AppTest

from monitoring_core.accounts import add_user
from monitoring_core.enums import Role
from monitoring_core.schema import ui_sessions, users
from monitoring_core.sessions import MAX_AGE, end_session, resume, start_session

IDLE = timedelta(minutes=60)


def _user(engine: Engine, now: datetime, name: str) -> int:
    with engine.begin() as conn:
        row = add_user(
            conn, username=name, password="correct horse battery", role=Role.RESPONDER,
            actor="system:test", now=now,
        )  # fmt: skip
    return int(row["id"])


def test_a_session_resumes_until_it_ends(engine: Engine, now: datetime) -> None:
    uid = _user(engine, now, "ada")
    with engine.begin() as conn:
        token = start_session(conn, user_id=uid, now=now)
        stored = conn.execute(select(ui_sessions.c.token_hash)).scalar_one()
    assert token not in stored and len(token) >= 40  # only a hash is kept
    with engine.begin() as conn:
        user = resume(conn, token, now=now + timedelta(minutes=5), idle=IDLE)
        assert user is not None and user.username == "ada" and user.role is Role.RESPONDER
        assert resume(conn, token + "x", now=now, idle=IDLE) is None  # forged
        assert resume(conn, None, now=now, idle=IDLE) is None
        end_session(conn, token, now=now + timedelta(minutes=6))
        assert resume(conn, token, now=now + timedelta(minutes=7), idle=IDLE) is None


def test_idle_expired_and_deactivated_sessions_do_not_resume(engine: Engine, now: datetime) -> None:
    uid = _user(engine, now, "grace")
    with engine.begin() as conn:
        token = start_session(conn, user_id=uid, now=now)
        # each use moves the idle clock: 50 min, then 100 min after the start is fine
        assert resume(conn, token, now=now + timedelta(minutes=50), idle=IDLE) is not None
        assert resume(conn, token, now=now + timedelta(minutes=100), idle=IDLE) is not None
        assert resume(conn, token, now=now + timedelta(minutes=161), idle=IDLE) is None  # idle
        fresh = start_session(conn, user_id=uid, now=now)
        late = now + MAX_AGE + timedelta(seconds=1)
        conn.execute(update(ui_sessions).values(last_seen_at=late))
        assert resume(conn, fresh, now=late, idle=IDLE) is None  # past its absolute lifetime
        third = start_session(conn, user_id=uid, now=now)
        conn.execute(update(users).where(users.c.id == uid).values(is_active=False))
        assert resume(conn, third, now=now, idle=IDLE) is None  # deactivated


@pytest.mark.usefixtures("engine")
def test_signing_in_starts_a_session_and_signing_out_ends_it(
    logged_in_app: Callable[[Role | None], AppTest], session_engine: Engine, now: datetime
) -> None:
    _user(session_engine, now, "lin")
    at = logged_in_app(None).run()
    at.text_input(key="login_username").input("lin")
    at.text_input(key="login_password").input("correct horse battery")
    at.button[0].click().run()
    assert not at.exception
    token = at.session_state["auth_session_token"]
    with session_engine.connect() as conn:
        assert resume(conn, token, now=now, idle=IDLE) is not None
    # The script that sets the cookie is on the page in this run and the next ones (drawn
    # once, a rerun at once could remove it before it ran)
    for _ in range(2):
        assert any(f"monitoring_session={token}" in str(p) for p in _frames(at))
        at.run()
    at.sidebar.button(key="logout").click().run()
    assert not any(f"monitoring_session={token}" in str(p) for p in _frames(at))
    with session_engine.connect() as conn:
        assert resume(conn, token, now=now, idle=IDLE) is None  # a copied cookie is worthless


def _frames(at: AppTest) -> list[object]:
    """The protos of the components.html frames of the last run."""
    return [e.proto for e in at.get("iframe")]
