"""Pure error-tracking rules: scrubbing, grouping, severity, envelopes, Sentry events, items."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import brotli
import orjson
import pytest

from monitoring_core.errors.envelope import (
    BodyTooLarge,
    EnvelopeError,
    UnsupportedEncoding,
    decompress,
    parse_envelope,
)
from monitoring_core.errors.fingerprint import (
    culprit,
    fingerprint_error,
    frames_from_stack_trace,
    normalize_message,
)
from monitoring_core.errors.rules import compare_releases, is_regression, next_status
from monitoring_core.errors.scrub import REDACTED, Scrubber, luhn_valid
from monitoring_core.errors.sentry import event_to_error, infer_level
from monitoring_core.errors.severity import classify_severity
from monitoring_core.errors.validate import parse_error_items
from monitoring_core.flows.error_ingest import prepare
from monitoring_core.ingest.validate import InvalidItems

LONDON = ZoneInfo("Europe/London")
SATURDAY = datetime(2026, 6, 6, 14, 0, tzinfo=UTC)
WEDNESDAY = datetime(2026, 6, 3, 14, 0, tzinfo=UTC)


# ---------------------------------------------------------------- scrubbing
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Authorization: Bearer abc.DEF-123_xyz", "Authorization: Bearer [REDACTED]"),
        ("auth failed: Basic dXNlcjpwYXNzMTIz", "auth failed: Basic [REDACTED]"),
        ("Basic authentication failed", "Basic authentication failed"),
        ("login password=hunter2 user=bob", "login password=[REDACTED] user=bob"),
        ('{"api_key": "abc123"}', '{"api_key": "[REDACTED]"}'),
        ("GET /cb?token=s3cr3t&page=2", "GET /cb?token=[REDACTED]&page=2"),
        ("stripe key sk_live_4eC39HqLyjWDarjtT1zdp7dc used", f"stripe key {REDACTED} used"),
        ("aws AKIAIOSFODNN7EXAMPLE", f"aws {REDACTED}"),
        ("postgres://app:pa55word@db:5432/x", "postgres://app:[REDACTED]@db:5432/x"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_part-1", f"jwt {REDACTED}"),
        ("card 4242 4242 4242 4242 declined", f"card {REDACTED} declined"),
        ("card 4111-1111-1111-1111", f"card {REDACTED}"),
        ("order 4242424242424241 failed", "order 4242424242424241 failed"),  # fails Luhn
        ("mail anna.smith+wed@example.co.uk bounced", f"mail {REDACTED} bounced"),
        ("call +44 20 7946 0958 now", f"call {REDACTED} now"),
        ("call 020 7946 0958", f"call {REDACTED}"),
        ("us (555) 123-4567", f"us {REDACTED}"),
        ("us 555-123-4567", f"us {REDACTED}"),
        ("user 123456789 not found", "user 123456789 not found"),
        ("at 2026-06-06T12:00:00Z took 1500 ms", "at 2026-06-06T12:00:00Z took 1500 ms"),
        ("id 550e8400-e29b-41d4-a716-446655440000", "id 550e8400-e29b-41d4-a716-446655440000"),
        ("version 1.2.3 on 10.0.0.12", "version 1.2.3 on 10.0.0.12"),
    ],
)
def test_it_scrubs_text(raw: str, expected: str) -> None:
    assert Scrubber().text(raw) == expected


def test_it_scrubs_nested_data_by_key_and_value() -> None:
    data = {
        "user": {"email": "a@b.com", "id": "u1"},
        "password": "hunter2",
        "headers": [["Authorization", "Bearer xyz12345678"], ["Accept", "json"]],
        "Set-Cookie": "sid=1",
        "list": ["ok", "call +1 415 555 2671"],
        "count": 3,
        "empty_token": None,
    }
    out = Scrubber().data(data)
    assert out == {
        "user": {"email": REDACTED, "id": "u1"},
        "password": REDACTED,
        "headers": [["Authorization", REDACTED], ["Accept", "json"]],
        "Set-Cookie": REDACTED,
        "list": ["ok", f"call {REDACTED}"],
        "count": 3,
        "empty_token": None,
    }
    assert data["password"] == "hunter2"  # a copy, the input is untouched


def test_it_scrubs_extra_configured_keys() -> None:
    assert Scrubber(extra_keys=["Wedding-Venue"]).data({"wedding_venue_code": "X1"}) == {
        "wedding_venue_code": REDACTED
    }
    assert Scrubber().data({"wedding_venue_code": "X1"}) == {"wedding_venue_code": "X1"}


@pytest.mark.parametrize(
    ("digits", "valid"), [("4242424242424242", True), ("4242424242424241", False), ("0", True)]
)
def test_it_checks_luhn(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


# ---------------------------------------------------------------- grouping
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("User 42 not found", "User <num> not found"),
        ("Order 8f14e45f-ceea-467f-a8f8-4b8fa2c4e0b1 failed", "Order <uuid> failed"),
        ("GET https://api.x.com/v1/a?id=5 timed out", "GET <url> timed out"),
        ("mail to anna@example.com bounced", "mail to <email> bounced"),
        ("connect to 10.1.2.3:5432 refused", "connect to <ip> refused"),
        ("object at 0x7f3a2b1c0d", "object at <hex>"),
        ("hash a1b2c3d4e5f6 missing", "hash <hex> missing"),
        ("due 2026-06-06T12:00:00Z passed", "due <date> passed"),
        ("at 12:30:01 retry 3.5s", "at <date> retry <num>s"),
        ("user_17 in  utf8   mode", "user_<num> in utf8 mode"),
        ("[REDACTED] rejected", "[REDACTED] rejected"),
    ],
)
def test_it_normalizes_messages(raw: str, expected: str) -> None:
    assert normalize_message(raw) == expected


PY_TRACE = """Traceback (most recent call last):
  File "/srv/app/payments/charge.py", line 12, in charge
    stripe.Charge.create()
  File "/usr/lib/python3.11/site-packages/stripe/api.py", line 99, in create
    raise CardError()
