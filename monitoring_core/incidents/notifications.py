"""Notifications on the incident timeline: every outbox row of an incident that was delivered,
failed for good, or skipped (its channel is disabled) becomes a `notification_sent` /
`notification_failed` / `notification_skipped` entry: the same outcome the delivery log and
Settings give (`notify.delivery.delivery_log`).

The delivery job belongs to alerting; this job reads its results afterwards, so delivery stays
independent of incidents. Idempotent: an outbox row already on the timeline is skipped, and
only the last day's rows are looked at (the job runs every 30 s).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, text

from monitoring_core.audit import system_actor

__all__ = ["LOOKBACK", "record_notifications"]

LOOKBACK = timedelta(days=1)
ACTOR = system_actor("notify")

_RECORD = text(
    """
    INSERT INTO incident_timeline (incident_id, time, kind, actor, message, details, is_public)
    SELECT o.incident_id, coalesce(o.sent_at, o.created_at),
           'notification_' || o.status,
           :actor,
           CASE o.status WHEN 'sent' THEN 'Notification sent to '
                         WHEN 'skipped' THEN 'Notification skipped (channel disabled): '
                         ELSE 'Notification failed to ' END
             || coalesce(c.name, 'channel ' || o.channel_id) || ': ' || o.title,
           jsonb_build_object('outbox_id', o.id, 'channel_id', o.channel_id, 'kind', o.kind,
                              'attempts', o.attempts, 'error', o.last_error),
           false
    FROM notification_outbox o
    LEFT JOIN notification_channels c ON c.id = o.channel_id
    WHERE o.incident_id IS NOT NULL AND o.status IN ('sent', 'failed', 'skipped')
      AND o.created_at >= :since
      AND NOT EXISTS (
        SELECT 1 FROM incident_timeline t
        WHERE t.incident_id = o.incident_id
          AND t.kind IN ('notification_sent', 'notification_failed', 'notification_skipped')
          AND (t.details ->> 'outbox_id')::bigint = o.id)
    """
)


def record_notifications(conn: Connection, *, now: datetime) -> int:
    """Write the timeline entries of newly finished incident notifications; how many."""
    return int(conn.execute(_RECORD, {"since": now - LOOKBACK, "actor": ACTOR}).rowcount or 0)
