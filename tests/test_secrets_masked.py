"""Secrets stay secret (issue 13.9): generic webhook channel tokens, HTTP-check headers and
heartbeat ping tokens are masked for everyone but admins editing them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from monitoring_core.enums import Role
from monitoring_core.health.queries import check_summaries, masked_config
from monitoring_core.health.service import save_check
from monitoring_core.notify.channels import create_channel, list_channels, mask_url

AppFactory = Callable[[Role | None], AppTest]
SECRET = "s3cr3tT0ken"


@pytest.mark.parametrize(
    "url",
    [
        f"json://hooks.example.com/alerts?+Authorization=Bearer%20{SECRET}",
        f"jsons://hooks.example.com/in/{SECRET}",
        f"jsons://bot:{SECRET}@hooks.example.com:8443/in",
        f"xml://hooks.example.com/in?+X-Token={SECRET}",
        f"xmls://hooks.example.com/in?-apikey={SECRET}",
        f"form://hooks.example.com/in?:token={SECRET}",
        f"forms://hooks.example.com/{SECRET}/in",
        f"discord://1234567/{SECRET}",  # Apprise's own masking, kept
    ],
)
def test_it_masks_every_secret_of_a_channel_url(url: str) -> None:
    shown = mask_url(url)
    assert SECRET not in shown
    assert "hooks.example.com" in shown or shown.startswith("discord://")


def test_it_lists_channels_without_their_tokens(engine: Engine) -> None:
    url = f"jsons://hooks.example.com/in/{SECRET}?+Authorization=Bearer%20{SECRET}"
    with engine.begin() as conn:
        create_channel(conn, body={"name": "ops webhook", "url": url})
        (shown,) = list_channels(conn)
    assert SECRET not in str(shown)
    assert shown["url"].startswith("jsons://hooks.example.com/")


HTTP_CONFIG = {
    "url": f"https://monitor:{SECRET}@vendors.example.com/health",
    "expected_status": 200,
    "headers": {"Authorization": f"Bearer {SECRET}", "X-Api-Key": SECRET, "Accept": "text/html"},
}


@pytest.mark.parametrize(
    ("reveal", "headers"),
    [
        (False, {"Authorization": "****", "X-Api-Key": "****", "Accept": "text/html"}),
        (True, HTTP_CONFIG["headers"]),
    ],
)
def test_it_masks_http_check_headers_unless_revealed(reveal: bool, headers: dict) -> None:
    shown = masked_config("http", HTTP_CONFIG, reveal=reveal)
    assert shown["headers"] == headers
    assert (SECRET in shown["url"]) is reveal


def _checks(engine: Engine, now: datetime) -> None:
    bodies: list[dict[str, Any]] = [
        {"check_name": "vendors", "check_type": "http", "check_config": HTTP_CONFIG},
        {
            "check_name": "nightly backup",
            "check_type": "heartbeat",
            "check_config": {"period_seconds": 600, "grace_seconds": 60},
        },
    ]
    with engine.begin() as conn:
        for body in bodies:
            save_check(conn, body, check_id=None, actor="system:test", now=now)


def _token(engine: Engine) -> str:
    with engine.connect() as conn:
        return conn.exec_driver_sql(
            "SELECT ping_token FROM health_checks WHERE ping_token IS NOT NULL"
        ).scalar_one()


def test_it_masks_check_secrets_in_summaries_for_everyone_but_admins(
    engine: Engine, now: datetime
) -> None:
    _checks(engine, now)
    token = _token(engine)
    with engine.connect() as conn:
        masked = check_summaries(conn, now, base_url="http://mon")
        revealed = check_summaries(conn, now, base_url="http://mon", reveal_secrets=True)
    assert SECRET not in str(masked) and token not in str(masked)
    pings = {c["check_name"]: c["ping_url"] for c in masked}
    assert pings["nightly backup"] == f"http://mon/api/monitoring/heartbeat/{token[:4]}****"
    assert SECRET in str(revealed) and token in str(revealed)


def test_it_shows_admins_the_ping_url_through_the_admin_api(
    api_server: str, admin_key: str, engine: Engine, now: datetime
) -> None:
    _checks(engine, now)
    reply = httpx.get(f"{api_server}/api/admin/monitoring/health", headers={"X-API-Key": admin_key})
    pings = [c["ping_url"] for c in reply.json()["checks"] if c["ping_url"]]
    assert pings == [f"{api_server}/api/monitoring/heartbeat/{_token(engine)}"]


@pytest.mark.parametrize(("role", "shown"), [(Role.VIEWER, False), (Role.ADMIN, True)])
def test_it_shows_the_ping_token_on_the_health_page_to_admins_only(
    engine: Engine, logged_in_app: AppFactory, now: datetime, role: Role, shown: bool
) -> None:
    _checks(engine, now)
    at = logged_in_app(role)
    at.run()
    at.switch_page("pages/health.py").run()
    with engine.connect() as conn:  # the Health page's check picker holds check ids
        beat = conn.exec_driver_sql(
            "SELECT id FROM health_checks WHERE check_name = 'nightly backup'"
        ).scalar_one()
    at.selectbox(key="url_check").select(beat).run()
    assert not at.exception
    page = " ".join(str(c.value) for c in at.code) + " ".join(str(m.value) for m in at.markdown)
    assert "/api/monitoring/heartbeat/" in page
    assert (_token(engine) in page) is shown


def test_it_shows_a_self_database_check_as_self() -> None:
    assert masked_config("database", {"url": "self", "query": "SELECT 1"})["url"] == "self"
    shown = masked_config("database", {"url": "postgresql://u:pw@db/x"})["url"]
    assert "pw" not in shown and shown.startswith("postgresql://u:")
