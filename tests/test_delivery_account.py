"""Issue 12 item 8, last sentence: the incident timeline, Settings' delivery figures and the
delivery log give the same account of each delivery (sent, failed, skipped), on the same data:
one channel that works, one that keeps answering 500, one that is disabled (the demo's
situation, which the timeline used to call "Notification failed" while Settings said
"0 failed")."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from monitoring_core.enums import Role
from monitoring_core.flows.notification_delivery import deliver_due
from monitoring_core.incidents import service
from monitoring_core.incidents.notifications import record_notifications
from monitoring_core.incidents.store import list_timeline
from monitoring_core.notify.delivery import MAX_ATTEMPTS, channel_health, delivery_log
from monitoring_core.notify.outbox import enqueue, outbox_rows
from monitoring_core.notify.templates import Message
from tests.alerting_support import channel, webhook_receiver
from tests.ui_harness import table_with

AppFactory = Callable[[Role | None], AppTest]
LONDON = ZoneInfo("Europe/London")


def _deliver_everything(engine: Engine, now: datetime) -> dict[str, int]:
    """Three channels, an incident paging each (the disabled one twice), delivered until every
    row is finished; channel ids by name."""
    with webhook_receiver() as hook:
        with engine.begin() as conn:
            ids = {
                "works": channel(conn, hook.json_url("ok"), "works"),
                "broken": channel(conn, hook.json_url("fail"), "broken"),  # answers 500
                "off": channel(conn, hook.json_url("off"), "off", is_enabled=False),
            }
            incident = service.create_incident(
                conn,
                body={"title": "Checkout down", "severity": "SEV2"},
                actor="alice",
                role="responder",
                now=now,
                tz=LONDON,
            )
            for n in range(2):
                rows = outbox_rows(
                    channel_ids=list(ids.values()) if n == 0 else [ids["off"]],
                    message=Message(f"page {n}", "Checkout down", "failure"),
                    kind="escalation",
                    idempotency_key=f"account-{n}",
                    now=now,
                    incident_id=int(incident["id"]),
                )
                enqueue(conn, rows)
        at = now
        for _ in range(MAX_ATTEMPTS + 1):  # the broken channel is retried until it gives up
            deliver_due(engine, at, worker_id="w", public_url="http://ui")
            at += timedelta(minutes=31)  # past every backoff
        # (the broken channel's self-alert goes to the working one too: another delivery)
        assert "/ok" in [r["path"] for r in hook.received]
        assert not any(r["path"] == "/off" for r in hook.received)
    with engine.begin() as conn:
        record_notifications(conn, now=at)
    return {**ids, "incident": int(incident["id"])}


def test_timeline_settings_and_the_delivery_log_agree_on_every_delivery(
    engine: Engine, now: datetime, logged_in_app: AppFactory
) -> None:
    ids = _deliver_everything(engine, now)
    names = {v: k for k, v in ids.items() if k != "incident"}
    since = now - timedelta(days=1)
    with engine.connect() as conn:
        log = delivery_log(conn, since=since)
        health = {h["id"]: h for h in channel_health(conn, since=since)}
        timeline = [
            e
            for e in list_timeline(conn, incident_id=ids["incident"])
            if e["kind"].startswith("notification_")
        ]

    # The delivery log: one row per notification, with its outcome.
    paged = [row for row in log if row["incident_id"] == ids["incident"]]
    by_outbox = {row["outbox_id"]: row for row in paged}
    assert sorted((names[r["channel_id"]], r["status"]) for r in paged) == [
        ("broken", "failed"),
        ("off", "skipped"),
        ("off", "skipped"),
        ("works", "sent"),
    ]
    assert {names[r["channel_id"]]: r["attempts"] for r in paged}["broken"] == MAX_ATTEMPTS

    # The incident timeline: the same outcome for the same notification.
    told = {e["details"]["outbox_id"]: e["kind"].removeprefix("notification_") for e in timeline}
    assert told == {outbox_id: row["status"] for outbox_id, row in by_outbox.items()}
    skipped = [e["message"] for e in timeline if e["kind"] == "notification_skipped"]
    assert len(skipped) == 2 and all("skipped (channel disabled)" in m for m in skipped)
    assert not any("failed" in e["message"] for e in timeline if "off" in e["message"])

    # Settings' figures: the same counts, per channel.
    counts = Counter((r["channel_id"], r["status"]) for r in log)
    for channel_id, h in health.items():
        assert (h["sent"], h["failures"], h["skipped"]) == (
            counts[(channel_id, "sent")],
            counts[(channel_id, "failed")],
            counts[(channel_id, "skipped")],
        ), names[channel_id]
    assert health[ids["broken"]]["attempts"] == MAX_ATTEMPTS

    # And the page says what those figures say, with the log beside them.
    at = logged_in_app(Role.ADMIN)
    at.run()
    at.switch_page("pages/settings.py").run()
    assert not at.exception
    captions = " | ".join(str(c.value) for c in at.caption)
    for h in health.values():
        figures = f"{h['sent']} sent, {h['failures']} failed, {h['skipped']} skipped (disabled)"
        assert figures in captions
    assert "0 sent, 1 failed, 0 skipped (disabled)" in captions
    assert "0 sent, 0 failed, 2 skipped (disabled)" in captions
    page_log = table_with(at, "Channel", "Outcome", "Attempts")  # outcomes in words
    assert sorted(zip(page_log["Channel"], page_log["Outcome"], strict=True)) == sorted(
        (names[r["channel_id"]], r["status"].capitalize()) for r in log
    )
