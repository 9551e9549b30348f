"""Issue 13 item 4: one bad error event never fails other clients' requests (group commit)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine, select

from monitoring_core.errors.batcher import GroupCommit
from monitoring_core.schema import error_events

VALID = 150


def _sentry_event(message: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "level": "error",
        "platform": "python",
        "release": "payments@1.4.0",
        "exception": {"values": [{"type": "ValueError", "value": message}]},
        **extra,
    }


def _own_event(message: str) -> dict[str, Any]:
    return {"error_type": "ValueError", "message": message, "service_name": "s", "level": "api"}


async def _send_all(
    base: str, key: str, requests: list[tuple[str, dict[str, Any]]]
) -> list[httpx.Response]:
    headers = {"X-Sentry-Auth": f"Sentry sentry_key={key}", "Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=VALID + 10)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as c:
        return await asyncio.gather(
            *(c.post(path, content=orjson.dumps(body)) for path, body in requests)
        )


def _stored(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(error_events.c.message, error_events.c.tags)))


@pytest.mark.parametrize("route", ["/api/1/store/", "/api/monitoring/errors"])
def test_it_answers_every_valid_request_when_one_carries_a_nul(
    api_server: str, ingest_key: str, engine: Engine, route: str
) -> None:
    make = _sentry_event if "store" in route else _own_event
    poison = make("bad\x00value")
    if "store" in route:
        poison["tags"] = {"k\x00ey": "v\x00"}
        poison["extra"] = {"deep": {"x": "nul \x00 here"}}
    requests = [(route, make(f"fine {n}")) for n in range(VALID)]
    requests.insert(VALID // 2, (route, poison))

    answers = asyncio.run(_send_all(api_server, ingest_key, requests))

    statuses = [r.status_code for r in answers]
    poisoned = statuses.pop(VALID // 2)
    assert statuses == [200 if "store" in route else 202] * VALID, {s for s in statuses}
    rows = _stored(engine)
    messages = {row.message for row in rows}
    assert {f"fine {n}" for n in range(VALID)} <= messages
    if "store" in route:  # Sentry SDKs drop refused events: the NUL is cleaned and stored
        assert poisoned == 200
        assert "bad\ufffdvalue" in messages
        assert {"k\ufffdey": "v\ufffd"}.items() <= next(
            r.tags for r in rows if r.message == "bad\ufffdvalue"
        ).items()
    else:  # the own API refuses it, naming the field, and stores nothing of it
        assert poisoned == 422
        assert answers[VALID // 2].json()["detail"][0]["field"] == "message"
        assert len(rows) == VALID


def test_it_fails_only_the_request_whose_own_write_fails() -> None:
    """A shared write that fails is retried request by request (no database needed)."""
    calls: list[list[int]] = []
    gate = threading.Event()

    def write(items: list[int]) -> list[int]:
        calls.append(list(items))
        if len(calls) == 1:
            gate.wait(5)  # hold the first write so the others share the second one
        if -1 in items:
            raise ValueError("a value the database cannot store")
        return [i * 10 for i in items]

    async def scenario() -> list[Any]:
        commit: GroupCommit[int, int] = GroupCommit(write, shared_errors=(ConnectionError,))
        first = asyncio.create_task(commit.submit([0]))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(commit.submit(items)) for items in ([1], [-1, 2], [3])]
        await asyncio.sleep(0.05)
        gate.set()
        return list(await asyncio.gather(first, *rest, return_exceptions=True))

    answers = asyncio.run(scenario())
    assert answers[:2] == [[0], [10]] and answers[3] == [30]
    assert isinstance(answers[2], ValueError)
    assert calls == [[0], [1, -1, 2, 3], [1], [-1, 2], [3]]


def test_it_fails_every_waiter_at_once_when_the_database_is_gone() -> None:
    calls: list[list[int]] = []

    def write(items: list[int]) -> list[int]:
        calls.append(list(items))
        raise ConnectionError("database unreachable")

    async def scenario() -> list[Any]:
        commit: GroupCommit[int, int] = GroupCommit(write, shared_errors=(ConnectionError,))
        tasks = [asyncio.create_task(commit.submit([n])) for n in range(3)]
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    answers = asyncio.run(scenario())
    assert all(isinstance(a, ConnectionError) for a in answers)
    assert calls == [[0, 1, 2]]  # no retry storm against a database that is down
