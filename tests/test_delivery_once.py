"""A notification goes out once: a lease per notification, renewed while it is sent, and the
idempotency key carried to the webhook receiver (issue 13, item 7).

Time is a parameter: the slow receiver moves a simulated clock on by the time a send "takes",
and a lease runs out by claiming with a later `now`, never by waiting.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from monitoring_core.flows.notification_delivery import deliver_due
from monitoring_core.notify.delivery import LEASE, claim_due
from monitoring_core.notify.outbox import enqueue, outbox_rows
from monitoring_core.notify.templates import Message
from monitoring_core.notify.transport import IDEMPOTENCY_HEADER, SendResult
from monitoring_core.schema import notification_deliveries, notification_outbox
from tests.alerting_support import channel

ROOT = Path(__file__).resolve().parent.parent
URL = "http://ui.test"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


class SimClock:
    """A clock the test moves on by hand; every worker in the test reads it."""

    def __init__(self, start: datetime) -> None:
        self._at, self._lock = start, threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._at

    def advance(self, by: timedelta) -> None:
        with self._lock:
            self._at += by


@dataclass
class SlowReceiver:
    """Every POST: recorded (title, Idempotency-Key header, body field), then answered slowly."""

    url: str = ""
    received: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def json_url(self) -> str:
        return self.url.replace("http://", "json://") + "/hook"

    def count(self) -> int:
        with self.lock:
            return len(self.received)


@contextmanager
def slow_receiver(
    delay_s: float, on_request: Callable[[], None] = lambda: None
) -> Iterator[SlowReceiver]:
    receiver = SlowReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            with receiver.lock:
                receiver.received.append(
                    (
                        body["title"],
                        self.headers.get(IDEMPOTENCY_HEADER),
                        body.get("idempotency_key"),
                    )
                )
            on_request()
            time.sleep(delay_s)  # the channel is slow: a send takes this long
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def queue(engine: Engine, channel_id: int, n: int, at: datetime) -> dict[str, str]:
    """`n` notifications due at `at`; title -> idempotency key."""
    keys = {}
    with engine.begin() as conn:
        for i in range(n):
            message = Message(f"page {i}", f"body {i}", "failure")
            rows = outbox_rows(
                channel_ids=[channel_id],
                message=message,
                kind="firing",
                idempotency_key=f"k{i}",
                now=at,
            )
            enqueue(conn, rows)
            keys[message.title] = rows[0]["idempotency_key"]
    return keys


def statuses(engine: Engine) -> list[tuple[str, str | None]]:
    o = notification_outbox
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(o.c.status, o.c.claimed_by).order_by(o.c.id))]


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # polling for another process or thread, not passing time


def test_it_sends_each_once_with_two_workers_and_a_channel_slower_than_the_lease(
    engine: Engine,
) -> None:
    clock = SimClock(NOW)
    # 30 sends of 5 s each take 150 s of (simulated) time, longer than one LEASE.
    on_request = lambda: clock.advance(timedelta(seconds=5))  # noqa: E731
    with slow_receiver(0.02, on_request) as hook:
        with engine.begin() as conn:
            ch = channel(conn, hook.json_url(), rate_limit_per_minute=1000)
        keys = queue(engine, ch, 30, NOW)
        barrier = threading.Barrier(2)

        def worker(name: str) -> None:
            barrier.wait()
            deadline = time.monotonic() + 60
            # Like the worker's job every second: rounds until nothing is left to send.
            while any(s != "sent" for s, _ in statuses(engine)) and time.monotonic() < deadline:
                deliver_due(engine, clock(), worker_id=name, clock=clock, public_url=URL)
                time.sleep(0.01)  # the job's interval, shortened

        threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
    assert clock() - NOW >= timedelta(seconds=150) > LEASE
    titles = Counter(title for title, _, _ in hook.received)
    assert {t: n for t, n in titles.items() if n > 1} == {}  # no duplicate
    assert set(titles) == set(keys)
    assert {s for s, _ in statuses(engine)} == {"sent"}
    assert {claimed_by for _, claimed_by in statuses(engine)} == {"a", "b"}  # both worked
    with engine.connect() as conn:
        assert conn.execute(select(notification_deliveries.c.id)).all().__len__() == 30


def test_it_gives_webhook_receivers_the_idempotency_key(engine: Engine) -> None:
    with slow_receiver(0) as hook:
        with engine.begin() as conn:
            ch = channel(conn, hook.json_url())
        keys = queue(engine, ch, 2, NOW)
        assert deliver_due(engine, NOW, worker_id="w", public_url=URL).sent == 2
    assert sorted(hook.received) == sorted((t, k, k) for t, k in keys.items())


def test_it_renews_the_lease_of_a_send_that_outlasts_it(engine: Engine) -> None:
    clock = SimClock(NOW)
    taken_over: list[int] = []

    def hung_send(url: str, **message: Any) -> SendResult:
        clock.advance(LEASE + timedelta(minutes=1))  # this one send takes three minutes
        o = notification_outbox

        def renewed() -> bool:
            with engine.connect() as conn:
                return conn.execute(select(o.c.next_attempt_at)).scalar_one() > clock()

        wait_for(renewed, 10, "the lease to be renewed")
        with engine.begin() as conn:  # another worker, now, finds nothing due
            taken_over.extend(c.id for c in claim_due(conn, now=clock(), worker_id="other"))
        return SendResult(True, 1.0)

    with engine.begin() as conn:
        ch = channel(conn, "json://127.0.0.1:9/never")
    queue(engine, ch, 1, NOW)
    report = deliver_due(
        engine,
        NOW,
        worker_id="w",
        sender=hung_send,
        clock=clock,
        renew_every_s=0.02,
        public_url=URL,
    )
    assert report.sent == 1 and taken_over == []
    assert statuses(engine) == [("sent", "w")]


def _worker(database_url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.worker", "--only", "notify"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_it_repeats_at_most_the_one_in_flight_page_when_a_worker_is_killed(
    engine: Engine, database_url: str, real_now: datetime
) -> None:
    with slow_receiver(0.2) as hook:
        doomed, survivor = _worker(database_url), _worker(database_url)  # they start meanwhile
        try:
            with engine.begin() as conn:
                ch = channel(conn, hook.json_url(), rate_limit_per_minute=1000)
            keys = queue(engine, ch, 30, real_now - timedelta(seconds=1))
            wait_for(lambda: hook.count() >= 4, 60, "the first sends")
            mark = f":{doomed.pid}"

            def doomed_is_sending() -> bool:
                return any(s == "sending" and (c or "").endswith(mark) for s, c in statuses(engine))

            wait_for(doomed_is_sending, 30, "the doomed worker to be mid-send")
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(10)

            def drained() -> bool:  # all sent, but for what the dead worker still holds
                return all(s == "sent" or (c or "").endswith(mark) for s, c in statuses(engine))

            wait_for(drained, 60, "the surviving worker to send the rest")
        finally:
            for proc in (doomed, survivor):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(20)
        stuck = [c for s, c in statuses(engine) if s != "sent"]
        assert len(stuck) <= 1  # one lease per notification: only the in-flight one is held
        # The dead worker's lease runs out: a claim with a later `now` takes the row over.
        later = datetime.now(UTC) + LEASE + timedelta(seconds=5)
        deliver_due(engine, later, worker_id="rescue", public_url=URL)
    assert {s for s, _ in statuses(engine)} == {"sent"}
    titles = Counter(title for title, _, _ in hook.received)
    assert set(titles) == set(keys)
    repeated = [t for t, n in titles.items() if n > 1]
    assert len(repeated) <= 1 and sum(titles.values()) <= 31
    # Every receipt, the repeat too, carries its notification's key: the receiver can drop it.
    assert all(header == keys[title] for title, header, _ in hook.received)
