"""Notification channels: Apprise URLs, validated when saved, shown masked (they are secrets)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import apprise
from sqlalchemy import Connection, delete, func, insert, select, update

from monitoring_core.notify.transport import outbound_refusal
from monitoring_core.outbound import current_policy
from monitoring_core.schema import (
    alert_rules,
    escalation_policies,
    notification_channels,
    notification_outbox,
    runbooks,
)

__all__ = [
    "ChannelInUse",
    "ChannelInvalid",
    "ChannelNotFound",
    "channel_to_api",
    "channel_uses",
    "create_channel",
    "delete_channel",
    "get_channel",
    "list_channels",
    "mask_url",
    "update_channel",
    "validate_url",
]


class ChannelInvalid(ValueError):
    def __init__(self, problems: list[dict[str, str]]):
        super().__init__("; ".join(f"{p['field']}: {p['message']}" for p in problems))
        self.problems = problems


class ChannelNotFound(LookupError):
    pass


class ChannelInUse(ValueError):
    """A channel that rules, policies, runbooks or delivery history still refer to."""


def validate_url(url: Any) -> bool:
    """Apprise knows the scheme and the URL parses (`instantiate` gives None otherwise)."""
    return isinstance(url, str) and apprise.Apprise.instantiate(url) is not None


MASK = "****"
# Apprise's generic webhooks print their path and their `+Header`, `-param` and `:field`
# arguments as given even with privacy=True, and those are where their tokens go.
_GENERIC_WEBHOOKS = frozenset({"json", "jsons", "xml", "xmls", "form", "forms"})


def mask_url(url: str) -> str:
    """The URL with secrets hidden, as Apprise prints it (`privacy=True`), and for generic
    webhooks also the path and the header/parameter values; scheme only when Apprise cannot
    parse it."""
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return url.split("://", 1)[0] + "://" + MASK
    printed = str(plugin.url(privacy=True))
    if printed.split("://", 1)[0].lower() in _GENERIC_WEBHOOKS:
        return _mask_webhook(printed)
    return printed


def _mask_webhook(url: str) -> str:
    parts = urlsplit(url)
    path = "/".join(MASK if segment else "" for segment in parts.path.split("/"))
    query = [
        (name, MASK if name[:1] in "+-:" else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(path=path, query=urlencode(query, safe="+-:*")))


def channel_to_api(row: Any) -> dict[str, Any]:
    """A channel as the API and UI show it: never the raw URL."""
    return {
        "id": row["id"],
        "name": row["name"],
        "url": mask_url(row["url"]),
        "tags": list(row["tags"] or []),
        "is_enabled": row["is_enabled"],
        "rate_limit_per_minute": row["rate_limit_per_minute"],
        "created_at": row["created_at"],
    }


def _validate(body: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    problems, values = [], {}
    if not partial or "name" in body:
        if not isinstance(body.get("name"), str) or not body["name"].strip():
            problems.append({"field": "name", "message": "is required"})
        else:
            values["name"] = body["name"].strip()
    if not partial or "url" in body:
        if not validate_url(body.get("url")):
            problems.append({"field": "url", "message": "is not an Apprise URL Apprise can use"})
        elif refused := outbound_refusal(body["url"], current_policy(), resolve=None):
            problems.append({"field": "url", "message": refused})
        else:
            values["url"] = body["url"]
    tags = body.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        problems.append({"field": "tags", "message": "must be a list of strings"})
    elif "tags" in body or not partial:
        values["tags"] = tags
    for key, kind in (("is_enabled", bool), ("rate_limit_per_minute", int)):
        if key in body:
            if not isinstance(body[key], kind) or (kind is int and body[key] < 1):
                problems.append({"field": key, "message": f"must be a {kind.__name__}"})
            else:
                values[key] = body[key]
    if problems:
        raise ChannelInvalid(problems)
    return values


def create_channel(conn: Connection, *, body: dict[str, Any]) -> dict[str, Any]:
    """Insert a validated channel; the reply masks the URL."""
    values = _validate(body, partial=False)
    if conn.execute(
        select(notification_channels.c.id).where(notification_channels.c.name == values["name"])
    ).first():
        raise ChannelInvalid([{"field": "name", "message": "a channel with this name exists"}])
    row = conn.execute(
        insert(notification_channels).values(**values).returning(*notification_channels.c)
    ).one()
    return channel_to_api(row._mapping)


def update_channel(conn: Connection, *, channel_id: int, body: dict[str, Any]) -> dict[str, Any]:
    values = _validate(body, partial=True)
    row = conn.execute(
        update(notification_channels)
        .where(notification_channels.c.id == channel_id)
        .values(**values)
        .returning(*notification_channels.c)
    ).first()
    if row is None:
        raise ChannelNotFound(channel_id)
    return channel_to_api(row._mapping)


def channel_uses(conn: Connection, *, channel_id: int) -> list[str]:
    """What still refers to the channel: rules, escalation policies, runbook steps, and its
    delivery history (which is kept: an audit trail)."""
    rules = conn.execute(
        select(alert_rules.c.alert_name).where(
            alert_rules.c.notification_channels.any_() == channel_id
        )
    ).scalars()
    in_steps = [{"channels": [channel_id]}]
    policies = conn.execute(
        select(escalation_policies.c.name).where(escalation_policies.c.steps.contains(in_steps))
    ).scalars()
    books = conn.execute(
        select(runbooks.c.title).where(
            runbooks.c.steps.contains([{"config": {"channels": [channel_id]}}])
        )
    ).scalars()
    sent = conn.execute(
        select(func.count())
        .select_from(notification_outbox)
        .where(notification_outbox.c.channel_id == channel_id)
    ).scalar_one()
    uses = [f"alert rule {n!r}" for n in rules] + [f"escalation policy {n!r}" for n in policies]
    uses += [f"runbook {t!r}" for t in books]
    return uses + ([f"{sent} notifications on record"] if sent else [])


def delete_channel(conn: Connection, *, channel_id: int) -> None:
    """Delete an unused channel (ChannelNotFound, ChannelInUse: disable it instead)."""
    get_channel(conn, channel_id=channel_id)
    if uses := channel_uses(conn, channel_id=channel_id):
        raise ChannelInUse(
            f"channel {channel_id} is still used ({'; '.join(uses)}): "
            "remove it from those, or disable it to keep its history"
        )
    conn.execute(delete(notification_channels).where(notification_channels.c.id == channel_id))


def get_channel(conn: Connection, *, channel_id: int) -> dict[str, Any]:
    """The full row, raw URL included: for delivery only, never for display."""
    row = conn.execute(
        select(notification_channels).where(notification_channels.c.id == channel_id)
    ).first()
    if row is None:
        raise ChannelNotFound(channel_id)
    return dict(row._mapping)


def list_channels(conn: Connection, *, ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Channels in API form (masked)."""
    query = select(notification_channels).order_by(notification_channels.c.id)
    if ids is not None:
        query = query.where(notification_channels.c.id.in_(list(ids)))
    return [channel_to_api(r._mapping) for r in conn.execute(query)]
