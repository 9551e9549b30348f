"""Status codes of docs/API.md for bodies, on a real server; nothing stored on any rejection."""

from __future__ import annotations

import dataclasses
import gzip
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from monitoring_core.schema import metric_points, metric_series

LIMIT = 10_000


@pytest.fixture
def small_limit_server(api_app: Any, api_server: str) -> Iterator[str]:
    """The shared server with MONITORING_MAX_BODY_BYTES lowered for this test."""
    settings = api_app.state.settings
    api_app.state.settings = dataclasses.replace(settings, max_body_bytes=LIMIT)
    yield api_server
    api_app.state.settings = settings


def _stored(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        points = conn.execute(select(func.count()).select_from(metric_points)).scalar_one()
        series = conn.execute(select(func.count()).select_from(metric_series)).scalar_one()
    return points, series


def _post(url: str, key: str, content: bytes, **headers: str) -> httpx.Response:
    headers.setdefault("content-type", "application/json")
    headers["authorization"] = f"Bearer {key}"
    return httpx.post(f"{url}/api/monitoring/metrics", content=content, headers=headers)


def _points(n: int) -> bytes:
    import orjson

    return orjson.dumps([{"metric_name": "m", "metric_value": i} for i in range(n)])


def test_it_answers_413_when_the_declared_length_is_over_the_limit(
    small_limit_server: str, ingest_key: str, engine: Engine
) -> None:
    body = _points(1000)
    assert len(body) > LIMIT
    reply = _post(small_limit_server, ingest_key, body)
    assert reply.status_code == 413
    assert str(LIMIT) in reply.json()["detail"]
    assert _stored(engine) == (0, 0)


def test_it_answers_413_for_a_chunked_body_over_the_limit(
    small_limit_server: str, ingest_key: str, engine: Engine
) -> None:
    body = _points(1000)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    reply = httpx.post(
        f"{small_limit_server}/api/monitoring/metrics",
        content=chunks(),
        headers={"authorization": f"Bearer {ingest_key}", "content-type": "application/json"},
    )
    assert reply.status_code == 413
    assert _stored(engine) == (0, 0)


def test_it_answers_413_for_a_gzip_bomb(
    small_limit_server: str, ingest_key: str, engine: Engine
) -> None:
    bomb = gzip.compress(b"[" + b" " * 8_000_000 + b"]", mtime=0)
    assert len(bomb) < LIMIT
    reply = _post(small_limit_server, ingest_key, bomb, **{"content-encoding": "gzip"})
    assert reply.status_code == 413
    assert "decompressed" in reply.json()["detail"]
    assert _stored(engine) == (0, 0)


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-15)),  # raw deflate
    ],
)
def test_it_accepts_compressed_bodies(
    api_server: str, ingest_key: str, engine: Engine, encoding: str, compress: Any
) -> None:
    reply = _post(api_server, ingest_key, compress(_points(50)), **{"content-encoding": encoding})
    assert reply.status_code == 202, reply.text
    assert _stored(engine) == (50, 1)


@pytest.mark.parametrize(
    ("content", "headers", "status", "says"),
    [
        (b'{"metric_name": "m", "metric_value": 1', {}, 400, "line 1"),
        (b'[{"metric_name": "m", "metric_value": 1},]', {}, 400, "malformed JSON"),
        (b"", {}, 400, "empty body"),
        (b"42", {}, 400, "object or an array"),
        (b"\xff\xfe", {}, 400, "malformed JSON"),
        (b"not gzip", {"content-encoding": "gzip"}, 400, "decompressed"),
        (gzip.compress(_points(3), mtime=0)[:-12], {"content-encoding": "gzip"}, 400, "truncated"),
        (_points(1), {"content-encoding": "br"}, 415, "encoding"),
        (_points(1), {"content-type": "application/x-www-form-urlencoded"}, 415, "content type"),
        (_points(1), {"content-type": "text/plain"}, 415, "content type"),  # metrics: JSON only
    ],
)
def test_it_rejects_unreadable_bodies_saying_why(
    api_server: str,
    ingest_key: str,
    engine: Engine,
    content: bytes,
    headers: dict[str, str],
    status: int,
    says: str,
) -> None:
    reply = _post(api_server, ingest_key, content, **headers)
    assert reply.status_code == status
    assert says in reply.json()["detail"]
    assert _stored(engine) == (0, 0)


def test_it_rejects_non_object_items_by_index(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    reply = _post(api_server, ingest_key, b'[{"metric_name": "m", "metric_value": 1}, 3, null]')
    assert reply.status_code == 422
    assert [(e["index"], e["field"]) for e in reply.json()["detail"]] == [(1, ""), (2, "")]
    assert _stored(engine) == (0, 0)


def test_it_accepts_json_with_a_charset_and_vendor_json_types(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    for content_type in ("application/json; charset=utf-8", "application/vnd.metrics+json"):
        reply = _post(api_server, ingest_key, _points(1), **{"content-type": content_type})
        assert reply.status_code == 202
    assert _stored(engine) == (2, 1)
