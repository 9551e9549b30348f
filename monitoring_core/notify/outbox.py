"""The notification outbox: rows written in the caller's (evaluation) transaction, sent later
by the delivery job. Idempotency keys make a repeated write a no-op."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert

from monitoring_core.notify.templates import Message
from monitoring_core.schema import notification_outbox

__all__ = ["enqueue"]


def enqueue(
    conn: Connection,
    *,
    channel_ids: Iterable[int],
    message: Message,
    kind: str,
    idempotency_key: str,
    now: datetime,
    alert_instance_id: int | None = None,
    incident_id: int | None = None,
) -> list[int]:
    """One outbox row per channel (key `idempotency_key:channel`); ids of the new rows."""
    created = []
    for channel_id in dict.fromkeys(channel_ids):  # de-duplicated, order kept
        new_id = conn.execute(
            pg_insert(notification_outbox)
            .values(
                channel_id=channel_id,
                alert_instance_id=alert_instance_id,
                incident_id=incident_id,
                kind=kind,
                title=message.title,
                body=message.body,
                notify_type=message.notify_type,
                idempotency_key=f"{idempotency_key}:ch{channel_id}",
                status="pending",
                next_attempt_at=now,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=[notification_outbox.c.idempotency_key])
            .returning(notification_outbox.c.id)
        ).scalar()
        if new_id is not None:
            created.append(int(new_id))
    return created
