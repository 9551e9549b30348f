"""The weekly digest (#17 item 7): built once for a complete week, with that week's figures,
delivered through the real outbox and Apprise to a real local webhook."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, insert, select

from monitoring_core.errors.model import ErrorInput
from monitoring_core.flows.digest import (
    DigestSchedule,
    due_week,
    list_digests,
    parse_schedule,
    send_due,
)
from monitoring_core.flows.error_ingest import ingest_errors
from monitoring_core.flows.notification_delivery import deliver_due
from monitoring_core.partitions import ensure_partitions
from monitoring_core.schema import (
    digests,
    health_check_results,
    health_checks,
    incidents,
    notification_outbox,
    settings,
)
from tests.alerting_support import channel, webhook_receiver

LONDON = ZoneInfo("Europe/London")
WEEK = date(2026, 6, 1)  # a Monday (British Summer Time)
SATURDAY = datetime(2026, 6, 6, 14, 0, tzinfo=LONDON)
DUE = datetime(2026, 6, 8, 8, 0, tzinfo=LONDON)  # the next Monday, 08:00


def _at(day: int, hour: int) -> datetime:
    return datetime(2026, 6, day, hour, 0, tzinfo=LONDON)


def _week_of_data(engine: Engine) -> None:
    with engine.begin() as conn:
        ensure_partitions(conn, start=_at(1, 0) - timedelta(days=8), end=_at(8, 0))
        check = conn.execute(
            insert(health_checks)
            .values(check_name="Payments partner", check_type="http", check_config={})
            .returning(health_checks.c.id)
        ).scalar_one()
        runs = [  # 3 of 4 runs good inside the week; the run before it does not count
            {"check_id": check, "time": _at(d, 12), "success": d != 6, "status": "ok"}
            for d in (2, 3, 4, 6)
        ]
        runs.append(
            {
                "check_id": check,
                "time": _at(1, 0) - timedelta(hours=1),
                "success": False,
                "status": "down",
            }
        )
        conn.execute(insert(health_check_results), runs)
        for number, (detected, acked, resolved, saturday) in enumerate(
            [(_at(3, 10), 10, 70, False), (SATURDAY, 4, 40, True)], start=1
        ):
            conn.execute(
                insert(incidents).values(
                    incident_number=f"INC-{number}",
                    title="Payments failing",
                    severity="SEV1",
                    status="resolved",
                    detected_at=detected,
                    acknowledged_at=detected + timedelta(minutes=acked),
                    resolved_at=detected + timedelta(minutes=resolved),
                    is_saturday=saturday,
                    affected_services=["payments"],
                )
            )
        errors = [
            ErrorInput("PaymentDeclined", "card declined", "payments", "api", _at(5, 9 + i % 8))
            for i in range(7)
        ] + [ErrorInput("PhotoTimeout", "upload timed out", "photos", "api", _at(2, 11))]
        ingest_errors(conn, errors, now=DUE, tz=LONDON, open_incidents=False)


def test_it_is_due_from_the_set_hour_of_the_following_week() -> None:
    schedule = DigestSchedule(weekday=0, hour=8)
    assert due_week(DUE - timedelta(minutes=1), schedule, LONDON) is None
    assert due_week(DUE, schedule, LONDON) == WEEK
    assert due_week(DUE + timedelta(days=6, hours=15), schedule, LONDON) == WEEK
    # Sunday 23:00 UTC is already Monday 00:00 in London in summer: not yet 08:00
    assert due_week(datetime(2026, 6, 7, 23, 0, tzinfo=UTC), schedule, LONDON) is None
    friday = DigestSchedule(weekday=4, hour=17)
    assert due_week(datetime(2026, 6, 12, 17, 0, tzinfo=LONDON), friday, LONDON) == WEEK


@pytest.mark.parametrize(
    "value",
    [[1], {"channel_ids": ["x"]}, {"weekday": "funday"}, {"hour": 24}, {"hour": True}, {"to": 1}],
)
def test_a_bad_setting_is_refused_with_what_is_wrong(value: object) -> None:
    with pytest.raises(ValueError):
        parse_schedule(value)


def test_the_digest_reaches_a_webhook_once_with_the_weeks_figures(engine: Engine) -> None:
    _week_of_data(engine)
    with webhook_receiver() as receiver:
        with engine.begin() as conn:
            hook = channel(conn, receiver.json_url("digest"), name="leadership")
            conn.execute(
                insert(settings).values(
                    key="digest", value={"channel_ids": [hook], "weekday": "monday", "hour": 8}
                )
            )
        assert send_due(engine, DUE - timedelta(hours=1), tz=LONDON) == "not due"
        assert "queued for 1 channel" in send_due(engine, DUE, tz=LONDON)
        assert "already built" in send_due(engine, DUE + timedelta(hours=1), tz=LONDON)
        report = deliver_due(engine, DUE, public_url="http://ui", api_public_url="http://api")
        assert report.sent == 1
    assert len(receiver.received) == 1
    body = receiver.received[0]["body"]
    assert body["title"] == "Weekly digest: 1 June – 7 June 2026"
    text = body["message"]
    assert "Payments partner: 75.000 % of 4 runs" in text
    assert "2 incident(s); mean time to acknowledge 7 min, to resolve 55 min" in text
    assert "on Saturday: 1 (acknowledged in 4 min)" in text
    assert "PaymentDeclined: card declined — 7 events" in text
    assert text.index("PaymentDeclined") < text.index("PhotoTimeout")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(digests)).scalar() == 1
        kept = list_digests(conn)
        sent = conn.execute(select(notification_outbox.c.kind, notification_outbox.c.status)).all()
    assert kept[0]["week_start"] == WEEK
    assert kept[0]["figures"]["incidents"]["incidents"] == 2
    assert sent == [("digest", "sent")]


def test_without_channels_it_is_built_and_kept_but_sent_nowhere(engine: Engine) -> None:
    assert "queued for 0 channel" in send_due(engine, DUE, tz=LONDON)
    with engine.connect() as conn:
        kept = list_digests(conn)
        assert conn.execute(select(func.count()).select_from(notification_outbox)).scalar() == 0
    assert kept[0]["markdown"].startswith("# Weekly digest: 1 June – 7 June 2026")
    assert "no health check ran this week" in kept[0]["markdown"]
