"""A real prometheus_client pushing to the real API's Pushgateway routes."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Any
from urllib.error import HTTPError

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary
from prometheus_client.exposition import (
    basic_auth_handler,
    delete_from_gateway,
    push_to_gateway,
    pushadd_to_gateway,
)
from sqlalchemy import Engine, select

from monitoring_core.schema import audit_log, metric_points, metric_series


def _auth(key: str) -> Callable[..., Callable[[], None]]:
    def handler(
        url: str, method: str, timeout: float | None, headers: list, data: bytes
    ) -> Callable[[], None]:
        return basic_auth_handler(url, method, timeout, headers, data, "pusher", key)

    return handler


def _stored(engine: Engine) -> dict[tuple[str, tuple[tuple[str, str], ...]], list[float]]:
    stmt = (
        select(metric_series.c.name, metric_series.c.dimensions, metric_points.c.value)
        .join(metric_points, metric_points.c.series_id == metric_series.c.id)
        .order_by(metric_points.c.time)
    )
    out: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}
    with engine.connect() as conn:
        for name, dims, value in conn.execute(stmt):
            out.setdefault((name, tuple(sorted(dims.items()))), []).append(value)
    return out


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("emails_sent", "Emails sent", ["template"], registry=registry).labels("rsvp").inc(4)
    Gauge("queue_depth", "Jobs waiting", registry=registry).set(12)
    Histogram("job_seconds", "Job time", registry=registry, buckets=(1, 10)).observe(3)
    Summary("batch_size", "Batch size", registry=registry).observe(50)
    return registry


def test_it_accepts_push_to_gateway_with_basic_auth(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    push_to_gateway(
        api_server,
        job="nightly/export",
        registry=_registry(),
        grouping_key={"instance": "worker 1", "empty": ""},
        handler=_auth(ingest_key),
    )
    group = (("empty", ""), ("instance", "worker 1"), ("job", "nightly/export"))
    stored = _stored(engine)
    assert stored[("emails_sent_total", tuple(sorted((*group, ("template", "rsvp")))))] == [4.0]
    assert stored[("queue_depth", group)] == [12.0]
    assert stored[("job_seconds_bucket", tuple(sorted((*group, ("le", "10.0")))))] == [1.0]
    assert stored[("job_seconds_sum", group)] == [3.0]
    assert stored[("batch_size_count", group)] == [1.0]
    assert ("push_time_seconds", group) in stored
    assert not any(name.endswith("_created") for name, _ in stored)


def test_it_accepts_pushadd_gzip_and_a_bearer_key(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    pushadd_to_gateway(
        api_server, job="cron", registry=_registry(), handler=_auth(ingest_key), compression="gzip"
    )
    body = gzip.compress(b"# TYPE up gauge\nup 1\n")
    reply = httpx.put(
        f"{api_server}/metrics/job/cron",
        content=body,
        headers={
            "Authorization": f"Bearer {ingest_key}",
            "Content-Encoding": "gzip",
            "Content-Type": "text/plain; version=0.0.4",
        },
    )
    assert reply.status_code == 202 and reply.json() == {"accepted": 1}
    assert _stored(engine)[("up", (("job", "cron"),))] == [1.0]
    assert _stored(engine)[("queue_depth", (("job", "cron"),))] == [12.0]


def test_it_deletes_a_group_like_the_pushgateway(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    delete_from_gateway(
        api_server, job="cron", grouping_key={"instance": "a"}, handler=_auth(ingest_key)
    )
    with engine.connect() as conn:
        row = conn.execute(select(audit_log.c.action, audit_log.c.details)).one()
    assert row.action == "pushgateway.delete"
    assert row.details == {"job": "cron", "instance": "a"}


@pytest.mark.parametrize(("key", "status"), [(None, 401), ("mk_wrong", 401)])
def test_it_refuses_pushes_without_a_valid_key(
    api_server: str, engine: Engine, key: str | None, status: int
) -> None:
    handler: Any = _auth(key) if key else None
    with pytest.raises(HTTPError) as info:
        if handler:
            push_to_gateway(api_server, job="x", registry=_registry(), handler=handler)
        else:
            push_to_gateway(api_server, job="x", registry=_registry())
    assert info.value.code == status
    assert _stored(engine) == {}


@pytest.mark.parametrize(
    ("body", "line", "fragment"),
    [
        (b"ok 1\nbroken{ 2\n", 2, "cannot parse sample"),
        (b'# TYPE x gauge\nx 1\nx{a="1"} one\n', 3, "not a number"),
        (b"ok 1\nstamped 1 1700000000000\n", 2, "timestamps"),
    ],
)
def test_it_answers_400_with_the_line_of_malformed_text(
    api_server: str, ingest_key: str, engine: Engine, body: bytes, line: int, fragment: str
) -> None:
    reply = httpx.post(f"{api_server}/metrics/job/bad", content=body, auth=("pusher", ingest_key))
    assert reply.status_code == 400
    assert reply.json()["line"] == line and fragment in reply.json()["detail"]
    assert _stored(engine) == {}  # a rejected push stores nothing


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/metrics/job/", {}, 400),
        ("/metrics/instance/a/job/b", {}, 400),
        ("/metrics/job/a/odd", {}, 400),
        ("/metrics/job/a", {"Content-Type": "application/vnd.google.protobuf"}, 415),
        ("/metrics/job/a", {"Content-Encoding": "br"}, 415),
    ],
)
def test_it_refuses_bad_paths_and_encodings(
    api_server: str, ingest_key: str, path: str, headers: dict[str, str], status: int
) -> None:
    reply = httpx.put(api_server + path, content=b"up 1\n", headers=headers, auth=("", ingest_key))
    assert reply.status_code == status


def test_it_refuses_a_body_over_the_limit(api_server: str, ingest_key: str, api_app: Any) -> None:
    limit = api_app.state.settings.max_body_bytes
    reply = httpx.put(
        f"{api_server}/metrics/job/big", content=b"x 1\n" * (limit // 4 + 1), auth=("", ingest_key)
    )
    assert reply.status_code == 413


def test_it_reuses_series_across_pushes_and_accepts_an_empty_push(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    registry = _registry()
    for _ in range(2):
        push_to_gateway(api_server, job="repeat", registry=registry, handler=_auth(ingest_key))
    stored = _stored(engine)
    assert stored[("queue_depth", (("job", "repeat"),))] == [12.0, 12.0]
    assert all(len(values) == 2 for values in stored.values())  # same series, two points each
    empty = httpx.put(f"{api_server}/metrics/job/quiet", content=b"", auth=("", ingest_key))
    assert empty.status_code == 202 and empty.json() == {"accepted": 0}
    assert ("push_time_seconds", (("job", "quiet"),)) in _stored(engine)
