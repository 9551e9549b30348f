"""Issue 13 item 6: the inputs that answered 500 answer a 4xx with a message, on the real server."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson

BIG = "1034655308187455700794927640215552"  # beyond 2^63 - 1
NUL = "\\u0000"  # NUL as JSON spells it
DEEP = '{"a":' * 300 + "1" + "}" * 300
NUL_B64 = base64.urlsafe_b64encode(b"b\x00c").decode()


# (method, path, key, body, expected status, field the message names or None)
CASES: list[tuple[str, str, str | None, str | None, int, str | None]] = [
    # NUL in a path or query: the unauthenticated heartbeat route first
    ("GET", "/api/monitoring/heartbeat/abc%00def", None, None, 422, "path"),
    ("POST", "/api/monitoring/heartbeat/abc%00def/fail", None, None, 422, "path"),
    ("GET", "/api/monitoring/errors/groups?service=a%00b", "admin", None, 422, "service"),
    ("GET", "/api/monitoring/errors?severity=a%00b", "admin", None, 422, "severity"),
    ("GET", "/api/admin/incidents?service=a%00b", "admin", None, 422, "service"),
    ("GET", "/api/monitoring/live/metrics?name=a%00b", "admin", None, 422, "name"),
    ("GET", "/api/monitoring/business/metrics?metrics=a%00b", "admin", None, 422, "metrics"),
    ("PUT", "/metrics/job/a%00b", "ingest", "x 1\n", 422, "path"),
    ("PUT", "/metrics/job/a/instance/b%00c", "ingest", "x 1\n", 422, "path"),
    ("PUT", f"/metrics/job/a/instance@base64/{NUL_B64}", "ingest", "x 1\n", 400, None),
    # NUL in JSON bodies, read by the one body reader
    ("POST", "/api/monitoring/business-events", "ingest", f'{{"event_type":"x{NUL}"}}', 422, None),
    (
        "POST",
        "/api/monitoring/errors",
        "ingest",
        f'[{{"error_type":"E","message":"m{NUL}","service_name":"s","level":"api"}}]',
        422,
        "message",
    ),
    (
        "POST",
        "/api/admin/incidents",
        "admin",
        f'{{"title":"a{NUL}","severity":"SEV2"}}',
        422,
        "title",
    ),
    ("POST", "/api/admin/monitoring/health/checks", "admin", f'{{"{NUL}":1}}', 422, "\\0"),
    (
        "POST",
        "/api/monitoring/query/metrics",
        "admin",
        f'{{"metric_name":"x{NUL}"}}',
        422,
        "metric_name",
    ),
    (
        "POST",
        "/api/monitoring/query/metrics",
        "admin",
        f'{{"metric_name":"x","filters":{{"a":"b{NUL}"}}}}',
        422,
        "filters",
    ),
    # depth
    (
        "POST",
        "/api/monitoring/business-events",
        "ingest",
        f'{{"event_type":"x","properties":{DEEP}}}',
        422,
        "properties",
    ),
    ("POST", "/api/admin/incidents", "admin", f'{{"title":"t","tags":{DEEP}}}', 422, "tags"),
    ("POST", "/api/1/store/", "sentry", f'{{"message":"m","extra":{DEEP}}}', 422, "event"),
    (
        "POST",
        "/api/1/store/",
        "sentry",
        f'{{"message":"m","contexts":{{"c":{DEEP}}}}}',
        422,
        "event",
    ),
    # numbers out of range
    (
        "POST",
        "/api/monitoring/business-events",
        "ingest",
        '{"event_type":"x","revenue":1e26}',
        422,
        "revenue",
    ),
    (
        "POST",
        "/api/monitoring/metrics",
        "ingest",
        '{"metric_name":"m","metric_value":1e308}',
        422,
        "metric_value",
    ),
    (
        "POST",
        "/api/monitoring/query/metrics",
        "admin",
        '{"metric_name":"x","interval":"99999999999w"}',
        422,
        "interval",
    ),
    (
        "GET",
        "/api/monitoring/live/metrics?name=x&window=99999999999w",
        "admin",
        None,
        422,
        "window",
    ),
    (
        "GET",
        "/api/monitoring/business/funnels?steps=a,b&window=99999999999w",
        "admin",
        None,
        422,
        "window",
    ),
    # ids and other path numbers
    ("DELETE", f"/api/admin/monitoring/alerts/{BIG}", "admin", None, 422, "rule_id"),
    ("GET", f"/api/monitoring/errors/groups/{BIG}", "admin", None, 422, "group_id"),
    ("GET", f"/api/admin/incidents/{BIG}", "admin", None, 422, "incident_id"),
    ("POST", f"/api/admin/alerts/{BIG}/acknowledge", "admin", None, 422, "instance_id"),
    ("PUT", "/api/admin/monitoring/health/checks/0", "admin", "{}", 422, "check_id"),
    ("PUT", "/api/admin/channels/1", "admin", None, 422, None),  # found by schemathesis
    ("GET", f"/api/admin/monitoring/health/history?check_id={BIG}", "admin", None, 422, "check_id"),
    ("GET", "/api/monitoring/heartbeat/0/%C2%B9", None, None, 400, None),  # plain text
    ("GET", "/api/admin/incidents?limit=%C2%B9", "admin", None, 422, "limit"),
    ("GET", f"/api/admin/incidents?limit={BIG}", "admin", None, 422, "limit"),
    ("GET", "/api/monitoring/heartbeat/0/256", None, None, 400, None),
]


def _message(body: Any) -> tuple[str, list[str]]:
    """(all messages, the fields named) of an error body."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        return " ".join(str(d.get("message", "")) for d in detail), [d["field"] for d in detail]
    return str(detail or ""), []


def _answer(base: str, keys: dict[str, str], case: tuple) -> str | None:
    """None when the case is answered as expected, else what went wrong."""
    method, path, key, body, status, field = case
    headers = {"Authorization": f"Bearer {keys[key]}"} if key in keys else {}
    if key == "sentry":
        headers["X-Sentry-Auth"] = f"Sentry sentry_key={keys['ingest']}"
    if body is not None:
        headers["Content-Type"] = (
            "text/plain" if path.startswith("/metrics") else "application/json"
        )
    reply = httpx.request(method, base + path, headers=headers, content=body, timeout=30)
    if reply.headers.get("content-type", "").startswith("application/json"):
        message, fields = _message(orjson.loads(reply.content))
    else:
        message, fields = reply.text, []
    if reply.status_code != status or not message.strip():
        return f"{method} {path[:80]}: {reply.status_code} {reply.text[:200]}"
    if field is not None and not any(f.startswith(field) or f.endswith(field) for f in fields):
        return f"{method} {path[:80]}: field {field!r} not in {fields}"
    return None


def test_it_answers_a_4xx_with_a_message_never_a_500(
    api_server: str, ingest_key: str, admin_key: str
) -> None:
    """Every case of CASES, against one server (one table, one test: the fixtures cost more
    than the requests)."""
    keys = {"ingest": ingest_key, "admin": admin_key}
    wrong = [problem for case in CASES if (problem := _answer(api_server, keys, case))]
    assert wrong == []
