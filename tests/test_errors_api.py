"""Error routes through a real HTTP server: own ingest, envelopes, Read API, group actions."""

from __future__ import annotations

import gzip
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import brotli
import httpx
import orjson
from sqlalchemy import Engine, select, text, update

from monitoring_core.db import make_engine
from monitoring_core.schema import api_keys, error_events, error_groups, settings


def _count(engine: Engine, table: str = "error_events") -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one())  # noqa: S608


def _item(**extra: Any) -> dict[str, Any]:
    item = {
        "error_type": "KeyError",
        "message": "guest 17 not found",
        "service_name": "guests",
        "level": "api",
    }
    item.update(extra)
    return item


def _post(server: str, key: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(
        f"{server}/api/monitoring/errors", json=body, headers={"X-API-Key": key}, **kw
    )


# ---------------------------------------------------------------- own ingest
def test_it_ingests_one_error_and_replies_with_its_group(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    r = _post(api_server, ingest_key, _item(user_id="u1", context={"password": "hunter2"}))
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["accepted"] == 1 and body["severity"] in ("medium", "high")
    assert body["group_id"] == body["items"][0]["group_id"]
    with engine.connect() as conn:
        row = conn.execute(select(error_events)).one()
    assert str(row.event_id) == body["error_id"]
    assert row.context == {"password": "[REDACTED]"}


def test_it_ingests_a_batch_grouping_same_bugs(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    batch = [_item(message=f"guest {i} not found", user_id=f"u{i % 3}") for i in range(10)]
    batch.append(_item(error_type="TypeError"))
    r = _post(api_server, ingest_key, batch)
    assert r.status_code == 202, r.text
    assert len({i["group_id"] for i in r.json()["items"]}) == 2
    with engine.connect() as conn:
        counts = dict(
            conn.execute(select(error_groups.c.error_type, error_groups.c.user_count)).all()
        )
    assert counts == {"KeyError": 3, "TypeError": 0}


# One server round per case, one table truncation for all (the cases share nothing).
BAD_BATCHES: list[tuple[str, Any]] = [
    ("bad level", [_item(), _item(level="backend")]),
    ("missing type", [_item(), {"message": "no type"}]),
    ("not an object", [_item(), 5]),
    ("single object", {"error_type": "X"}),
]


def test_it_rejects_a_batch_with_a_bad_item_and_stores_nothing(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    for case, body in BAD_BATCHES:
        r = _post(api_server, ingest_key, body)
        assert r.status_code == 422, (case, r.text)
        assert all("index" in d and "field" in d for d in r.json()["detail"]), case
    assert _count(engine) == 0 and _count(engine, "error_groups") == 0


def test_it_answers_4xx_for_unreadable_requests(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    url, key = f"{api_server}/api/monitoring/errors", {"X-API-Key": ingest_key}
    assert httpx.post(url, json=_item()).status_code == 401
    assert httpx.post(url, content=b"{not json", headers=key).status_code == 400
    xml = {**key, "Content-Type": "application/xml"}
    assert httpx.post(url, content=b"<x/>", headers=xml).status_code == 415
    huge = orjson.dumps([_item(message="x" * 5000) for _ in range(1200)])
    assert httpx.post(url, content=huge, headers=key).status_code == 413
    beacon = {"Content-Type": "text/plain;charset=UTF-8"}
    r = httpx.post(f"{url}?key={ingest_key}", content=orjson.dumps(_item()), headers=beacon)
    assert r.status_code == 202
    assert _count(engine) == 1


# ---------------------------------------------------------------- Sentry envelopes
def _envelope(*items: tuple[dict, bytes], header: dict | None = None) -> bytes:
    out = orjson.dumps(header if header is not None else {"event_id": uuid.uuid4().hex}) + b"\n"
    for item_header, payload in items:
        out += orjson.dumps({**item_header, "length": len(payload)}) + b"\n" + payload + b"\n"
    return out


def _sentry_event(event_id: str | None = None, **extra: Any) -> bytes:
    event = {
        "event_id": event_id or uuid.uuid4().hex,
        "timestamp": datetime.now(UTC).isoformat(),
        "level": "error",
        "platform": "python",
        "tags": {"service": "payments"},
        "exception": {"values": [{"type": "ValueError", "value": "bad amount 12"}]},
    }
    event.update(extra)
    return orjson.dumps(event)


def _send(
    server: str, key: str | None, body: bytes, encoding: str = "gzip", **kw: Any
) -> httpx.Response:
    headers = {"Content-Type": "application/x-sentry-envelope"}
    if key:
        headers["X-Sentry-Auth"] = f"Sentry sentry_key={key}, sentry_version=7"
    if encoding == "gzip":
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    elif encoding == "br":
        body, headers["Content-Encoding"] = brotli.compress(body), "br"
    return httpx.post(f"{server}/api/1/envelope/", content=body, headers=headers, **kw)


def test_it_stores_envelope_events_and_skips_other_items(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    for encoding in ("gzip", "br", "identity"):
        event_id = uuid.uuid4().hex
        body = _envelope(
            ({"type": "event"}, _sentry_event(event_id)),
            ({"type": "transaction"}, b'{"type":"transaction","spans":[]}'),
            ({"type": "session"}, b'{"sid":"x"}'),
            ({"type": "brand_new_type"}, b"\x00\x01 binary"),
            header={"event_id": event_id},
        )
        r = _send(api_server, ingest_key, body, encoding)
        assert r.status_code == 200, (encoding, r.text)
        assert r.json() == {"id": event_id}
        with engine.connect() as conn:
            row = conn.execute(
                select(error_events).where(error_events.c.event_id == uuid.UUID(event_id))
            ).one()
        assert (row.service_name, row.error_type) == ("payments", "ValueError")
    assert _count(engine) == 3


def test_it_dedups_a_resent_envelope(api_server: str, ingest_key: str, engine: Engine) -> None:
    event_id = uuid.uuid4().hex
    body = _envelope(({"type": "event"}, _sentry_event(event_id)))
    assert _send(api_server, ingest_key, body).status_code == 200
    assert _send(api_server, ingest_key, body).status_code == 200
    assert _count(engine) == 1
    with engine.connect() as conn:
        assert conn.execute(select(error_groups.c.event_count)).scalar_one() == 1


def test_it_takes_the_key_from_the_query_or_the_envelope_dsn(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    body = gzip.compress(_envelope(({"type": "event"}, _sentry_event())))
    headers = {"Content-Encoding": "gzip", "Content-Type": "text/plain"}
    r = httpx.post(
        f"{api_server}/api/1/envelope/?sentry_key={ingest_key}", content=body, headers=headers
    )
    assert r.status_code == 200, r.text
    dsn = {"event_id": uuid.uuid4().hex, "dsn": f"http://{ingest_key}@localhost:8000/1"}
    r = _send(api_server, None, _envelope(({"type": "event"}, _sentry_event()), header=dsn))
    assert r.status_code == 200, r.text
    assert _count(engine) == 2


BAD_ENVELOPES: list[tuple[str | None, bytes, str, int]] = [
    ("bad", _envelope(({"type": "event"}, b"{}")), "gzip", 401),
    (None, _envelope(({"type": "event"}, b"{}")), "gzip", 401),
    ("ok", b'{"event_id":"x"}\n{"type":"event","length":500}\n{}\n', "gzip", 400),
    ("ok", b"not an envelope", "gzip", 400),
    ("ok", _envelope(({"type": "event"}, b"[1, 2]")), "gzip", 400),
    ("ok", b"\x1f\x8b\x08 not really gzip", "raw-gzip", 400),
    ("ok", b"x" * 6_000_000, "gzip", 413),
    ("ok", b"plain", "compress", 415),
]


def test_it_rejects_bad_envelopes_and_stores_nothing(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    for case, (key, body, encoding, status) in enumerate(BAD_ENVELOPES):
        use_key = ingest_key if key == "ok" else key
        if encoding in ("raw-gzip", "compress"):
            headers = {"Content-Encoding": "gzip" if encoding == "raw-gzip" else "compress"}
            if use_key:
                headers["X-Sentry-Auth"] = f"Sentry sentry_key={use_key}"
            r = httpx.post(f"{api_server}/api/1/envelope/", content=body, headers=headers)
        else:
            r = _send(api_server, use_key, body, encoding)
        assert r.status_code == status, (case, r.text)
    assert _count(engine) == 0


def test_it_tells_sentry_clients_to_back_off(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    with engine.begin() as conn:
        conn.execute(update(api_keys).values(rate_limit_per_minute=1))
    body = _envelope(({"type": "event"}, _sentry_event()))
    assert _send(api_server, ingest_key, body).status_code == 200
    r = _send(api_server, ingest_key, _envelope(({"type": "event"}, _sentry_event())))
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert r.headers["X-Sentry-Rate-Limits"] == f"{r.headers['Retry-After']}::key"
    assert _count(engine) == 1


def test_it_accepts_the_legacy_store_endpoint(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    headers = {"X-Sentry-Auth": f"Sentry sentry_key={ingest_key}", "Content-Encoding": "gzip"}
    event_id = uuid.uuid4().hex
    body = gzip.compress(_sentry_event(event_id))
    r = httpx.post(f"{api_server}/api/1/store/", content=body, headers=headers)
    assert r.status_code == 200 and r.json() == {"id": event_id}
    assert _count(engine) == 1


def test_it_serves_documents_and_counts_the_sentry_routes_with_and_without_slash(
    api_app: Any, api_server: str, ingest_key: str, admin_key: str, engine: Engine
) -> None:
    # The hot Sentry routes are plain Starlette routes (see routes_errors): they must still be
    # in the OpenAPI document and carry their route label in the API's own metrics.
    paths = httpx.get(f"{api_server}/openapi.json", headers={"X-API-Key": admin_key}).json()[
        "paths"
    ]
    assert {"/api/{project_id}/envelope/", "/api/{project_id}/store/"} <= set(paths)
    requests = api_app.state.stats.requests  # counts from earlier tests too: compare deltas
    routes = [
        f"/api/{{project_id}}/{path}" for path in ("envelope", "envelope/", "store", "store/")
    ]
    before = [requests.get(("POST", route, 200), 0) for route in routes]
    headers = {"X-Sentry-Auth": f"Sentry sentry_key={ingest_key}"}
    for path in ("envelope", "envelope/", "store", "store/"):
        event = _sentry_event()
        body = _envelope(({"type": "event"}, event)) if path.startswith("envelope") else event
        r = httpx.post(f"{api_server}/api/7/{path}", content=body, headers=headers)
        assert r.status_code == 200, r.text
    assert _count(engine) == 4
    after = [requests.get(("POST", route, 200), 0) for route in routes]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1, 1]


# ---------------------------------------------------------------- Read API and actions
def test_it_serves_groups_detail_analytics_and_correlation(
    api_server: str, ingest_key: str, admin_key: str, engine: Engine
) -> None:
    trace = uuid.uuid4().hex
    stack = 'Traceback:\n  File "app/pay.py", line 3, in pay\nCardError: token=abc123'
    r = _post(
        api_server,
        ingest_key,
        [
            _item(service_name="web", level="frontend", trace_id=trace, user_id="u1"),
            _item(
                error_type="CardError",
                message="declined",
                service_name="payments",
                trace_id=trace,
                stack_trace=stack,
                tags={"region": "uk"},
            ),
        ],
    )
    web, pay = r.json()["items"]
    key = {"X-API-Key": admin_key}  # ingest keys write only
    groups = httpx.get(f"{api_server}/api/monitoring/errors/groups?service=payments", headers=key)
    assert [g["id"] for g in groups.json()["groups"]] == [pay["group_id"]]
    for q, found in (("type:CardError", [pay]), ("region:uk", [pay]), ("declined", [pay]),
                     ("!region:uk", [web]), ('"no such words"', [])):  # fmt: skip
        searched = httpx.get(f"{api_server}/api/monitoring/errors/groups", params={"q": q},
                             headers=key).json()  # fmt: skip
        assert [g["id"] for g in searched["groups"]] == [g["group_id"] for g in found], q
    for q in ("is:nonsense", "assigned:me", "a\x00b"):  # the search's own error, by field
        refused = httpx.get(f"{api_server}/api/monitoring/errors/groups", params={"q": q},
                            headers=key)  # fmt: skip
        assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "q", q
    detail = httpx.get(f"{api_server}/api/monitoring/errors/groups/{pay['group_id']}", headers=key)
    assert detail.status_code == 200
    d = detail.json()
    assert "token=[REDACTED]" in d["latest_event"]["stack_trace"]
    assert d["tags"] == [{"key": "region", "value": "uk", "events": 1}]
    assert [g["id"] for g in d["related"]] == [web["group_id"]]
    analytics = httpx.get(f"{api_server}/api/monitoring/errors?groupBy=level", headers=key).json()
    assert analytics["totals"]["events"] == 2
    assert {b["key"] for b in analytics["breakdown"]} == {"frontend", "api"}
    corr = httpx.post(
        f"{api_server}/api/monitoring/errors/correlate",
        json={"errorId": web["error_id"]},
        headers=key,
    )
    assert [e["group_id"] for e in corr.json()["related"]] == [pay["group_id"]]
    missing = httpx.get(f"{api_server}/api/monitoring/errors/groups/999999", headers=key)
    assert missing.status_code == 404
    bad = httpx.get(f"{api_server}/api/monitoring/errors/groups?timeRange=2y", headers=key)
    assert bad.status_code == 422
    assert httpx.get(f"{api_server}/api/monitoring/errors/groups").status_code == 401


def test_it_lets_admins_resolve_and_flags_the_regression(
    api_server: str, ingest_key: str, admin_key: str, engine: Engine
) -> None:
    old = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    [item] = _post(api_server, ingest_key, [_item(timestamp=old)]).json()["items"]
    url = f"{api_server}/api/admin/errors/groups/{item['group_id']}"
    admin = {"X-API-Key": admin_key}
    assert httpx.post(f"{url}/resolve", headers={"X-API-Key": ingest_key}).status_code == 403
    r = httpx.post(f"{url}/resolve", json={"release": "guests@2.0.0"}, headers=admin)
    assert r.status_code == 200 and r.json()["status"] == "resolved"
    assert httpx.post(f"{url}/resolve", headers=admin).status_code == 409
    assert httpx.post(f"{url}/explode", headers=admin).status_code == 422
    _post(api_server, ingest_key, [_item(release="guests@1.9.0")])
    groups = httpx.get(f"{api_server}/api/monitoring/errors/groups", headers=admin).json()["groups"]
    assert groups[0]["status"] == "resolved"  # an old release: not a regression
    _post(api_server, ingest_key, [_item(release="guests@2.0.1")])
    groups = httpx.get(f"{api_server}/api/monitoring/errors/groups", headers=admin).json()["groups"]
    assert groups[0]["status"] == "regressed"


def test_it_answers_503_when_the_database_goes_away_mid_flight(
    api_app: Any, api_server: str, ingest_key: str, engine: Engine
) -> None:
    assert _post(api_server, ingest_key, _item()).status_code == 202  # key and partitions cached
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    dead = make_engine(
        f"postgresql+psycopg://x:y@127.0.0.1:{port}/none", connect_args={"connect_timeout": 2}
    )
    api_app.state.engine = dead
    try:
        small = _post(api_server, ingest_key, _item())  # through group commit
        batch = _post(api_server, ingest_key, [_item()] * 60)  # its own transaction
        sentry = _send(api_server, ingest_key, _envelope(({"type": "event"}, _sentry_event())))
    finally:
        api_app.state.engine = engine
        dead.dispose()
    assert [r.status_code for r in (small, batch, sentry)] == [503, 503, 503]
    assert all(int(r.headers["Retry-After"]) > 0 for r in (small, batch, sentry))
    assert _count(engine) == 1


def test_it_scrubs_the_extra_fields_configured_in_settings(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    with engine.begin() as conn:
        conn.execute(settings.insert().values(key="error_scrub_fields", value=["venue_code"]))
    context = {"venue_code": "BARN-7", "note": "ok"}
    assert _post(api_server, ingest_key, _item(context=context)).status_code == 202
    with engine.connect() as conn:
        stored = conn.execute(select(error_events.c.context)).scalar_one()
    assert stored == {"venue_code": "[REDACTED]", "note": "ok"}
