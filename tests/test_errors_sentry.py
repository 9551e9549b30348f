"""An unmodified sentry_sdk client sending through the real HTTP server to the envelope route."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
import sentry_sdk
from sentry_sdk.client import BaseClient
from sqlalchemy import Engine, select, update

from monitoring_core.schema import api_keys, error_events, error_groups


@contextmanager
def sentry(server: str, key: str, **options: Any) -> Iterator[BaseClient]:
    """A real client on our DSN; auto-enabling integrations off so the in-process server
    (FastAPI/Starlette) is not instrumented by the test's own client."""
    host = urlsplit(server).netloc
    sentry_sdk.init(
        dsn=f"http://{key}@{host}/1",
        auto_enabling_integrations=False,
        release="payments@1.4.0",
        environment="test",
        **options,
    )
    client = sentry_sdk.get_client()
    try:
        with sentry_sdk.isolation_scope():  # user and tags set in a test stay in it
            yield client
        sentry_sdk.flush(timeout=10)
    finally:
        client.close()
        sentry_sdk.get_global_scope().set_client(None)


def _events(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(error_events).order_by(error_events.c.time)))


def _charge(amount: int) -> None:
    raise ValueError(f"cannot charge {amount} pence")


@pytest.mark.parametrize("algo", ["br", "gzip"])
def test_it_stores_capture_exception_from_the_real_sdk(
    api_server: str, ingest_key: str, engine: Engine, algo: str
) -> None:
    with sentry(api_server, ingest_key, _experiments={"transport_compression_algo": algo}):
        sentry_sdk.set_user({"id": "user-7", "email": "bride@example.com"})
        sentry_sdk.set_tag("organization_id", "org-3")
        for amount in (100, 250):
            try:
                _charge(amount)
            except ValueError:
                sentry_sdk.capture_exception()
    events = _events(engine)
    assert len(events) == 2
    first = events[0]
    assert (first.error_type, first.message) == ("ValueError", "cannot charge 100 pence")
    assert (first.service_name, first.release, first.environment) == (
        "payments",
        "payments@1.4.0",
        "test",
    )
    assert (first.user_id, first.organization_id) == ("user-7", "org-3")
    assert [f["function"] for f in first.frames if f.get("in_app")][-1] == "_charge"
    assert "bride@example.com" not in repr(dict(first._mapping))
    with engine.connect() as conn:
        group = conn.execute(select(error_groups)).one()  # two amounts, one bug
    assert (group.event_count, group.user_count, group.organization_count) == (2, 1, 1)
    assert group.culprit.endswith("in _charge")


def test_it_groups_capture_message_and_logging_on_the_template(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    log = logging.getLogger("refunds")
    with sentry(api_server, ingest_key):
        sentry_sdk.capture_message("Wedding venue sync stalled", level="warning")
        log.error("refund %s failed for order %s", "r-1", 17)
        log.error("refund %s failed for order %s", "r-2", 99)
        venues: dict[str, int] = {}
        try:
            venues["missing"]
        except KeyError:
            log.exception("lookup failed")
    events = _events(engine)
    by_type: dict[str, list[Any]] = {}
    for e in events:
        by_type.setdefault(e.error_type, []).append(e)
    assert sorted(by_type) == ["KeyError", "LogMessage", "Message"]
    refunds = by_type["LogMessage"]
    assert [e.message for e in refunds] == [
        "refund r-1 failed for order 17",
        "refund r-2 failed for order 99",
    ]
    assert refunds[0].group_id == refunds[1].group_id
    assert refunds[0].context["params"] == ["r-1", 17]
    assert by_type["Message"][0].severity == "low"  # level warning
    with engine.connect() as conn:
        template = conn.execute(
            select(error_groups.c.message_template).where(error_groups.c.id == refunds[0].group_id)
        ).scalar_one()
    assert template == "refund %s failed for order %s"


def test_it_links_errors_to_the_transaction_trace_and_skips_the_transaction(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    with sentry(api_server, ingest_key, traces_sample_rate=1.0):
        with sentry_sdk.start_transaction(name="checkout", op="http.server") as txn:
            try:
                _charge(5)
            except ValueError:
                sentry_sdk.capture_exception()
            trace_id = txn.trace_id
    [event] = _events(engine)  # the transaction itself is not an error event
    assert event.trace_id == trace_id


def test_it_makes_the_sdk_back_off_when_the_key_is_over_its_rate(
    api_app: Any, api_server: str, ingest_key: str, engine: Engine
) -> None:
    with engine.begin() as conn:
        conn.execute(update(api_keys).values(rate_limit_per_minute=1))
    route = "/api/{project_id}/envelope/"

    def answered(status: int) -> int:
        return int(api_app.state.stats.requests.get(("POST", route, status), 0))

    before = (answered(200), answered(429))
    with sentry(api_server, ingest_key) as client:
        for i in range(4):
            sentry_sdk.capture_message(f"flood {i}")
            sentry_sdk.flush(timeout=10)
        disabled = dict(client.transport._disabled_until)  # type: ignore[union-attr]
    assert len(_events(engine)) == 1
    assert (answered(200) - before[0], answered(429) - before[1]) == (1, 1)
    assert None in disabled  # "60::key": every category paused client-side
