"""Service routes on a real server: /healthz, /metrics, /openapi.json, 503 without a database."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from monitoring_core.api.app import create_app
from monitoring_core.config import load_settings
from monitoring_core.db import make_engine
from tests.serving import running_server


@pytest.fixture
def read_key(engine: Engine) -> str:
    from monitoring_core.accounts import create_api_key
    from monitoring_core.enums import ApiScope

    with engine.begin() as conn:
        return create_api_key(conn, name="test-read", scope=ApiScope.READ)


def test_it_answers_healthz_when_the_database_answers(api_server: str) -> None:
    reply = httpx.get(f"{api_server}/healthz")
    assert reply.status_code == 200
    assert reply.json()["database"] == "ok"


def test_it_serves_openapi(api_server: str, read_key: str) -> None:
    reply = httpx.get(f"{api_server}/openapi.json", headers={"X-API-Key": read_key})
    assert reply.status_code == 200
    assert "/healthz" in reply.json()["paths"]


def test_it_counts_requests_by_route_template_in_metrics(api_server: str, read_key: str) -> None:
    httpx.get(f"{api_server}/healthz")
    httpx.get(f"{api_server}/no/such/path/12345")
    text = httpx.get(f"{api_server}/metrics", headers={"X-API-Key": read_key}).text
    assert 'monitoring_api_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'route="unmatched",status="404"' in text
    assert "/no/such/path" not in text
    assert 'monitoring_api_request_duration_seconds_count{route="/healthz"}' in text


@pytest.fixture
def dead_db_server() -> Iterator[str]:
    """An API whose engine points at a closed port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    closed_port = sock.getsockname()[1]
    sock.close()
    url = f"postgresql+psycopg://nobody:x@127.0.0.1:{closed_port}/nothing"
    engine = make_engine(url, connect_args={"connect_timeout": 2})
    app = create_app(dataclasses.replace(load_settings({}), database_url=url), engine)
    with running_server(app) as base_url:
        yield base_url
    engine.dispose()


def test_it_answers_503_on_healthz_without_a_database(dead_db_server: str) -> None:
    reply = httpx.get(f"{dead_db_server}/healthz")
    assert reply.status_code == 503
    assert reply.headers["retry-after"]


def test_it_answers_503_with_retry_after_on_ingest_without_a_database(dead_db_server: str) -> None:
    reply = httpx.post(
        f"{dead_db_server}/api/monitoring/metrics",
        json={"metric_name": "x", "metric_value": 1},
        headers={"Authorization": "Bearer mk_whatever"},
    )
    assert reply.status_code == 503
    assert int(reply.headers["retry-after"]) > 0


def test_it_answers_503_when_the_connection_pool_is_exhausted(
    engine: Engine, database_url: str, ingest_key: str
) -> None:
    tiny = make_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    app = create_app(dataclasses.replace(load_settings({}), database_url=database_url), tiny)
    with running_server(app) as url, tiny.connect():  # the pool's only connection, held
        reply = httpx.post(
            f"{url}/api/monitoring/metrics",
            json={"metric_name": "x", "metric_value": 1},
            headers={"X-API-Key": ingest_key},
        )
    tiny.dispose()
    assert reply.status_code == 503
    assert reply.headers["retry-after"]
