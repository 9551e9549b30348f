"""Issue 13's low items, each attacked: service routes behind a key, loopback binding, ping URLs
that ignore a forged Host header, the first-run credentials file, timestamps far in the
future, personal data the error scrubber must catch, and notification channels held to the
outbound target policy."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from monitoring_core.api.app import create_app
from monitoring_core.config import load_settings
from monitoring_core.errors.scrub import REDACTED, Scrubber, iban_valid
from monitoring_core.notify.transport import send
from monitoring_core.outbound import OutboundPolicy
from monitoring_core.schema import error_events, metric_points, notification_deliveries
from tests.serving import running_server

ROOT = Path(__file__).resolve().parent.parent
FAR = "2100-01-01T00:00:00Z"
SERVICE_ROUTES = ("/metrics", "/openapi.json", "/docs", "/redoc")


def _key(engine: Engine, scope: str) -> str:
    from monitoring_core.accounts import create_api_key
    from monitoring_core.enums import ApiScope

    with engine.begin() as conn:
        return create_api_key(conn, name=f"low-{scope}", scope=ApiScope(scope))


# ---------------------------------------------------------------- /metrics and /docs
@pytest.mark.parametrize("path", SERVICE_ROUTES)
def test_service_routes_need_a_read_key_by_default(
    api_server: str, engine: Engine, path: str
) -> None:
    anonymous = httpx.get(api_server + path)
    assert anonymous.status_code == 401
    assert "basic" in anonymous.headers["www-authenticate"].lower()  # a browser asks for it
    ingest = httpx.get(api_server + path, headers={"X-API-Key": _key(engine, "ingest")})
    assert ingest.status_code == 403
    # What a browser sends after the Basic prompt: the key as the password.
    basic = httpx.get(api_server + path, auth=("key", _key(engine, "read")))
    assert basic.status_code == 200, basic.text
    assert httpx.get(api_server + "/healthz").status_code == 200  # load balancers: open


def test_a_setting_opens_the_service_routes(engine: Engine, database_url: str) -> None:
    assert load_settings({}).open_service_routes is False
    assert load_settings({"MONITORING_OPEN_SERVICE_ROUTES": "1"}).open_service_routes is True
    settings = dataclasses.replace(
        load_settings({}), database_url=database_url, open_service_routes=True
    )
    with running_server(create_app(settings, engine)) as url:
        for path in SERVICE_ROUTES:
            assert httpx.get(url + path).status_code == 200, path
        assert "/api/monitoring/metrics" in httpx.get(url + "/openapi.json").json()["paths"]


# ---------------------------------------------------------------- loopback by default
def _outside_address() -> str | None:
    """This machine's address on its default route, when it has one besides loopback."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent for a UDP connect
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_api_listens_on_loopback_only_by_default(engine: Engine, database_url: str) -> None:
    outside = _outside_address()
    if outside is None:
        pytest.skip("this machine has no address besides loopback to probe from")
    assert load_settings({}).bind_host == "127.0.0.1"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "MONITORING_BIND_HOST"}
    env["DATABASE_URL"] = database_url
    api = subprocess.Popen(
        [sys.executable, "-m", "monitoring_core", "api", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.2)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{outside}:{port}/healthz", timeout=2)
    finally:
        api.terminate()
        api.wait(10)


def test_the_supervisor_starts_api_and_ui_on_the_bind_address() -> None:
    from jobs.supervisor import _children

    settings = load_settings({})
    children = _children(settings)
    api, ui = children["api"], children["ui"]
    assert api[api.index("--host") + 1] == "127.0.0.1"
    assert ui[ui.index("--server.address") + 1] == "127.0.0.1"
    wider = _children(load_settings({"MONITORING_BIND_HOST": "0.0.0.0"}))
    assert wider["ui"][wider["ui"].index("--server.address") + 1] == "0.0.0.0"


# ---------------------------------------------------------------- ping URLs
def test_ping_urls_come_from_the_public_url_not_a_forged_host_header(
    api_app: Any, api_server: str, engine: Engine
) -> None:
    admin = {"X-API-Key": _key(engine, "admin"), "Host": "attacker.example"}
    made = httpx.post(
        api_server + "/api/admin/monitoring/health/checks",
        headers=admin,
        json={
            "check_name": "nightly backup",
            "check_type": "heartbeat",
            "check_config": {"period_seconds": 600, "grace_seconds": 60},
            "service_name": "backups",
        },
    )
    assert made.status_code == 201, made.text
    public = api_app.state.settings.api_public_url
    assert made.json()["ping_url"].startswith(public + "/api/monitoring/heartbeat/")
    listed = httpx.get(api_server + "/api/admin/monitoring/health", headers=admin).json()
    urls = [c["ping_url"] for c in listed["checks"] if c["ping_url"]]
    assert urls and all(u.startswith(public) and "attacker" not in u for u in urls)


# ---------------------------------------------------------------- first-run credentials
def test_the_credentials_file_is_never_written_through_a_planted_link(
    engine: Engine, tmp_path: Path
) -> None:
    from jobs.supervisor import CREDENTIALS_FILE, first_run_credentials

    elsewhere = tmp_path / "world-readable.txt"
    elsewhere.write_text("untouched\n")
    elsewhere.chmod(0o644)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / CREDENTIALS_FILE).symlink_to(elsewhere)
    old_umask = os.umask(0)  # the widest a careless shell could set
    try:
        text = first_run_credentials(
            engine, dataclasses.replace(load_settings({}), data_dir=data_dir)
        )
    finally:
        os.umask(old_umask)
    assert text is not None and "Ingest key" in text
    written = data_dir / CREDENTIALS_FILE
    assert not written.is_symlink() and written.read_text() == text
    assert written.stat().st_mode & 0o777 == 0o600
    assert elsewhere.read_text() == "untouched\n"


