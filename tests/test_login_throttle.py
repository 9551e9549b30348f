"""Signing in (issue 13.11): failed sign-ins back off per user name and per client address,
every attempt is in the audit log, and an idle UI session is signed out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest

from monitoring_core import clock
from monitoring_core.accounts import (
    ADDRESS_FREE_FAILURES,
    SignIn,
    User,
    login_backoff,
    login_delay,
    sign_in,
)
from monitoring_core.enums import Role
from monitoring_core.schema import audit_log, login_failures
from tests.ui_harness import PASSWORD, USER_KEY, make_user

AppFactory = Callable[[Role | None], AppTest]
S = timedelta(seconds=1)
T0 = datetime.fromisoformat("2026-06-10T13:00:00+00:00")


# ---------------------------------------------------------------- the back-off, pure
@pytest.mark.parametrize(
    ("failures", "free", "expected"),
    [
        (0, 5, 0 * S),
        (4, 5, 0 * S),
        (5, 5, 30 * S),
        (6, 5, 60 * S),
        (7, 5, 120 * S),
        (9, 5, 480 * S),
        (10, 5, 900 * S),  # 960 s, capped at 15 minutes
        (500, 5, 900 * S),
        (19, 20, 0 * S),
        (20, 20, 30 * S),
    ],
)
def test_it_backs_off_doubling_up_to_fifteen_minutes(
    failures: int, free: int, expected: timedelta
) -> None:
    assert login_backoff(failures, free=free) == expected


@pytest.mark.parametrize(
    ("failures", "last_failure", "now", "expected"),
    [
        (4, T0, T0, 0 * S),  # free attempts left
        (5, T0, T0, 30 * S),
        (5, T0, T0 + 10 * S, 20 * S),
        (5, T0, T0 + 30 * S, 0 * S),  # the back-off has run out
        (6, T0, T0 + 30 * S, 30 * S),
        (12, T0, T0 + 14 * 60 * S, 60 * S),
        (12, T0, T0 + 3600 * S, 0 * S),  # an hour without failures: forgotten
        (5, None, T0, 0 * S),
    ],
)
def test_it_says_how_long_to_wait(
    failures: int, last_failure: datetime | None, now: datetime, expected: timedelta
) -> None:
    assert login_delay(failures, last_failure, now) == expected


# ---------------------------------------------------------------- accounts, real database
def _try(engine: Engine, name: str, password: str, now: datetime, address: str | None) -> SignIn:
    with engine.begin() as conn:
        return sign_in(conn, username=name, password=password, address=address, now=now)


def _user(engine: Engine) -> User:
    with engine.begin() as conn:
        return make_user(conn, Role.RESPONDER)


def _audit(engine: Engine) -> list[tuple[str, str, str | None, dict[str, str]]]:
    with engine.connect() as conn:
        query = select(
            audit_log.c.actor, audit_log.c.action, audit_log.c.target, audit_log.c.details
        ).order_by(audit_log.c.id)
        return [tuple(row) for row in conn.execute(query)]


def test_it_refuses_even_the_right_password_after_five_failures_until_the_back_off_ends(
    engine: Engine, now: datetime
) -> None:
    user = _user(engine)
    for i in range(5):
        answer = _try(engine, user.username, "wrong-password", now + i * S, None)
        assert answer == SignIn(user=None)  # a plain wrong password, no wait yet
    refused = _try(engine, user.username, PASSWORD, now + 10 * S, None)
    assert refused.user is None and refused.retry_after == 24 * S  # 30 s after the 5th failure
    allowed = _try(engine, user.username, PASSWORD, now + 34 * S, None)
    assert allowed.user == user


def test_it_doubles_the_wait_and_a_success_starts_again(engine: Engine, now: datetime) -> None:
    user = _user(engine)
    for i in range(5):
        _try(engine, user.username, "wrong-password", now + i * S, None)
    sixth = _try(engine, user.username, "wrong-password", now + 40 * S, None)
    assert sixth == SignIn(user=None)  # checked: the first back-off had run out
    assert _try(engine, user.username, PASSWORD, now + 41 * S, None).retry_after == 59 * S
    assert _try(engine, user.username, PASSWORD, now + 100 * S, None).user == user
    # the count starts again: four failures do not throttle
    for i in range(4):
        _try(engine, user.username, "wrong-password", now + (101 + i) * S, None)
    assert _try(engine, user.username, PASSWORD, now + 106 * S, None).user == user


def test_it_throttles_an_unknown_name_the_same_way(engine: Engine, now: datetime) -> None:
    for i in range(5):
        assert _try(engine, "nobody", "guess", now + i * S, None) == SignIn(user=None)
    assert _try(engine, "nobody", "guess", now + 5 * S, None).retry_after == 29 * S


def test_it_throttles_an_address_spraying_many_names(engine: Engine, now: datetime) -> None:
    user = _user(engine)
    address = "203.0.113.7"
    for i in range(ADDRESS_FREE_FAILURES):
        _try(engine, f"guess-{i}", "password1", now + i * S, address)
    from_there = _try(engine, user.username, PASSWORD, now + 25 * S, address)
    assert from_there.user is None and from_there.retry_after == 24 * S
    elsewhere = _try(engine, user.username, PASSWORD, now + 25 * S, "198.51.100.1")
    assert elsewhere.user == user
    with engine.connect() as conn:
        kinds = conn.execute(
            select(login_failures.c.kind, login_failures.c.failures).where(
                login_failures.c.subject == address
            )
        ).all()
    assert kinds == [("address", ADDRESS_FREE_FAILURES)]


def test_it_audits_every_attempt_without_the_password(engine: Engine, now: datetime) -> None:
    user = _user(engine)
    address = "203.0.113.9"
    for i in range(5):
        _try(engine, user.username, "wrong-password", now + i * S, address)
    _try(engine, user.username, PASSWORD, now + 5 * S, address)  # throttled
    _try(engine, user.username, PASSWORD, now + 60 * S, None)
    rows = _audit(engine)
    target = f"user:{user.username}"
    failed = ("system:auth", "auth.login_failed", target)
    assert rows == [
        *[(*failed, {"address": address, "reason": "password"})] * 5,
        (*failed, {"address": address, "reason": "throttled"}),
        (f"user:{user.username}", "auth.login", target, {}),
    ]
    assert not any(PASSWORD in str(row) or "wrong-password" in str(row) for row in rows), (
        "a password reached the audit log"
    )


# ---------------------------------------------------------------- the UI
def _submit(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="login_username").input(name)
    at.text_input(key="login_password").input(password)
    return at.button[0].click().run()


def test_it_tells_the_sign_in_form_to_wait(
    engine: Engine, logged_in_app: AppFactory, now: datetime
) -> None:
    user = _user(engine)
    at = logged_in_app(None)
    at.run()
    for _ in range(5):
        _submit(at, user.username, "wrong-password")
        assert [e.value for e in at.error] == ["Wrong username or password."]
    _submit(at, user.username, PASSWORD)
    assert [e.value for e in at.error] == ["Too many failed sign-ins; try again in 30 s."]
    assert USER_KEY not in at.session_state
    clock.set_now(now + 30 * S)
    _submit(at, user.username, PASSWORD)
    assert not at.exception and at.session_state[USER_KEY] == user


def test_it_signs_out_an_idle_session(
    engine: Engine, logged_in_app: AppFactory, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITORING_SESSION_IDLE_MINUTES", "30")
    at = logged_in_app(Role.VIEWER)
    at.run()
    assert not at.exception and USER_KEY in at.session_state
    with clock.frozen(now + timedelta(minutes=29)):
        at.run()  # a click within the idle time: still signed in, and the time starts again
    assert USER_KEY in at.session_state
    with clock.frozen(now + timedelta(minutes=58)):
        at.run()
    assert USER_KEY in at.session_state
    with clock.frozen(now + timedelta(minutes=88)):
        at.run()  # 30 minutes after the last click
    assert USER_KEY not in at.session_state
    assert [t for t in at.text_input if t.key == "login_username"]  # the sign-in form
    assert [i.value for i in at.info] == ["You were signed out after 30 minutes without activity."]
