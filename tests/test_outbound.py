"""The outbound-target policy: no link-local or metadata targets, no redirects unless asked,
no fetched body where others read it (issue 13, item 5). Real local HTTP servers; the
metadata address is never reached because the policy refuses it before connecting."""

from __future__ import annotations

import ipaddress
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from hashlib import sha256
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from monitoring_core import outbound
from monitoring_core.collectors.scrape import ScrapeCollector, ScrapeError
from monitoring_core.config import load_settings
from monitoring_core.health.probes import run_probe
from monitoring_core.health.validate import validate_check
from monitoring_core.incidents import runbooks
from monitoring_core.incidents.service import IncidentInvalid
from monitoring_core.ingest.validate import InvalidItems
from monitoring_core.outbound import OutboundPolicy, TargetRefused, check_target, refusal

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
METADATA = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
SECRET = b"AKIA-SECRET-KEY first line of an internal page\nsecond line\n"
DEFAULT = OutboundPolicy()
NO_PRIVATE = OutboundPolicy(deny_private=True)


@pytest.mark.parametrize(
    ("host", "address", "policy", "refused"),
    [
        ("169.254.169.254", "169.254.169.254", DEFAULT, True),
        ("x.test", "169.254.10.1", DEFAULT, True),
        ("x.test", "fe80::1", DEFAULT, True),
        ("x.test", "::ffff:169.254.169.254", DEFAULT, True),  # IPv4-mapped
        ("x.test", "fd00:ec2::254", DEFAULT, True),
        ("x.test", "100.100.100.200", DEFAULT, True),
        ("metadata.google.internal", "10.0.0.5", DEFAULT, True),
        ("x.test", "0.0.0.0", DEFAULT, True),
        ("x.test", "127.0.0.1", DEFAULT, False),  # self-hosted targets live here
        ("x.test", "10.1.2.3", DEFAULT, False),
        ("x.test", "93.184.216.34", DEFAULT, False),
        ("x.test", "127.0.0.1", NO_PRIVATE, True),
        ("x.test", "192.168.1.9", NO_PRIVATE, True),
        ("x.test", "fc00::9", NO_PRIVATE, True),
        ("x.test", "93.184.216.34", NO_PRIVATE, False),
        ("x.test", "10.1.2.3", OutboundPolicy(True, ("10.0.0.0/8",)), False),
        ("x.test", "169.254.169.254", OutboundPolicy(False, ("169.254.0.0/16",)), True),
        ("api.example.com", "93.184.216.34", OutboundPolicy(False, ("api.example.com",)), False),
        ("other.com", "93.184.216.34", OutboundPolicy(False, ("api.example.com",)), True),
        ("a.b.example.com", "93.184.216.34", OutboundPolicy(False, (".example.com",)), False),
        ("example.com.evil", "93.184.216.34", OutboundPolicy(False, (".example.com",)), True),
    ],
)
def test_it_decides_targets(host: str, address: str, policy: OutboundPolicy, refused: bool) -> None:
    assert (refusal(host, ipaddress.ip_address(address), policy) is not None) is refused


@pytest.mark.parametrize(
    ("url", "answers"),
    [
        ("file:///etc/passwd", []),
        ("gopher://127.0.0.1:6379/_FLUSHALL", []),
        ("http:///nohost", []),
        ("http://rebind.test/", ["93.184.216.34", "169.254.169.254"]),  # one bad answer is enough
        ("http://[fe80::1]:8080/", []),
        ("http://metadata/computeMetadata/v1/", ["10.0.0.5"]),
    ],
)
def test_it_refuses_urls(url: str, answers: list[str]) -> None:
    with pytest.raises(TargetRefused):
        check_target(url, DEFAULT, resolve=lambda host, port: answers)


def test_it_reads_the_policy_from_the_environment() -> None:
    env = {
        "MONITORING_OUTBOUND_DENY_PRIVATE": "1",
        "MONITORING_OUTBOUND_ALLOW": "10.0.0.0/8, .x.test,",
    }
    assert outbound.current_policy(load_settings(env)) == OutboundPolicy(
        True, ("10.0.0.0/8", ".x.test")
    )
    assert outbound.current_policy(load_settings({})) == DEFAULT