# ---------------------------------------------------------------- timestamps far ahead
@pytest.mark.parametrize(
    ("path", "item"),
    [
        ("/api/monitoring/metrics", {"metric_name": "x", "metric_value": 1, "timestamp": FAR}),
        (
            "/api/monitoring/performance",
            {
                "method": "GET",
                "endpoint": "/x",
                "status_code": 200,
                "response_time_ms": 5,
                "timestamp": FAR,
            },
        ),
        ("/api/monitoring/business-events", {"event_type": "search", "timestamp": FAR}),
        (
            "/api/monitoring/errors",
            {
                "error_type": "E",
                "message": "m",
                "service_name": "s",
                "level": "api",
                "timestamp": FAR,
            },
        ),
    ],
    ids=["metrics", "performance", "business-events", "errors"],
)
def test_every_ingest_route_refuses_a_timestamp_far_in_the_future(
    api_server: str, engine: Engine, path: str, item: dict[str, Any]
) -> None:
    reply = httpx.post(
        api_server + path, json=[item], headers={"X-API-Key": _key(engine, "ingest")}
    )
    assert reply.status_code == 422, reply.text
    assert any("timestamp" in d["field"] for d in reply.json()["detail"]), reply.text


def test_pushgateway_and_sentry_never_store_a_future_time(api_server: str, engine: Engine) -> None:
    key = _key(engine, "ingest")
    pushed = httpx.put(
        api_server + "/metrics/job/clock",
        content="clock_skew 1 4102444800000\n",  # a sample stamped 2100-01-01
        headers={"X-API-Key": key, "Content-Type": "text/plain"},
    )
    assert pushed.status_code == 400 and "timestamp" in pushed.text
    before = datetime.now(UTC)
    event = {
        "event_id": uuid.uuid4().hex,
        "timestamp": FAR,
        "platform": "python",
        "level": "error",
        "exception": {"values": [{"type": "ClockError", "value": "from the future"}]},
    }
    stored = httpx.post(
        api_server + "/api/1/store/",
        json=event,
        headers={"X-Sentry-Auth": f"Sentry sentry_key={key}"},
    )
    assert stored.status_code == 200, stored.text
    with engine.connect() as conn:
        times = conn.execute(select(error_events.c.time)).scalars().all()
        assert conn.execute(select(metric_points.c.time)).first() is None
    assert len(times) == 1 and before - timedelta(minutes=1) <= times[0] <= before + timedelta(
        minutes=5
    )


