"""The live stream through a real HTTP client: events as they are stored, resume with
Last-Event-ID, keep-alives, scopes; and the feed's cursor on its own."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine, insert

from monitoring_core.accounts import create_api_key
from monitoring_core.api import routes_stream
from monitoring_core.enums import ApiScope
from monitoring_core.flows.live_feed import Cursor, events_after, latest_cursor
from monitoring_core.schema import (
    alert_events,
    error_group_changes,
    error_groups,
    notification_deliveries,
)

PATH = "/api/monitoring/live/stream"


@pytest.fixture
def read_key(engine: Engine) -> str:
    with engine.begin() as conn:
        return create_api_key(conn, name="test-read", scope=ApiScope.READ)


def _alert(engine: Engine, at: datetime, to: str, rule_id: int = 7) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(alert_events).values(
                rule_id=rule_id, time=at, from_status="ok", to_status=to, value=3.0
            )
        )


def _delivery(engine: Engine, at: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(notification_deliveries).values(
                channel_id=1, attempted_at=at, status="failed", error="https://secret.example/x"
            )
        )


class _Reader:
    """SSE frames of one streaming response, read on a thread, taken with a timeout."""

    def __init__(self, response: httpx.Response) -> None:
        self.frames: queue.Queue[dict[str, str]] = queue.Queue()
        self.comments: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._run, args=(response,), daemon=True)
        self.thread.start()

    def _run(self, response: httpx.Response) -> None:
        frame: dict[str, str] = {}
        try:
            for line in response.iter_lines():
                if line.startswith(":"):
                    self.comments.put(line)
                elif not line:
                    if frame:
                        self.frames.put(frame)
                    frame = {}
                else:
                    name, _, value = line.partition(":")
                    frame[name] = value.removeprefix(" ")
        except httpx.HTTPError:
            pass  # the test closed the stream

    def next(self, timeout: float = 10) -> dict[str, str]:
        return self.frames.get(timeout=timeout)


@pytest.fixture
def stream(api_server: str, read_key: str) -> Iterator[object]:
    clients: list[httpx.Client] = []

    def open_stream(**headers: str) -> tuple[httpx.Response, _Reader]:
        client = httpx.Client(base_url=api_server, timeout=httpx.Timeout(30, read=60))
        clients.append(client)
        all_headers = {"Authorization": f"Bearer {read_key}", **headers}
        response = client.send(client.build_request("GET", PATH, headers=all_headers), stream=True)
        return response, _Reader(response)

    yield open_stream
    for client in clients:
        client.close()


def test_it_streams_new_events_and_resumes_after_a_disconnect(
    engine: Engine, stream: object, real_now: datetime
) -> None:
    _alert(engine, real_now - timedelta(minutes=5), "firing", rule_id=1)  # before: not sent
    response, reader = stream()  # type: ignore[operator]
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    hello = reader.next()
    assert hello["retry"] == "2000" and Cursor.parse(hello["id"]).alert == 1

    started = time.monotonic()
    _alert(engine, real_now, "firing")
    event = reader.next()
    assert time.monotonic() - started < 5  # the bench measures the real figure
    assert event["event"] == "alert"
    assert '"type":"alert.state"' in event["data"]
    assert '"to":"firing"' in event["data"] and '"rule_id":7' in event["data"]
    last_id = event["id"]
    response.close()

    _alert(engine, real_now + timedelta(seconds=1), "resolved")
    _delivery(engine, real_now + timedelta(seconds=2))
    response, reader = stream(**{"Last-Event-ID": last_id})
    reader.next()  # retry + cursor
    missed = [reader.next(), reader.next()]
    assert [m["event"] for m in missed] == ["alert", "delivery"]
    assert '"to":"resolved"' in missed[0]["data"]
    assert "secret.example" not in missed[1]["data"]  # delivery errors are not streamed
    assert Cursor.parse(missed[1]["id"]) == Cursor(alert=3, delivery=1)
    _alert(engine, real_now + timedelta(seconds=3), "firing", rule_id=9)
    live = reader.next()
    assert '"rule_id":9' in live["data"]
    with pytest.raises(queue.Empty):  # nothing twice
        reader.next(timeout=2.5)


def test_it_sends_keep_alives(
    engine: Engine, stream: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes_stream, "KEEPALIVE_S", 0.3)
    _response, reader = stream()  # type: ignore[operator]
    assert reader.comments.get(timeout=10) == ": keep-alive"


def test_it_refuses_bad_resumes_and_other_scopes(
    engine: Engine, api_server: str, read_key: str
) -> None:
    with httpx.Client(base_url=api_server, timeout=10) as client:
        bad = client.get(
            PATH, headers={"Authorization": f"Bearer {read_key}", "Last-Event-ID": "x"}
        )
        assert bad.status_code == 400 and "Last-Event-ID" in bad.text
        assert client.get(PATH).status_code == 401
        with engine.begin() as conn:
            ingest = create_api_key(conn, name="ingest-only", scope=ApiScope.INGEST)
        assert client.get(PATH, headers={"Authorization": f"Bearer {ingest}"}).status_code == 403


def test_the_feed_keeps_each_tables_order_and_its_cursor(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(error_groups).values(
                fingerprint="f", error_type="KeyError", message_template="k", level="error",
                severity="high", first_seen=now, last_seen=now,
            )
        )  # fmt: skip
        conn.execute(insert(error_group_changes).values(group_id=1, kind="regressed", time=now))
    _alert(engine, now, "firing")
    _delivery(engine, now - timedelta(seconds=1))
    _alert(engine, now - timedelta(seconds=5), "resolved")  # later id, earlier time
    with engine.connect() as conn:
        events, cursor = events_after(conn, Cursor())
        assert cursor == latest_cursor(conn) == Cursor(alert=2, delivery=1, error=1)
        order = [(e.kind, e.row_id) for e in events]
        # alert 2 (earlier time, later id) stays after alert 1
        assert order == [("delivery", 1), ("alert", 1), ("alert", 2), ("error", 1)]
        assert events[3].name == "error_group"  # the SSE event: field
        assert events[3].data["type"] == "error_group.regressed"
        assert events_after(conn, cursor) == ([], cursor)
    with pytest.raises(ValueError):
        Cursor.parse("1.2.3.4")
