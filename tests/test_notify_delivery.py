"""Outbox delivery through Apprise to a real local webhook receiver."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, Table, select

from monitoring_core.alerts.store import list_active_alerts
from monitoring_core.flows.notification_delivery import deliver_due
from monitoring_core.notify import transport
from monitoring_core.notify.channels import ChannelInvalid, create_channel, list_channels, mask_url
from monitoring_core.notify.delivery import LEASE, MAX_ATTEMPTS, backoff, claim_due
from monitoring_core.notify.outbox import enqueue, outbox_rows
from monitoring_core.notify.templates import Message
from monitoring_core.schema import (
    notification_channels,
    notification_deliveries,
    notification_outbox,
)
from tests.alerting_support import channel, webhook_receiver

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
URL = "http://ui.test"


def put(engine: Engine, channel_id: int, n: int = 1, key: str = "k") -> list[int]:
    ids = []
    with engine.begin() as conn:
        for i in range(n):
            message = Message(f"title {i}", f"body {i}", "failure")
            rows = outbox_rows(channel_ids=[channel_id], message=message, kind="firing",
                               idempotency_key=f"{key}{i}", now=NOW)  # fmt: skip
            ids += enqueue(conn, rows)
    return ids


def rows(engine: Engine, table: Table = notification_outbox) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table).order_by(table.c.id))]


def test_it_delivers_through_apprise_and_records_the_attempt(engine: Engine) -> None:
    with webhook_receiver() as hook:
        with engine.begin() as conn:
            ch = channel(conn, hook.json_url("alerts"))
        put(engine, ch)
        report = deliver_due(engine, NOW, worker_id="w1", public_url=URL)
    assert report.sent == 1 and hook.titles() == ["title 0"]
    assert hook.received[0]["path"] == "/alerts" and hook.received[0]["body"]["type"] == "failure"
    (row,) = rows(engine)
    assert (row["status"], row["attempts"], row["sent_at"]) == ("sent", 1, NOW)
    (attempt,) = rows(engine, notification_deliveries)
    assert attempt["status"] == "sent" and attempt["channel_id"] == ch and attempt["latency_ms"] > 0


def test_it_writes_an_idempotency_key_once(engine: Engine) -> None:
    with engine.begin() as conn:
        ch = channel(conn, "json://127.0.0.1:9/x")
    assert len(put(engine, ch, key="same")) == 1
    assert put(engine, ch, key="same") == []
    assert len(rows(engine)) == 1


def test_it_never_double_sends_with_two_workers_in_parallel(engine: Engine) -> None:
    with webhook_receiver() as hook:
        with engine.begin() as conn:
            ch = channel(conn, hook.json_url(), rate_limit_per_minute=1000)
        put(engine, ch, n=40)
        barrier = threading.Barrier(2)

        def worker(name: str) -> None:
            barrier.wait()
            while deliver_due(engine, NOW, worker_id=name, limit=5, public_url=URL).sent:
                pass

        threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    titles = hook.titles()
    assert sorted(titles) == sorted(f"title {i}" for i in range(40))
    assert len(titles) == len(set(titles)) == 40
    assert len(rows(engine, notification_deliveries)) == 40  # one attempt per message


def test_it_loses_nothing_when_a_worker_dies_between_claim_and_send(engine: Engine) -> None:
    with webhook_receiver() as hook:
        with engine.begin() as conn:
            ch = channel(conn, hook.json_url())
        put(engine, ch)
        with engine.begin() as conn:  # worker "dead" claims, commits, and never sends
            assert len(claim_due(conn, now=NOW, worker_id="dead")) == 1
        assert deliver_due(engine, NOW + LEASE / 2, worker_id="alive", public_url=URL).sent == 0
        report = deliver_due(engine, NOW + LEASE, worker_id="alive", public_url=URL)
    assert report.sent == 1 and hook.titles() == ["title 0"]
    assert rows(engine)[0]["attempts"] == 2  # the lost claim counts as an attempt


def test_it_retries_with_backoff_records_failures_and_raises_a_self_alert(engine: Engine) -> None:
    with webhook_receiver() as hook:
        with engine.begin() as conn:
            bad = channel(conn, hook.json_url("fail"), name="pager")
            good = channel(conn, hook.json_url("ops"), name="ops")
        put(engine, bad)
        at = NOW
        for attempt in range(1, 4):
            report = deliver_due(engine, at, worker_id="w", public_url=URL)
            assert report.failed == 1
            row = rows(engine)[0]
            assert (row["status"], row["attempts"]) == ("pending", attempt)
            assert row["next_attempt_at"] == at + backoff(attempt)
            assert deliver_due(engine, at + backoff(attempt) / 2, worker_id="w").failed == 0
            at += backoff(attempt)
        # three failures in a row: the system's own alert fires and goes to the other channel
        with engine.connect() as conn:
            (alert,) = list_active_alerts(conn)
        assert alert["alert_name"] == "Notification channel failing"
        assert alert["alert_key"] == f"channel:{bad}"
        deliver_due(engine, at, worker_id="w", public_url=URL)
    attempts = rows(engine, notification_deliveries)
    assert [a["status"] for a in attempts if a["channel_id"] == bad] == ["failed"] * 4
    assert all("FAILURE" in a["error"] for a in attempts if a["channel_id"] == bad)
    assert [r["path"] for r in hook.received] == ["/ops"]
    assert "pager keeps failing" in hook.titles()[0]
    assert good in [r["channel_id"] for r in rows(engine)]


def test_it_gives_up_after_max_attempts(engine: Engine) -> None:
    with engine.begin() as conn:
        ch = channel(conn, "json://127.0.0.1:9/x")
    put(engine, ch)
    at = NOW
    for attempt in range(1, MAX_ATTEMPTS + 1):
        deliver_due(engine, at, worker_id="w", public_url=URL)
        at += backoff(attempt)
    row = rows(engine)[0]
    assert (row["status"], row["attempts"]) == ("failed", MAX_ATTEMPTS)
    assert deliver_due(engine, at + timedelta(days=1), worker_id="w").failed == 0


def test_it_resolves_the_self_alert_when_the_channel_recovers(engine: Engine) -> None:
    with webhook_receiver() as hook:
        with engine.begin() as conn:
            ch = channel(conn, hook.json_url("fail"))
        put(engine, ch, n=3)
        deliver_due(engine, NOW, worker_id="w", public_url=URL)
        with engine.connect() as conn:
            assert len(list_active_alerts(conn)) == 1
        with engine.begin() as conn:
            conn.execute(
                notification_outbox.update().values(next_attempt_at=NOW)
            )  # due again at once
            conn.execute(notification_channels.update().values(url=hook.json_url("ok")))
        deliver_due(engine, NOW + timedelta(minutes=1), worker_id="w", public_url=URL)
        with engine.connect() as conn:
            assert list_active_alerts(conn) == []


def test_it_rate_limits_per_channel(engine: Engine) -> None:
    with webhook_receiver() as hook:
        with engine.begin() as conn:
            ch = channel(conn, hook.json_url(), rate_limit_per_minute=3)
        put(engine, ch, n=5)
        first = deliver_due(engine, NOW, worker_id="w", public_url=URL)
        again = deliver_due(engine, NOW + timedelta(seconds=20), worker_id="w", public_url=URL)
        later = deliver_due(
            engine, NOW + timedelta(minutes=1, seconds=5), worker_id="w", public_url=URL
        )
    assert (first.sent, again.sent, later.sent) == (3, 0, 2)
    assert len(hook.received) == 5
    assert all(r["attempts"] == 1 for r in rows(engine))  # deferral is not an attempt


def test_it_does_not_send_to_a_disabled_channel(engine: Engine) -> None:
    with webhook_receiver() as hook:
        with engine.begin() as conn:
            ch = channel(conn, hook.json_url(), is_enabled=False)
        put(engine, ch, n=5)
        report = deliver_due(engine, NOW, worker_id="w", public_url=URL)
    assert (report.failed, report.skipped) == (0, 5) and hook.received == []
    assert {r["status"] for r in rows(engine)} == {"skipped"}  # the outbox says so too
    assert {r["status"] for r in rows(engine, notification_deliveries)} == {"skipped"}
    # Switched off on purpose is not "keeps failing": no self-alert.
    with engine.connect() as conn:
        assert list_active_alerts(conn) == []


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("json://user:s3cretpass@127.0.0.1:9/x", "s3cretpass"),
        (
            "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general",
            "TIiajkdnlazkcOXrIdevi7FQ",
        ),
        ("mailto://user:hunter2hunter2@gmail.com", "hunter2hunter2"),
    ],
)
def test_it_masks_channel_urls(engine: Engine, url: str, secret: str) -> None:
    assert secret not in mask_url(url)
    with engine.begin() as conn:
        reply = create_channel(conn, body={"name": "c", "url": url})
        listed = list_channels(conn)
    assert secret not in reply["url"] and secret not in str(listed)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "url": "nope://x"}, "url"),
        ({"name": "", "url": "json://127.0.0.1/x"}, "name"),
        ({"name": "x", "url": "json://127.0.0.1/x", "tags": "a"}, "tags"),
        (
            {"name": "x", "url": "json://127.0.0.1/x", "rate_limit_per_minute": 0},
            "rate_limit_per_minute",
        ),
    ],
)
def test_it_rejects_invalid_channels(engine: Engine, body: dict, field: str) -> None:
    with engine.begin() as conn, pytest.raises(ChannelInvalid) as info:
        create_channel(conn, body=body)
    assert field in [p["field"] for p in info.value.problems]


def test_it_reports_a_failed_send_as_data() -> None:
    result = transport.send("json://127.0.0.1:9/x", title="t", body="b")
    assert result.ok is False and "FAILURE" in (result.error or "")
    assert transport.send("not a url", title="t", body="b").error == "invalid Apprise URL"