# ---------------------------------------------------------------- the scrubber
@pytest.mark.parametrize(
    "secret",
    [
        "GB29 NWBK 6016 1331 9268 19",  # IBAN, printed
        "DE89370400440532013000",  # IBAN, run together
        "FR1420041010050500013M02606",  # IBAN with a letter in the account number
        "QQ 12 34 56 C",  # UK national insurance number (HMRC's example)
        "AB123456D",
        "078-05-1120",  # US SSN
        "219 09 9999",
        "jane.doe+wedding@example.co.uk",
    ],
)
def test_the_scrubber_masks_bank_and_national_numbers_and_e_mails(secret: str) -> None:
    scrubbed = Scrubber().text(f"refund failed for {secret} at checkout")
    assert secret not in scrubbed and REDACTED in scrubbed
    assert scrubbed.startswith("refund failed for ") and scrubbed.endswith(" at checkout")


@pytest.mark.parametrize(
    "harmless",
    [
        "order GB29 NWBK 6016 1331 9268 18 retried",  # bad IBAN checksum: not an IBAN
        "build 000-12-3456 failed",  # never a valid SSN area
        "error code AB12 in module QQ",
        "request 4f9a8c2e took 1234 ms",
    ],
)
def test_the_scrubber_leaves_look_alikes(harmless: str) -> None:
    assert Scrubber().text(harmless) == harmless


def test_iban_checksum() -> None:
    assert iban_valid("GB29NWBK60161331926819") and not iban_valid("GB29NWBK60161331926818")


def test_user_ids_holding_personal_data_are_stored_hashed_but_still_count_apart(
    api_server: str, engine: Engine
) -> None:
    key = _key(engine, "ingest")
    users = ["jane@example.com", "JANE@example.com", "sam@example.com", "user-42", "QQ123456C"]
    items = [
        {
            "error_type": "PaymentError",
            "message": f"refund to GB29 NWBK 6016 1331 9268 19 failed ({n})",
            "service_name": "payments",
            "level": "api",
            "user_id": user,
        }
        for n, user in enumerate(users)
    ]
    reply = httpx.post(
        api_server + "/api/monitoring/errors", json=items, headers={"X-API-Key": key}
    )
    assert reply.status_code == 202, reply.text
    sentry_user = {
        "event_id": uuid.uuid4().hex,
        "platform": "python",
        "level": "error",
        "user": {"username": "olivia@example.org", "ip_address": "{{auto}}"},
        "exception": {"values": [{"type": "PaymentError", "value": "declined"}]},
    }
    stored = httpx.post(
        api_server + "/api/1/store/",
        json=sentry_user,
        headers={"X-Sentry-Auth": f"Sentry sentry_key={key}"},
    )
    assert stored.status_code == 200, stored.text
    with engine.connect() as conn:
        rows = conn.execute(select(error_events.c.user_id, error_events.c.message)).all()
    text = repr(rows)
    for secret in ("jane@", "JANE@", "sam@", "olivia@", "QQ123456C", "NWBK"):
        assert secret not in text
    ids = [r.user_id for r in rows]
    assert "user-42" in ids  # an ordinary id stays as it is
    hashed = [i for i in ids if i.startswith("pii-sha256:")]
    assert len(hashed) == 5 and len(set(hashed)) == 4  # jane twice (case aside), sam, NI, olivia


# ---------------------------------------------------------------- channels and the policy
@pytest.mark.parametrize(
    "url",
    [
        "json://169.254.169.254/latest/meta-data",
        "jsons://metadata.google.internal/computeMetadata/v1/",
        "apprise://[fe80::1]/notify",
        "json://100.100.100.200/",
    ],
)
def test_a_channel_to_a_metadata_address_is_refused_when_saved(
    api_server: str, engine: Engine, url: str
) -> None:
    reply = httpx.post(
        api_server + "/api/admin/channels",
        json={"name": "exfil", "url": url},
        headers={"X-API-Key": _key(engine, "admin")},
    )
    assert reply.status_code == 422, reply.text
    assert "outbound target policy" in reply.text


