"""Keys and users have a lifecycle (issue 13.13): the CLI, the admin API and the Settings page
list, create, revoke, expire and limit keys, deactivate users and reset passwords, audited;
a deactivated user's open session stops acting (issue 13.11)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest

from monitoring_core.accounts import (
    authenticate_user,
    create_api_key,
    create_user,
    deactivate_user,
    lookup_api_key,
)
from monitoring_core.enums import ApiScope, Role
from monitoring_core.schema import api_keys, audit_log, users
from tests.test_cli import cli
from tests.ui_harness import USER_KEY

AppFactory = Callable[[Role | None], AppTest]
READ_ROUTE = "/api/monitoring/live/alerts"
WRITE_ROUTE = "/api/monitoring/metrics"
POINT = [{"metric_name": "orders", "metric_value": 1}]


def _audit(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.actor, audit_log.c.action, audit_log.c.target).order_by(
                audit_log.c.id
            )
        )
        return [tuple(row) for row in rows]


# ---------------------------------------------------------------- CLI
def test_it_adds_a_read_key_from_the_cli_that_reads_and_cannot_write(
    engine: Engine, database_url: str, api_server: str
) -> None:
    made = cli("apikey", "add", "dashboards", "--scope", "read", url=database_url)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    with engine.connect() as conn:
        found = lookup_api_key(conn, key)
    assert found is not None and found.scope is ApiScope.READ
    headers = {"X-API-Key": key}
    assert httpx.get(api_server + READ_ROUTE, headers=headers).status_code == 200
    assert httpx.post(api_server + WRITE_ROUTE, json=POINT, headers=headers).status_code == 403
    assert [a[:2] for a in _audit(engine)] == [("system:cli", "apikey.create")]


def test_it_lists_limits_expires_and_revokes_keys_from_the_cli(
    engine: Engine, database_url: str, now: datetime
) -> None:
    with engine.begin() as conn:
        key = create_api_key(conn, name="checkout-service", scope=ApiScope.INGEST)
        key_id = conn.execute(select(api_keys.c.id)).scalar_one()
    changed = cli(
        "apikey", "set", str(key_id), "--rate-limit", "5", "--expires-in-days", "2",
        url=database_url,
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    listed = cli("apikey", "list", url=database_url)
    assert listed.returncode == 0 and "checkout-service" in listed.stdout
    assert key not in listed.stdout and key[:10] in listed.stdout  # the prefix, never the key
    with engine.connect() as conn:
        row = conn.execute(select(api_keys)).one()
    assert row.rate_limit_per_minute == 5 and row.expires_at is not None
    revoked = cli("apikey", "revoke", str(key_id), url=database_url)
    assert revoked.returncode == 0, revoked.stderr
    with engine.connect() as conn:
        assert lookup_api_key(conn, key) is None
    unknown = cli("apikey", "revoke", "999", url=database_url)
    assert unknown.returncode == 1 and "no API key 999" in unknown.stderr
    assert [a[:2] for a in _audit(engine)] == [
        ("system:cli", "apikey.update"),
        ("system:cli", "apikey.revoke"),
    ]


def test_it_resets_passwords_and_deactivates_users_from_the_cli(
    engine: Engine, database_url: str, now: datetime
) -> None:
    with engine.begin() as conn:
        create_user(conn, username="olivia", password="first-password", role=Role.RESPONDER)
    reset = cli(
        "user", "reset-password", "olivia", "--password-stdin",
        url=database_url, stdin="second-password\n",
    )  # fmt: skip
    assert reset.returncode == 0, reset.stderr
    with engine.begin() as conn:
        assert (
            authenticate_user(conn, username="olivia", password="first-password", now=now) is None
        )
        assert authenticate_user(conn, username="olivia", password="second-password", now=now)
    gone = cli("user", "deactivate", "olivia", url=database_url)
    assert gone.returncode == 0, gone.stderr
    listed = cli("user", "list", url=database_url)
    assert "olivia" in listed.stdout and "False" in listed.stdout
    with engine.begin() as conn:
        assert (
            authenticate_user(conn, username="olivia", password="second-password", now=now) is None
        )
    assert _audit(engine) == [
        ("system:cli", "user.reset_password", "user:olivia"),
        ("system:cli", "user.deactivate", "user:olivia"),
    ]


# ---------------------------------------------------------------- admin API
def test_it_creates_limits_and_revokes_keys_through_the_admin_api(
    api_server: str, admin_key: str, engine: Engine, real_now: datetime
) -> None:
    admin = httpx.Client(base_url=api_server, headers={"X-API-Key": admin_key})
    body = {
        "name": "grafana",
        "scope": "read",
        "expires_at": (real_now + timedelta(days=1)).isoformat(),
    }
    made = admin.post("/api/admin/keys", json=body)
    assert made.status_code == 201, made.text
    key, key_id = made.json()["key"], made.json()["id"]
    reader = httpx.Client(base_url=api_server, headers={"X-API-Key": key})
    assert reader.get(READ_ROUTE).status_code == 200

    limited = admin.patch(f"/api/admin/keys/{key_id}", json={"rate_limit_per_minute": 1})
    assert limited.status_code == 200 and limited.json()["rate_limit_per_minute"] == 1
    assert [reader.get(READ_ROUTE).status_code for _ in range(2)] == [200, 429]

    listed = admin.get("/api/admin/keys").json()["keys"]
    assert [k["name"] for k in listed] == ["grafana", "test-admin"]
    assert all("key" not in k and "key_hash" not in k for k in listed)
    revoked = admin.delete(f"/api/admin/keys/{key_id}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert reader.get(READ_ROUTE).status_code == 401  # at once, not after the cache's TTL
    assert [a[:2] for a in _audit(engine)] == [
        ("apikey:test-admin", "apikey.create"),
        ("apikey:test-admin", "apikey.update"),
        ("apikey:test-admin", "apikey.revoke"),
    ]


BROWSER = {"scope": "browser"}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "a\u0000b"}, "name"),
        ({"scope": "superuser"}, "scope"),
        ({"allowed_origins": ["https://a.example"]}, "allowed_origins"),  # not a browser key
        ({**BROWSER, "allowed_origins": 5}, "allowed_origins"),
        ({**BROWSER, "allowed_origins": "https://a.example"}, "allowed_origins"),
        ({**BROWSER, "allowed_origins": ["https://a\u0000b"]}, "allowed_origins"),
        ({**BROWSER, "allowed_origins": ["https://a.example/path"]}, "allowed_origins"),
        ({**BROWSER, "allowed_origins": ["https://a.example:99999"]}, "allowed_origins"),
        ({"rate_limit_per_minute": -1}, "rate_limit_per_minute"),  # 0 is "unlimited"
        ({"points_per_minute": 1.5}, "points_per_minute"),
        ({"expires_at": "2020-01-01T00:00:00+00:00"}, "expires_at"),
        ({"expires_at": "2099-01-01T00:00:00"}, "expires_at"),  # no offset
        ({"expires_at": "tomorrow"}, "expires_at"),
    ],
)
def test_it_answers_422_naming_the_field_of_a_bad_key(
    api_server: str, admin_key: str, engine: Engine, changes: dict[str, Any], field: str
) -> None:
    body = {"name": "x", "scope": "read", **changes}
    reply = httpx.post(api_server + "/api/admin/keys", json=body, headers={"X-API-Key": admin_key})
    assert reply.status_code == 422, reply.text
    assert [e["field"] for e in reply.json()["detail"]] == [field]
    with engine.connect() as conn:
        assert conn.execute(select(api_keys.c.name)).scalars().all() == ["test-admin"]


def test_it_refuses_to_let_a_key_limit_or_revoke_itself(
    api_server: str, admin_key: str, engine: Engine
) -> None:
    with engine.connect() as conn:
        own_id = conn.execute(select(api_keys.c.id)).scalar_one()
    admin = httpx.Client(base_url=api_server, headers={"X-API-Key": admin_key})
    assert (
        admin.patch(f"/api/admin/keys/{own_id}", json={"rate_limit_per_minute": 1}).status_code
        == 409
    )
    assert admin.delete(f"/api/admin/keys/{own_id}").status_code == 409
    assert admin.get("/api/admin/keys").status_code == 200
    assert _audit(engine) == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("DELETE", "/api/admin/keys/999", 404),
        ("PATCH", "/api/admin/keys/999", 404),
        ("POST", "/api/admin/users/999/deactivate", 404),
        ("DELETE", "/api/admin/keys/99999999999999999999999", 422),  # beyond 2^63 - 1
    ],
)
def test_it_answers_404_for_a_key_or_user_that_is_not_there(
    api_server: str, admin_key: str, method: str, path: str, status: int
) -> None:
    reply = httpx.request(method, api_server + path, json={}, headers={"X-API-Key": admin_key})
    assert reply.status_code == status, reply.text


def test_it_deactivates_users_and_resets_passwords_through_the_admin_api(
    api_server: str, admin_key: str, engine: Engine, now: datetime
) -> None:
    admin = httpx.Client(base_url=api_server, headers={"X-API-Key": admin_key})
    made = admin.post(
        "/api/admin/users",
        json={"username": "sam", "password": "first-password", "role": "viewer"},
    )
    assert made.status_code == 201, made.text
    again = admin.post(
        "/api/admin/users",
        json={"username": "sam", "password": "first-password", "role": "viewer"},
    )
    assert again.status_code == 422 and again.json()["detail"][0]["field"] == "username"
    (listed,) = admin.get("/api/admin/users").json()["users"]
    assert listed["username"] == "sam" and "password_hash" not in listed
    url = f"/api/admin/users/{made.json()['id']}"
    short = admin.post(url + "/password", json={"password": "short"})
    assert short.status_code == 422 and short.json()["detail"][0]["field"] == "password"
    assert admin.post(url + "/password", json={"password": "second-password"}).status_code == 200
    with engine.begin() as conn:
        assert authenticate_user(conn, username="sam", password="second-password", now=now)
    gone = admin.post(url + "/deactivate")
    assert gone.status_code == 200 and gone.json()["is_active"] is False
    with engine.begin() as conn:
        assert authenticate_user(conn, username="sam", password="second-password", now=now) is None
    assert _audit(engine) == [
        ("apikey:test-admin", "user.create", "user:sam"),
        ("apikey:test-admin", "user.reset_password", "user:sam"),
        ("apikey:test-admin", "user.deactivate", "user:sam"),
    ]


# ---------------------------------------------------------------- UI
def test_it_signs_out_an_open_session_of_a_deactivated_user(
    engine: Engine, logged_in_app: AppFactory, now: datetime
) -> None:
    at = logged_in_app(Role.RESPONDER)
    at.run()
    assert not at.exception and not [t for t in at.text_input if t.key == "login_username"]
    with engine.begin() as conn:
        user_id = at.session_state[USER_KEY].id
        deactivate_user(conn, user=user_id, actor="system:test", now=now)
    at.run()  # the next click of that browser
    assert USER_KEY not in at.session_state
    assert [t for t in at.text_input if t.key == "login_username"]  # the sign-in form


def test_it_applies_a_role_change_to_an_open_session(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    at = logged_in_app(Role.ADMIN)
    at.run()
    with engine.begin() as conn:
        conn.execute(users.update().values(role="viewer"))
    at.switch_page("pages/settings.py").run()
    assert at.session_state[USER_KEY].role is Role.VIEWER
    assert any("needs the **admin** role" in e.value for e in at.error)


def _click(at: AppTest, label: str) -> None:
    next(b for b in at.button if b.label == label).click().run()


def test_it_manages_keys_and_users_on_the_settings_page(
    engine: Engine, logged_in_app: AppFactory, now: datetime
) -> None:
    with engine.begin() as conn:
        kim = create_user(conn, username="kim", password="first-password", role=Role.VIEWER).id
    at = logged_in_app(Role.ADMIN)
    at.run()
    at.switch_page("pages/settings.py")
    at.query_params["tab"] = "API keys and users"
    at.run()
    me = at.session_state[USER_KEY]
    at.text_input(key="apikey_name").input("status page")
    at.selectbox(key="apikey_scope").select("read")
    _click(at, "Create key")
    (shown,) = [s.value for s in at.success if "not shown again" in s.value]
    key = shown.split("`")[1]
    with engine.connect() as conn:
        found = lookup_api_key(conn, key)
    assert found is not None and found.scope is ApiScope.READ

    at.selectbox(key="apikey_pick").select(found.id)
    at.number_input(key="apikey_new_limit").set_value(30)
    _click(at, "Save limit and expiry")
    with engine.connect() as conn:
        assert (
            conn.execute(
                select(api_keys.c.rate_limit_per_minute).where(api_keys.c.id == found.id)
            ).scalar_one()
            == 30
        )
    at.selectbox(key="apikey_pick").select(found.id).run()
    (asks,) = [m.value for m in at.markdown if "this cannot be undone" in m.value]
    assert asks.startswith(f"Revoke **{found.id} · status page \\(read\\)**?")  # asks first
    with engine.connect() as conn:
        assert lookup_api_key(conn, key) is not None  # nothing revoked before the answer
    _click(at, f"Revoke key {found.id}")
    with engine.connect() as conn:
        assert lookup_api_key(conn, key) is None

    at.selectbox(key="user_pick").select(kim)
    at.text_input(key="user_password").input("second-password")
    _click(at, "Reset password")
    at.selectbox(key="user_pick").select(kim)
    _click(at, "Deactivate user")
    at.selectbox(key="user_pick").select(me.id)
    _click(at, "Deactivate user")
    assert any("cannot deactivate yourself" in e.value for e in at.error)
    assert not at.exception
    at.text_input(key="new_user_name").input("lee")
    at.selectbox(key="new_user_role").select("responder")
    at.text_input(key="new_user_password").input("lee-password")
    _click(at, "Add user")
    assert not at.exception
    with engine.begin() as conn:
        lee = authenticate_user(conn, username="lee", password="lee-password", now=now)
    assert lee is not None and lee.role is Role.RESPONDER
    actor = f"user:{me.username}"
    assert [(a, action) for a, action, _ in _audit(engine)] == [
        (actor, "apikey.create"),
        (actor, "apikey.update"),
        (actor, "apikey.revoke"),
        (actor, "user.reset_password"),
        (actor, "user.deactivate"),
        (actor, "user.create"),
    ]
