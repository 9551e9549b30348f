"""The notification outbox: rows written in the caller's (evaluation) transaction, sent later
by the delivery job. Idempotency keys make a repeated write a no-op."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert

from monitoring_core.notify.templates import Message
from monitoring_core.schema import notification_outbox

__all__ = ["enqueue", "outbox_rows"]


def outbox_rows(
    *,
    channel_ids: Iterable[int],
    message: Message,
    kind: str,
    idempotency_key: str,
    now: datetime,
    alert_instance_id: int | None = None,
    incident_id: int | None = None,
) -> list[dict[str, Any]]:
    """One outbox row per channel (idempotency key `idempotency_key:ch<id>`), for `enqueue`."""
    return [
        {
            "channel_id": channel_id,
            "alert_instance_id": alert_instance_id,
            "incident_id": incident_id,
            "kind": kind,
            "title": message.title,
            "body": message.body,
            "notify_type": message.notify_type,
            "idempotency_key": f"{idempotency_key}:ch{channel_id}",
            "status": "pending",
            "next_attempt_at": now,
            "created_at": now,
        }
        for channel_id in dict.fromkeys(channel_ids)  # de-duplicated, order kept
    ]


def enqueue(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Write outbox rows in one statement; a row whose idempotency key exists is skipped.
    Ids of the new rows."""
    if not rows:
        return []
    new_ids = conn.execute(
        pg_insert(notification_outbox)
        .values(list(rows))
        .on_conflict_do_nothing(index_elements=[notification_outbox.c.idempotency_key])
        .returning(notification_outbox.c.id)
    ).scalars()
    return [int(i) for i in new_ids]