@contextmanager
def site() -> Iterator[str]:
    """/secret answers SECRET; /hop redirects to the metadata address; /to-ok to /secret."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path in ("/hop", "/to-ok"):
                self.send_response(302)
                where = METADATA if self.path == "/hop" else "/secret"
                self.send_header("Location", where)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(SECRET)))
            self.end_headers()
            self.wfile.write(SECRET)

        do_POST = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_it_checks_every_hop_of_a_followed_redirect() -> None:
    with site() as base:
        request = urllib.request.Request(base + "/hop")
        with pytest.raises(TargetRefused):
            outbound.open_url(request, timeout=5, policy=DEFAULT, follow_redirects=True)
        with pytest.raises(urllib.error.HTTPError) as info:  # not followed: the 302 is the answer
            outbound.open_url(request, timeout=5, policy=DEFAULT)
        assert info.value.code == 302


def test_it_refuses_metadata_targets_and_headers_in_checks() -> None:
    refused = run_probe("http", {"url": METADATA}, 2)
    assert not refused.success and refused.message.startswith("refused:")
    with site() as base:
        header = run_probe(
            "http", {"url": base + "/secret", "headers": {"Metadata-Flavor": "Google"}}, 2
        )
    assert not header.success and "Metadata-Flavor" in header.message
    tcp = run_probe("tcp", {"host": "169.254.169.254", "port": 80}, 2)
    assert not tcp.success and tcp.message.startswith("refused:")


def test_it_follows_a_check_redirect_only_when_the_check_says_so() -> None:
    with site() as base:
        plain = run_probe("http", {"url": base + "/to-ok"}, 2)
        followed = run_probe("http", {"url": base + "/to-ok", "follow_redirects": True}, 2)
        to_metadata = run_probe("http", {"url": base + "/hop", "follow_redirects": True}, 2)
    assert (plain.success, plain.message) == (False, "HTTP 302 (expected 200)")
    assert followed.success
    assert not to_metadata.success and to_metadata.message.startswith("refused:")


def test_it_refuses_private_targets_when_the_setting_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MONITORING_OUTBOUND_DENY_PRIVATE", "1")
    with site() as base:
        outcome = run_probe("http", {"url": base + "/secret"}, 2)
        monkeypatch.setenv("MONITORING_OUTBOUND_ALLOW", "127.0.0.1/32")
        allowed = run_probe("http", {"url": base + "/secret"}, 2)
    assert not outcome.success and "private or loopback" in outcome.message
    assert allowed.success


def test_it_keeps_a_runbook_answer_out_of_the_timeline() -> None:
    with site() as base:
        ok, output = runbooks._http({"url": base + "/secret"})
        hop_ok, hop = runbooks._http({"url": base + "/hop", "expected_status": 200})
        followed_ok, followed = runbooks._http({"url": base + "/hop", "follow_redirects": True})
    assert ok and "-> 200" in output
    assert f"{len(SECRET)} bytes, sha256 {sha256(SECRET).hexdigest()}" in output
    assert b"AKIA" not in output.encode() and "first line" not in output
    assert not hop_ok and "-> 302" in hop  # a redirect is not followed
    assert not followed_ok and "refused" in followed and "AKIA" not in followed


def test_it_keeps_a_scraped_page_out_of_last_error() -> None:
    with site() as base:
        with pytest.raises(ScrapeError) as info:
            ScrapeCollector(name="s", url=base + "/secret").collect(NOW)
        with pytest.raises(ScrapeError) as hop:
            ScrapeCollector(name="s", url=base + "/hop").collect(NOW)
    assert "AKIA" not in str(info.value) and "first line" not in str(info.value)
    assert "line 1" in str(info.value) and sha256(SECRET).hexdigest() in str(info.value)
    assert str(hop.value) == "HTTP 302"
    with pytest.raises(TargetRefused):
        ScrapeCollector(name="s", url=METADATA).collect(NOW)


@pytest.mark.parametrize(
    ("check_type", "config", "field"),
    [
        ("http", {"url": METADATA}, "check_config.url"),
        ("http", {"url": "http://[fe80::1]/"}, "check_config.url"),
        ("http", {"url": "http://metadata.google.internal/"}, "check_config.url"),
        (
            "http",
            {"url": "http://127.0.0.1/", "headers": {"metadata-flavor": "Google"}},
            "check_config.headers",
        ),
        (
            "http",
            {"url": "http://127.0.0.1/", "follow_redirects": "yes"},
            "check_config.follow_redirects",
        ),
        ("tcp", {"host": "169.254.169.254", "port": 80}, "check_config.host"),
    ],
)
def test_it_refuses_metadata_checks_when_they_are_made(
    check_type: str, config: dict, field: str
) -> None:
    body = {"check_name": "c", "check_type": check_type, "check_config": config}
    with pytest.raises(InvalidItems) as info:
        validate_check(body)
    assert field in [e.field for e in info.value.errors]


def test_it_refuses_a_runbook_step_aimed_at_metadata() -> None:
    step = {"title": "x", "kind": "http", "config": {"url": METADATA}}
    with pytest.raises(IncidentInvalid) as info:
        runbooks.validate_steps([step])
    assert [p["field"] for p in info.value.problems] == ["steps[0].config.url"]
