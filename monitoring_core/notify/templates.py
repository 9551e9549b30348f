"""Message templates: title, severity, value, threshold and a link into the UI
(MONITORING_PUBLIC_URL). Pure.

User data (alert names, keys built from dimension values, channel names, error text) goes
through `inert` first: chat services act on `@channel`, `@here`, `@everyone`, `<@id>`,
`<!here>`, `<url|text>` and `[text](url)`, and a message must not page a whole workspace or
dress a phishing link as ours. A zero-width space after each trigger character keeps the text
readable everywhere (backslash escapes would show up in e-mail and webhook bodies)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

__all__ = ["Message", "alert_link", "inert", "render_alert", "render_self_alert", "render_test"]

_ZWSP = "\u200b"
# @ starts mentions (Slack, Discord, Teams, Mattermost); < opens Slack's <!here>, <@U1>,
# <url|text>; ! and & are how Slack spells them escaped (!here>, &lt;!here&gt;), which
# Apprise turns back into mentions; ]( joins a markdown link's text to its target.
_TRIGGERS = re.compile(r"[@<!&]|\](?=\()")

_TYPE = {"critical": "failure", "high": "failure", "medium": "warning", "low": "warning"}
_VERB = {
    "firing": "FIRING",
    "repeat": "STILL FIRING",
    "resolved": "RESOLVED",
    "no_data": "NO DATA",
    "escalation": "ESCALATED",
}


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    notify_type: str  # Apprise NotifyType: info|success|warning|failure


def inert(value: Any) -> str:
    """User data for a message: one line, no mention, no hidden link."""
    return _TRIGGERS.sub(lambda m: m.group(0) + _ZWSP, " ".join(str(value).split()))


def alert_link(public_url: str, instance_id: int) -> str:
    return f"{public_url.rstrip('/')}/response-alert?{urlencode({'instance': instance_id})}"


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def render_alert(
    kind: str, alert: Mapping[str, Any], *, public_url: str, step: int | None = None
) -> Message:
    """The message for an alert instance (`alert` in `instance_to_api` form plus threshold)."""
    severity = inert(alert.get("severity") or alert.get("severity_level") or "info")
    key = f" [{inert(alert['alert_key'])}]" if alert.get("alert_key") else ""
    name = inert(alert["alert_name"])
    title = f"[{_VERB.get(kind, kind.upper())}] {severity.upper()}: {name}{key}"
    lines = [
        f"Alert: {name}{key}",
        f"Severity: {severity}",
        f"Value: {_fmt(alert.get('trigger_value'))}",
        f"Threshold: {_fmt(alert.get('threshold'))}",
        f"Triggered: {alert.get('trigger_count', 0)} time(s) since {alert.get('first_triggered_at')}",
    ]
    if step is not None:
        lines.append(f"Escalation step {step + 1}: nobody has acknowledged yet")
    if alert.get("incident_number"):
        lines.append(f"Incident: {inert(alert['incident_number'])}")
    lines.append(f"Open: {alert_link(public_url, int(alert['id']))}")
    notify_type = "success" if kind == "resolved" else _TYPE.get(severity, "info")
    return Message(title, "\n".join(lines), notify_type)


def render_test(channel_name: str, *, public_url: str) -> Message:
    return Message(
        f"Test notification for channel {inert(channel_name)}",
        f"If you can read this, the channel works.\n{public_url}",
        "info",
    )


def render_self_alert(channel_name: str, failures: int, error: str, *, public_url: str) -> Message:
    name = inert(channel_name)
    return Message(
        f"[FIRING] HIGH: notification channel {name} keeps failing",
        f"The last {failures} deliveries to {name} failed.\nLast error: {inert(error)}\n"
        f"Check it: {public_url.rstrip('/')}/administration-settings",
        "failure",
    )
