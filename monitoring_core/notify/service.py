"""What admins do to notification channels, with role checks and the audit log.

The API routes and the Settings page both call these, so a change made either way leaves the
same rows. A test send records its attempt in `notification_deliveries` like any delivery (it
counts in the channel's 24 h figures) and holds no transaction open while Apprise sends.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert

from monitoring_core.audit import record_audit
from monitoring_core.enums import Role
from monitoring_core.notify.channels import (
    create_channel,
    delete_channel,
    get_channel,
    update_channel,
)
from monitoring_core.notify.templates import render_test
from monitoring_core.notify.transport import SendResult, send
from monitoring_core.roles import require_role
from monitoring_core.schema import notification_deliveries

__all__ = ["remove_channel", "save_channel", "send_test_message"]


def save_channel(
    conn: Connection,
    *,
    channel_id: int | None,
    body: dict[str, Any],
    actor: str,
    role: str,
    now: datetime,
) -> dict[str, Any]:
    """Add a channel (`channel_id` None) or change one; ChannelInvalid lists the problems."""
    require_role(role, Role.ADMIN)
    saved = (
        create_channel(conn, body=body)
        if channel_id is None
        else update_channel(conn, channel_id=channel_id, body=body)
    )
    record_audit(
        conn,
        actor=actor,
        action="channel.save",
        target=f"channel:{saved['id']}",
        details={"name": saved["name"]},
        now=now,
    )
    return saved


def remove_channel(
    conn: Connection, *, channel_id: int, actor: str, role: str, now: datetime
) -> None:
    """Delete a channel nothing uses (ChannelInUse names what does)."""
    require_role(role, Role.ADMIN)
    delete_channel(conn, channel_id=channel_id)
    record_audit(
        conn, actor=actor, action="channel.delete", target=f"channel:{channel_id}", now=now
    )


def send_test_message(
    engine: Engine, *, channel_id: int, public_url: str, actor: str, role: str, now: datetime
) -> SendResult:
    """Send the test message now and record the attempt; a failed send is a result."""
    require_role(role, Role.ADMIN)
    with engine.connect() as conn:
        channel = get_channel(conn, channel_id=channel_id)
    message = render_test(channel["name"], public_url=public_url)
    result = send(channel["url"], title=message.title, body=message.body)
    with engine.begin() as conn:
        conn.execute(
            insert(notification_deliveries).values(
                channel_id=channel_id,
                attempted_at=now,
                status="sent" if result.ok else "failed",
                latency_ms=result.latency_ms,
                error=result.error,
            )
        )
        record_audit(
            conn,
            actor=actor,
            action="channel.test",
            target=f"channel:{channel_id}",
            details={"ok": result.ok},
            now=now,
        )
    return result
