"""Single sign-on (issue 18.1): Streamlit's OIDC login against a local identity provider.

The provider runs in this test process (discovery, authorize, token and JWKS endpoints, an
RS256 ID token signed with a key made here); the real UI (`streamlit run app.py`, started with
the secrets file `make run` writes from the MONITORING_OIDC_* settings) and Debian's headless
Chromium drive the whole flow: the button, /auth/login, the provider's authorize page, the
/oauth2callback token exchange, and the app mapping the verified e-mail to a user. The mapping
rules themselves are checked directly against the database (fast).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy import Engine, select

from jobs.supervisor import _oidc_secrets_args
from monitoring_core.accounts import add_user, deactivate_user, sso_sign_in
from monitoring_core.config import load_settings
from monitoring_core.enums import Role
from monitoring_core.schema import audit_log, users
from tests.test_browser_links import CHROMIUM, ROOT, _free_port, _wait_port, browser

__all__ = ["browser"]  # a fixture used by name below
PASSWORD = "correct horse battery"


# ---------------------------------------------------------------- the mapping rules
def _audit(conn: Any) -> list[tuple[str, str, dict[str, Any]]]:
    rows = conn.execute(
        select(audit_log.c.action, audit_log.c.target, audit_log.c.details).order_by(audit_log.c.id)
    ).all()
    return [(r.action, r.target, r.details or {}) for r in rows]


def test_a_verified_email_signs_in_the_user_it_names_with_their_role(
    engine: Engine, now: datetime
) -> None:
    with engine.begin() as conn:
        add_user(conn, username="Ana@Example.com", password=PASSWORD, role=Role.RESPONDER,
                 actor="system:test", now=now)  # fmt: skip
        answer = sso_sign_in(conn, email="ana@example.COM", verified=True,
                             auto_create_viewer=False, address="10.0.0.7", now=now)  # fmt: skip
        assert answer.user is not None and answer.user.username == "Ana@Example.com"
        assert answer.user.role is Role.RESPONDER and not answer.created
        assert _audit(conn)[-1] == (
            "auth.login", "user:Ana@Example.com", {"method": "oidc", "address": "10.0.0.7"}
        )  # fmt: skip


@pytest.mark.parametrize(
    ("email", "verified", "reason", "says"),
    [
        ("stranger@example.com", True, "unknown e-mail", "No account is set up for stranger@"),
        ("ana@example.com", False, "unverified e-mail", "has not verified ana@example.com"),
        ("old@example.com", True, "deactivated", "is deactivated"),
        (None, True, "no e-mail", "did not give an e-mail"),
    ],
)
def test_an_identity_without_an_active_account_is_refused_and_audited(
    engine: Engine, now: datetime, email: str | None, verified: bool, reason: str, says: str
) -> None:
    with engine.begin() as conn:
        for name in ("ana@example.com", "old@example.com"):
            add_user(conn, username=name, password=PASSWORD, role=Role.ADMIN,
                     actor="system:test", now=now)  # fmt: skip
        deactivate_user(conn, user="old@example.com", actor="system:test", now=now)
        answer = sso_sign_in(conn, email=email, verified=verified, auto_create_viewer=False,
                             address=None, now=now)  # fmt: skip
        assert answer.user is None and says in answer.refused
        action, _, details = _audit(conn)[-1]
        assert (action, details) == ("auth.login_failed", {"method": "oidc", "reason": reason})
        assert conn.execute(select(users.c.username).order_by(users.c.id)).scalars().all() == [
            "ana@example.com",
            "old@example.com",
        ]  # fmt: skip  nobody made


def test_auto_create_makes_a_viewer_never_more(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn:
        answer = sso_sign_in(conn, email="new@example.com", verified=True,
                             auto_create_viewer=True, address=None, now=now)  # fmt: skip
        assert answer.user is not None and answer.created
        assert answer.user.role is Role.VIEWER and answer.user.username == "new@example.com"
        assert [a for a, _, _ in _audit(conn)] == ["user.create", "auth.login"]
        again = sso_sign_in(conn, email="NEW@example.com", verified=True,
                            auto_create_viewer=True, address=None, now=now)  # fmt: skip
        assert again.user == answer.user and not again.created
        unverified = sso_sign_in(conn, email="other@example.com", verified=False,
                                 auto_create_viewer=True, address=None, now=now)  # fmt: skip
        assert unverified.user is None
        assert conn.execute(select(users.c.role)).scalars().all() == ["viewer"]


def test_make_run_writes_the_auth_block_from_the_settings(tmp_path: Path) -> None:
    env = {"MONITORING_DATA_DIR": str(tmp_path), "MONITORING_PUBLIC_URL": "https://mon.example"}
    assert _oidc_secrets_args(load_settings(env)) == []  # not configured: nothing written
    env |= {
        "MONITORING_OIDC_METADATA_URL": "https://idp.example/.well-known/openid-configuration",
        "MONITORING_OIDC_CLIENT_ID": "monitoring",
        "MONITORING_OIDC_CLIENT_SECRET": 's3cr"et',
    }
    args = _oidc_secrets_args(load_settings(env))
    path = Path(args[1])
    assert args[0] == "--secrets.files" and path.parent == tmp_path
    assert path.stat().st_mode & 0o777 == 0o600
    auth = tomllib.loads(path.read_text())["auth"]
    assert auth["redirect_uri"] == "https://mon.example/oauth2callback"
    assert auth["client_secret"] == 's3cr"et' and auth["client_id"] == "monitoring"
    assert len(auth["cookie_secret"]) >= 32
    again = tomllib.loads(Path(_oidc_secrets_args(load_settings(env))[1]).read_text())["auth"]
    assert again["cookie_secret"] == auth["cookie_secret"]  # kept: identity cookies survive
    assert 's3cr"et' not in repr(load_settings(env))


# ---------------------------------------------------------------- a local identity provider
@dataclass
class Provider:
    """An OpenID provider that signs in `email` without asking (the person's choice)."""

    url: str = ""
    client_id: str = "monitoring-ui"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    email: str = ""
    verified: bool = True
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_requests: int = 0


def _provider_handler(provider: Provider, key: Any) -> type[BaseHTTPRequestHandler]:
    from joserfc import jwt

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, body: dict[str, Any], status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/.well-known/openid-configuration":
                self._json({
                    "issuer": provider.url,
                    "authorization_endpoint": f"{provider.url}/authorize",
                    "token_endpoint": f"{provider.url}/token",
                    "jwks_uri": f"{provider.url}/jwks",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                })  # fmt: skip
            elif parts.path == "/jwks":
                self._json({"keys": [key.as_dict(private=False)]})
            elif parts.path == "/authorize":
                if query.get("client_id") != provider.client_id or "openid" not in query.get(
                    "scope", ""
                ):
                    self._json({"error": "invalid_request"}, 400)
                    return
                code = secrets.token_urlsafe(16)
                provider.codes[code] = {**query, "email": provider.email,
                                        "verified": provider.verified}  # fmt: skip
                target = query["redirect_uri"] + "?" + urlencode(
                    {"code": code, "state": query.get("state", "")}
                )  # fmt: skip
                self.send_response(302)
                self.send_header("Location", target)
                self.end_headers()
            else:
                self._json({"error": "not found"}, 404)

        def do_POST(self) -> None:
            provider.token_requests += 1
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            form = {k: v[0] for k, v in parse_qs(body).items()}
            basic = base64.b64encode(f"{provider.client_id}:{provider.client_secret}".encode())
            grant = provider.codes.pop(form.get("code", ""), None)
            if self.path != "/token" or self.headers.get("Authorization") != (
                f"Basic {basic.decode()}"
            ):
                self._json({"error": "invalid_client"}, 401)
                return
            if grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
                self._json({"error": "invalid_grant"}, 400)
                return
            issued = int(time.time())  # checked by the app against its own clock
            claims = {
                "iss": provider.url, "sub": grant["email"], "aud": provider.client_id,
                "iat": issued, "exp": issued + 300, "nonce": grant.get("nonce"),
                "email": grant["email"], "email_verified": grant["verified"],
                "name": grant["email"].split("@")[0],
            }  # fmt: skip
            id_token = jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)
            self._json({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                        "expires_in": 300, "id_token": id_token})  # fmt: skip

    return Handler