stripe.error.CardError: declined"""
JS_TRACE = """TypeError: x is undefined
    at submitRsvp (https://app.example.com/static/rsvp.js:10:5)
    at HTMLFormElement.onsubmit (https://app.example.com/static/form.js:3:1)
    at node_modules/react-dom/index.js:1:1"""


def _group(error_type: str, message: str, trace: str | None = None) -> str:
    return fingerprint_error(error_type, normalize_message(message), frames_from_stack_trace(trace))


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (
            ("KeyError", "User 1 not found", PY_TRACE),
            ("KeyError", "User 2 not found", PY_TRACE),
            True,
        ),
        (
            ("ValueError", "bad id 8f14e45f-ceea-467f-a8f8-4b8fa2c4e0b1", None),
            ("ValueError", "bad id 11111111-2222-3333-4444-555555555555", None),
            True,
        ),
        (("KeyError", "x failed", PY_TRACE), ("TypeError", "x failed", PY_TRACE), False),
        (("KeyError", "x failed", PY_TRACE), ("KeyError", "x failed", JS_TRACE), False),
        (("KeyError", "x failed", None), ("KeyError", "y failed", None), False),
        # A different line number of the same function is the same bug.
        (
            ("KeyError", "x", PY_TRACE),
            ("KeyError", "x", PY_TRACE.replace("line 12", "line 14")),
            True,
        ),
    ],
)
def test_it_groups_same_bugs_together(a: tuple, b: tuple, same: bool) -> None:
    assert (_group(*a) == _group(*b)) is same


def test_it_lets_a_client_fingerprint_win() -> None:
    frames = frames_from_stack_trace(PY_TRACE)
    default = fingerprint_error("KeyError", "x", frames)
    assert fingerprint_error("KeyError", "x", frames, ["checkout"]) == fingerprint_error(
        "TypeError", "y", [], ["checkout"]
    )
    assert fingerprint_error("KeyError", "x", frames, ["checkout"]) != default
    with_default = fingerprint_error("KeyError", "x", frames, ["{{ default }}", "eu"])
    assert with_default != default
    assert with_default != fingerprint_error("TypeError", "x", frames, ["{{ default }}", "eu"])


def test_it_parses_python_and_js_frames() -> None:
    py = frames_from_stack_trace(PY_TRACE)
    assert [(f["function"], f["in_app"]) for f in py] == [("charge", True), ("create", False)]
    assert culprit(py) == "charge in charge"
    js = frames_from_stack_trace(JS_TRACE)
    assert [f["function"] for f in js] == ["?", "HTMLFormElement.onsubmit", "submitRsvp"]
    assert [f["in_app"] for f in js] == [False, True, True]
    assert frames_from_stack_trace(None) == []


# ---------------------------------------------------------------- severity
@pytest.mark.parametrize(
    ("level", "error_type", "service", "endpoint", "at", "requested", "expected"),
    [
        ("frontend", "TypeError", "web", "/gallery", WEDNESDAY, None, "low"),
        ("api", "KeyError", "guests", "/api/guests", WEDNESDAY, None, "medium"),
        ("database", "QueryCanceled", "guests", None, WEDNESDAY, None, "high"),
        ("third_party", "Timeout", "maps", None, WEDNESDAY, None, "medium"),
        ("api", "OperationalError", "guests", None, WEDNESDAY, None, "high"),
        ("api", "CardError", "payments", "/api/pay", WEDNESDAY, None, "medium"),
        ("api", "CardError", "payments", "/api/pay", SATURDAY, None, "critical"),
        ("frontend", "TypeError", "web", "/rsvp/submit", SATURDAY, None, "critical"),
        ("api", "ValidationError", "forms", None, SATURDAY, None, "critical"),
        ("frontend", "TypeError", "web", "/gallery", SATURDAY, None, "medium"),
        ("api", "KeyError", "guests", None, SATURDAY, None, "high"),
        ("database", "QueryCanceled", "guests", None, SATURDAY, None, "high"),
        ("api", "KeyError", "guests", None, SATURDAY, "info", "info"),
        ("api", "KeyError", "guests", None, WEDNESDAY, "critical", "critical"),
        ("api", "KeyError", "guests", None, SATURDAY, "critical", "critical"),
        ("api", "KeyError", "guests", None, WEDNESDAY, "bogus", "medium"),
        # 23:30 UTC Friday is already Saturday 00:30 in London in summer.
        (
            "api",
            "CardError",
            "payments",
            None,
            datetime(2026, 6, 5, 23, 30, tzinfo=UTC),
            None,
            "critical",
        ),
    ],
)
def test_it_classifies_severity(
    level: str, error_type: str, service: str, endpoint: str | None, at: datetime,
    requested: str | None, expected: str,
) -> None:  # fmt: skip
    got = classify_severity(
        level=level,
        error_type=error_type,
        service_name=service,
        endpoint_path=endpoint,
        message="boom",
        at=at,
        tz=LONDON,
        requested=requested,
    )
    assert got == expected


# Which errors open incidents (any day, by policy): tests/test_error_incident_policy.py


# ---------------------------------------------------------------- envelopes
def _envelope(*items: tuple[dict, bytes], header: dict | None = None) -> bytes:
    out = orjson.dumps(header or {"event_id": "9ec79c33ec9942ab8353589fcb2e04dc"}) + b"\n"
    for item_header, payload in items:
        out += orjson.dumps(item_header) + b"\n" + payload + b"\n"
    return out


def test_it_parses_length_aware_and_newline_items() -> None:
    payload = b'{"message":"a\\nb"}'
    body = _envelope(
        ({"type": "event", "length": len(payload)}, payload),
        ({"type": "client_report"}, b'{"discarded_events":[]}'),
        ({"type": "attachment", "length": 4}, b"\n\n\n\n"),
    )
    env = parse_envelope(body)
    assert env.headers["event_id"] == "9ec79c33ec9942ab8353589fcb2e04dc"
    assert [i.type for i in env.items] == ["event", "client_report", "attachment"]
    assert env.items[0].json() == {"message": "a\nb"}
    assert env.items[2].payload == b"\n\n\n\n"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json\n",
        b"[]\n",
        b'{}\n{"type":"event","length":50}\n{"short":1}\n',
        b'{}\n{"type":"event","length":2}\n{"longer":1}\n',
        b'{}\n{"length":2}\n{}\n',
        b'{}\n{"type":"event","length":-1}\n{}\n',
        b"{}\nnot a header\n",
    ],
)
def test_it_rejects_malformed_envelopes(body: bytes) -> None:
    with pytest.raises(EnvelopeError):
        parse_envelope(body)


def test_it_reads_items_json_errors() -> None:
    env = parse_envelope(_envelope(({"type": "event"}, b"[1,2]")))
    with pytest.raises(EnvelopeError):
        env.items[0].json()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate
        ("br", brotli.compress),
        ("", lambda b: b),
        ("identity", lambda b: b),
    ],
)
def test_it_decompresses_bodies(encoding: str, encode: Callable[[bytes], bytes]) -> None:
    assert decompress(encode(b"x" * 1000), encoding, max_bytes=1000) == b"x" * 1000


@pytest.mark.parametrize(
    ("encoding", "body", "error"),
    [
        ("gzip", gzip.compress(b"x" * 1001, mtime=0), BodyTooLarge),
        ("br", brotli.compress(b"x" * 5_000_000), BodyTooLarge),
        ("gzip", b"not gzip at all", EnvelopeError),
        ("gzip", gzip.compress(b"x" * 500, mtime=0)[:-10], EnvelopeError),
        ("br", b"\xff\xfe not brotli", EnvelopeError),
        ("br", brotli.compress(b"y" * 500)[:-3], EnvelopeError),
        ("compress", b"x", UnsupportedEncoding),
    ],
)
def test_it_rejects_bad_or_oversize_compression(
    encoding: str, body: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error):
        decompress(body, encoding, max_bytes=1000)


# ---------------------------------------------------------------- Sentry events
NOW = datetime(2026, 6, 3, 12, 0, tzinfo=UTC)


def _sentry_exception_event(**extra: object) -> dict:
    event: dict[str, Any] = {
        "event_id": "9ec79c33ec9942ab8353589fcb2e04dc",
        "timestamp": "2026-06-03T11:59:30.123456Z",
        "level": "error",
        "platform": "python",
        "release": "payments@1.4.0",
        "environment": "production",
        "tags": {"organization_id": "org-7", "request_id": "req-1"},
        "user": {"id": 42, "email": "x@y.com"},
        "contexts": {"trace": {"trace_id": "a" * 32, "span_id": "b" * 16}},
        "request": {"url": "https://api.example.com/api/pay?x=1", "method": "POST"},
        "exception": {
            "values": [
                {"type": "KeyError", "value": "'card'", "stacktrace": {"frames": []}},
                {
                    "type": "CardError",
                    "value": "card 4242 4242 4242 4242 declined",
                    "stacktrace": {
                        "frames": [
                            {"module": "django.core", "function": "handle", "in_app": False},
                            {
                                "module": "payments.charge",
                                "function": "charge",
                                "filename": "payments/charge.py",
                                "lineno": 12,
                                "in_app": True,
                                "context_line": "raise CardError()",
                                "vars": {"password": "p"},
                            },
                        ]
                    },
                },
            ]
        },
    }
    event.update(extra)
    return event


def test_it_maps_a_sentry_exception_event() -> None:
    err = event_to_error(_sentry_exception_event(), project_id="1", now=NOW)
    assert (err.error_type, err.service_name, err.level) == ("CardError", "payments", "api")
    assert err.message == "card 4242 4242 4242 4242 declined"  # scrubbed later, at ingest
    assert err.time == datetime(2026, 6, 3, 11, 59, 30, 123456, tzinfo=UTC)
    assert str(err.event_id).replace("-", "") == "9ec79c33ec9942ab8353589fcb2e04dc"
    assert err.dedup is True
    assert [f["function"] for f in err.frames] == ["handle", "charge"]
    assert err.frames[1]["in_app"] is True
    assert (err.user_id, err.organization_id, err.request_id) == ("42", "org-7", "req-1")
    assert (err.trace_id, err.release, err.environment) == (
        "a" * 32,
        "payments@1.4.0",
        "production",
    )
    assert err.endpoint_path == "/api/pay"
    assert err.severity is None  # "error": the layer decides
    assert "KeyError: 'card'" in (err.stack_trace or "")
    assert 'File "payments/charge.py", line 12, in charge' in (err.stack_trace or "")


def test_it_maps_a_logging_event_grouping_on_the_template() -> None:
    event = {
        "level": "warning",
        "logger": "payments",
        "logentry": {
            "message": "refund %s failed",
            "params": ["r-1"],
            "formatted": "refund r-1 failed",
        },
        "tags": [["service", "refunds"], ["error_level", "third_party"]],
        "timestamp": 1780487970.5,
    }
    err = event_to_error(event, project_id="3", now=NOW, fallback_id="0" * 32)
    assert (err.error_type, err.message, err.message_template) == (
        "LogMessage",
        "refund r-1 failed",
        "refund %s failed",
    )
    assert (err.service_name, err.level, err.severity) == ("refunds", "third_party", "low")
    assert err.context["params"] == ["r-1"]
    assert err.event_id.int == 0 and err.dedup is True


def test_it_clamps_out_of_window_sentry_timestamps_and_defaults_service() -> None:
    event = {"message": "hello", "timestamp": "1999-01-01T00:00:00Z", "level": "fatal"}
    err = event_to_error(event, project_id="9", now=NOW)
    assert err.time == NOW and err.context["original_timestamp"].startswith("1999")
    assert (err.error_type, err.service_name, err.severity) == (
        "Message",
        "sentry-project-9",
        "critical",
    )
    assert err.dedup is False


@pytest.mark.parametrize(
    ("platform", "error_type", "module", "expected"),
    [
        ("javascript", "TypeError", "app", "frontend"),
        ("python", "OperationalError", "app.db", "database"),
        ("python", "KeyError", "psycopg.cursor", "database"),
        ("python", "ConnectTimeout", "httpx._client", "third_party"),
        ("python", "KeyError", "app.views", "api"),
    ],
)
def test_it_infers_the_layer(platform: str, error_type: str, module: str, expected: str) -> None:
    got = infer_level(platform=platform, error_type=error_type, frames=[{"module": module}])
    assert got == expected


# ---------------------------------------------------------------- own API items
def _item(**extra: object) -> dict:
    base: dict = {
        "error_type": "TypeError",
        "message": "x",
        "service_name": "web",
        "level": "frontend",
    }
    base.update(extra)
    return base


def test_it_parses_valid_items_with_defaults() -> None:
    [err] = parse_error_items(
        [_item(user_id=7, stack_trace=PY_TRACE, fingerprint="checkout", tags={"a": 1})], now=NOW
    )
    assert (err.time, err.user_id, err.fingerprint, err.tags) == (
        NOW,
        "7",
        ["checkout"],
        {"a": "1"},
    )
    assert err.dedup is False
    prepared = prepare(err, scrubber=Scrubber(), tz=LONDON)
    assert err.frames[0]["function"] == "charge"  # parsed from the scrubbed trace
    assert prepared.culprit == "charge in charge"


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"message": "x", "service_name": "web", "level": "api"}, "error_type"),
        (_item(level="backend"), "level"),
        (_item(severity="urgent"), "severity"),
        (_item(timestamp="yesterday"), "timestamp"),
        (_item(timestamp=(NOW - timedelta(days=8)).isoformat()), "timestamp"),
        (_item(timestamp=(NOW + timedelta(hours=2)).isoformat()), "timestamp"),
        (_item(context=[1]), "context"),
        (_item(message=5), "message"),
        (_item(fingerprint={"a": 1}), "fingerprint"),
        (_item(colour="red"), "colour"),
    ],
)
def test_it_rejects_invalid_items_naming_index_and_field(item: dict, field: str) -> None:
    with pytest.raises(InvalidItems) as caught:
        parse_error_items([_item(), item], now=NOW)
    assert [(e.index, e.field) for e in caught.value.errors] == [(1, field)]


# ---------------------------------------------------------------- group lifecycle
RESOLVED_AT = datetime(2026, 6, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("payments@1.4.0", "payments@1.4.0", 0),
        ("payments@1.3.9", "payments@1.4.0", -1),
        ("payments@1.10.0", "payments@1.4.0", 1),
        ("1.4", "1.4.0", 0),
        ("2.0.0-rc1", "2.0.0", -1),
        ("v2", "1.9", None),  # not a version we can read
        ("web@2.0", "payments@1.0", None),  # different packages
        ("abc123", "def456", None),  # commit hashes
    ],
)
def test_it_compares_releases(a: str, b: str, expected: int | None) -> None:
    assert compare_releases(a, b) == expected


@pytest.mark.parametrize(
    ("status", "resolved_in", "event_at", "event_release", "expected"),
    [
        ("resolved", None, RESOLVED_AT + timedelta(minutes=1), None, True),
        ("resolved", "app@1.4.0", RESOLVED_AT + timedelta(minutes=1), "app@1.3.9", False),
        ("resolved", "app@1.4.0", RESOLVED_AT + timedelta(minutes=1), "app@1.4.0", True),
        ("resolved", "app@1.4.0", RESOLVED_AT + timedelta(minutes=1), "app@1.10.0", True),
        ("resolved", "app@1.4.0", RESOLVED_AT + timedelta(minutes=1), None, True),
        ("resolved", "app@1.4.0", RESOLVED_AT + timedelta(minutes=1), "deadbeef", True),
        ("resolved", None, RESOLVED_AT - timedelta(minutes=1), None, False),  # arrived late
        ("resolved", None, RESOLVED_AT, None, False),
        ("unresolved", None, RESOLVED_AT + timedelta(minutes=1), None, False),
        ("ignored", None, RESOLVED_AT + timedelta(minutes=1), None, False),
        ("regressed", None, RESOLVED_AT + timedelta(minutes=1), None, False),
    ],
)
def test_it_decides_regressions(
    status: str, resolved_in: str | None, event_at: datetime, event_release: str | None,
    expected: bool,
) -> None:  # fmt: skip
    got = is_regression(
        status=status,
        resolved_at=RESOLVED_AT,
        resolved_in_release=resolved_in,
        event_time=event_at,
        event_release=event_release,
    )
    assert got is expected


@pytest.mark.parametrize(
    ("current", "action", "expected"),
    [
        ("unresolved", "resolve", "resolved"),
        ("regressed", "resolve", "resolved"),
        ("unresolved", "ignore", "ignored"),
        ("resolved", "reopen", "unresolved"),
        ("ignored", "reopen", "unresolved"),
        ("resolved", "resolve", None),
        ("unresolved", "reopen", None),
        ("unresolved", "delete", None),
    ],
)
def test_it_allows_only_sensible_status_changes(
    current: str, action: str, expected: str | None
) -> None:
    if expected is None:
        with pytest.raises(ValueError):
            next_status(current, action)
    else:
        assert next_status(current, action) == expected