def test_cloud_services_addressed_by_tokens_are_not_resolved_as_hosts(
    api_server: str, engine: Engine
) -> None:
    reply = httpx.post(
        api_server + "/api/admin/channels",
        json={"name": "slack", "url": "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"},
        headers={"X-API-Key": _key(engine, "admin")},
    )
    assert reply.status_code == 201, reply.text


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[bytes]]]:
    got: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(self.rfile.read(int(self.headers.get("content-length", 0))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"json://127.0.0.1:{server.server_port}/hook", got
    server.shutdown()
    server.server_close()


def test_a_send_is_checked_against_the_policy_at_send_time(
    receiver: tuple[str, list[bytes]],
) -> None:
    url, got = receiver
    assert send(url, title="t", body="b", policy=OutboundPolicy()).ok and len(got) == 1
    refused = send(url, title="t", body="b", policy=OutboundPolicy(deny_private=True))
    assert not refused.ok and "outbound target policy" in (refused.error or "")
    assert len(got) == 1  # nothing reached the receiver
    listed = OutboundPolicy(deny_private=True, allow=("127.0.0.0/8",))
    assert send(url, title="t", body="b", policy=listed).ok and len(got) == 2


def test_a_saved_channel_whose_target_the_policy_now_refuses_fails_its_delivery(
    api_server: str,
    engine: Engine,
    receiver: tuple[str, list[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, got = receiver
    admin = {"X-API-Key": _key(engine, "admin")}
    made = httpx.post(
        api_server + "/api/admin/channels", json={"name": "ops", "url": url}, headers=admin
    )
    assert made.status_code == 201, made.text
    # The operator turns private targets off after the channel was saved.
    monkeypatch.setenv("MONITORING_OUTBOUND_DENY_PRIVATE", "1")
    tested = httpx.post(f"{api_server}/api/admin/channels/{made.json()['id']}/test", headers=admin)
    assert tested.status_code == 200
    assert tested.json()["ok"] is False and "outbound target policy" in tested.json()["error"]
    assert got == []
    with engine.connect() as conn:
        status, error = conn.execute(
            select(notification_deliveries.c.status, notification_deliveries.c.error)
        ).one()
    assert status == "failed" and "private or loopback" in error


def test_the_self_scrape_of_metrics_sends_its_read_key_as_basic_auth(
    api_server: str, engine: Engine, now: datetime
) -> None:
    from monitoring_core.collectors.scrape import ScrapeCollector, ScrapeError
    from monitoring_core.collectors.store import public_collector

    key = _key(engine, "read")
    bare = ScrapeCollector(name="monitoring-api", url=f"{api_server}/metrics")
    with pytest.raises(ScrapeError, match="HTTP 401"):
        bare.collect(now)
    url = api_server.replace("://", f"://scrape:{key}@") + "/metrics"
    points = ScrapeCollector(name="monitoring-api", url=url).collect(now)
    assert points and all(key not in str(p.dimensions) for p in points)
    assert {p.dimensions["instance"] for p in points} == {api_server.split("://")[1]}
    shown = public_collector({"kind": "prometheus_scrape", "url": url})
    assert key not in shown["url"] and shown["url"].endswith("/metrics")


def test_the_demo_scrapes_the_api_with_a_key_of_its_own(engine: Engine) -> None:
    from monitoring_core.demo.health import _collectors
    from monitoring_core.schema import api_keys, sql_collectors

    with engine.begin() as conn:
        _collectors(conn)
        url = conn.execute(
            select(sql_collectors.c.url).where(sql_collectors.c.name == "monitoring-api")
        ).scalar_one()
        name, scope = conn.execute(select(api_keys.c.name, api_keys.c.scope)).one()
    assert scope == "read" and "scrape" in name
    assert url.startswith("http://scrape:mk_") and url.endswith("/metrics")