@pytest.fixture
def provider() -> Iterator[Provider]:
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, parameters={"kid": "test-key", "use": "sig"})
    found = Provider()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _provider_handler(found, key))
    found.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def sso_ui(database_url: str, provider: Provider, tmp_path: Path) -> Iterator[str]:
    """The real UI with single sign-on configured the way `make run` configures it."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEMO": "0",
        "MONITORING_DATA_DIR": str(tmp_path),
        "MONITORING_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "MONITORING_OIDC_METADATA_URL": f"{provider.url}/.well-known/openid-configuration",
        "MONITORING_OIDC_CLIENT_ID": provider.client_id,
        "MONITORING_OIDC_CLIENT_SECRET": provider.client_secret,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui.serve", "--server.port", str(port),
         "--server.headless", "true", "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
         *_oidc_secrets_args(load_settings(env))],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(15)


def _main_text(capture: Any, ws: Any) -> str:
    return str(capture._js(ws, "document.body.innerText"))


def _click(capture: Any, ws: Any, text: str) -> None:
    capture._wait_for(
        ws,
        f"[...document.querySelectorAll('button')].some(b => b.innerText.includes({text!r}))",
        60,
    )
    capture._js(
        ws,
        f"[...document.querySelectorAll('button')].find(b => b.innerText.includes({text!r}))"
        ".click()",
    )


def _wait_text(capture: Any, ws: Any, text: str) -> None:
    try:
        capture._wait_for(ws, f"document.body.innerText.includes({json.dumps(text)})", 60)
    except TimeoutError:
        raise AssertionError(f"waited for {text!r}; the page shows: "
                             f"{_main_text(capture, ws)[:800]!r}") from None  # fmt: skip


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium not installed: apt-get install chromium"
)
def test_single_sign_on_through_a_local_provider_in_a_real_browser(
    sso_ui: str, provider: Provider, browser: Any, engine: Engine, now: datetime
) -> None:
    capture, ws = browser
    with engine.begin() as conn:
        add_user(conn, username="ana@example.com", password=PASSWORD, role=Role.RESPONDER,
                 actor="system:test", now=now)  # fmt: skip
    provider.email = "ana@example.com"
    capture._go(ws, url=sso_ui)
    _click(capture, ws, "Sign in with single sign-on")  # -> /auth/login -> provider -> back
    _wait_text(capture, ws, "Signed in as ana@example.com (responder)")
    assert provider.token_requests == 1  # the code was exchanged server to server
    assert urlsplit(capture._js(ws, "location.href")).netloc == urlsplit(sso_ui).netloc
    with engine.connect() as conn:
        assert ("auth.login", "user:ana@example.com") in [(a, t) for a, t, _ in _audit(conn)]

    _click(capture, ws, "Sign out")  # ends the stored session and the identity cookie
    _wait_text(capture, ws, "Sign in with single sign-on")
    capture._go(ws, "Page.reload")
    time.sleep(1.5)
    _wait_text(capture, ws, "Sign in with single sign-on")  # not signed straight back in
    assert "Signed in as" not in _main_text(capture, ws)
    with engine.connect() as conn:
        assert (
            "auth.logout",
            "user:ana@example.com",
            {"reason": "sign-out", "method": "oidc"},
        ) in (_audit(conn))

    provider.email = "stranger@example.com"  # the provider knows them; this app does not
    _click(capture, ws, "Sign in with single sign-on")
    _wait_text(capture, ws, "No account is set up for stranger@example.com")
    assert "Signed in as" not in _main_text(capture, ws)
    with engine.connect() as conn:
        names = conn.execute(select(users.c.username)).scalars().all()
        refused = [d.get("reason") for a, _, d in _audit(conn) if a == "auth.login_failed"]
    assert names == ["ana@example.com"] and refused == ["unknown e-mail"]
