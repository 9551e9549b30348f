"""The one transport: Apprise, one fresh `Apprise` object per channel and per send, so each
channel's result is known and no plugin's per-object throttle delays the next send
(docs/PROTOCOLS.md "Apprise 2.x"; Healthchecks builds one per send too).

Webhook receivers (`json://`, `form://`, `xml://` and their `s` forms) get the outbox row's
idempotency key as an `Idempotency-Key` header, and `json://` also as an `idempotency_key`
field, so a receiver can drop the one repeat a crashed worker may cause.

Channel URLs are held to the outbound target policy (`monitoring_core.outbound`) like checks
and scrapes: a service whose URL names its server (`json://HOST`, `apprise://HOST`,
`mailto://…@HOST`, `ntfy://HOST/topic`, Gotify, Mattermost … — Apprise's templates say
`{host}`) is refused when that server is a metadata host or resolves to a refused address
(`outbound_refusal`): when the channel is saved (names and literal addresses, without DNS)
and again right before every send (resolved then). Cloud services addressed by tokens
(Slack, Discord, Telegram …) connect to their vendor's fixed hosts and are not checked.
The send itself is Apprise's own connection, so a DNS answer that changes between the check
and the connection, or a redirect the receiver answers with, is not re-checked (the checks'
own HTTP client does both)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import apprise
from apprise.plugins.custom_form import NotifyForm
from apprise.plugins.custom_json import NotifyJSON
from apprise.plugins.custom_xml import NotifyXML

from monitoring_core.outbound import (
    OutboundPolicy,
    Resolver,
    TargetRefused,
    check_host,
    current_policy,
)

__all__ = ["IDEMPOTENCY_HEADER", "SendResult", "channel_server", "outbound_refusal", "send"]

IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class SendResult:
    ok: bool
    latency_ms: float
    error: str | None = None


def _error_text(result: apprise.AppriseResult) -> str:
    """The per-service log lines of a failed send (Apprise 2.x `NotifyResult.logs()`)."""
    lines = []
    for service in result:
        messages = [entry.message for entry in service.logs() if entry.level != "DEBUG"]
        lines.append(f"{service.status.name}: {' | '.join(messages) or 'no details'}")
    return "; ".join(lines) or result.status.name


def _carry_key(ap: apprise.Apprise, key: str) -> None:
    """Give webhook services the idempotency key; a header the channel URL sets itself wins."""
    for service in ap:
        if isinstance(service, NotifyJSON | NotifyForm | NotifyXML):
            service.headers.setdefault(IDEMPOTENCY_HEADER, key)
        if isinstance(service, NotifyJSON):
            service.payload_extras.setdefault("idempotency_key", key)


def channel_server(url: str) -> tuple[str, int] | None:
    """(host, port) of the server a channel URL names, or None (a cloud service addressed by
    tokens, or a URL Apprise cannot read)."""
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None or not any("{host}" in t for t in getattr(type(plugin), "templates", ())):
        return None
    host = getattr(plugin, "host", None)
    if not isinstance(host, str) or not host.strip("[]"):
        return None
    host = host.strip("[]")  # an IPv6 literal as Apprise keeps it: [fe80::1]
    port = getattr(plugin, "port", None)
    return host, port if isinstance(port, int) else (443 if getattr(plugin, "secure", 0) else 80)


def _no_names(host: str, port: int) -> Sequence[str]:
    return ()  # names are checked when resolved, at send time


def _resolve_or_nothing(host: str, port: int) -> Sequence[str]:
    """The addresses of `host`, or none when it does not resolve: a name that does not resolve
    cannot be connected to (and for some services, e.g. `ntfy://topic`, it is not a host)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return ()
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def outbound_refusal(
    url: str, policy: OutboundPolicy, *, resolve: Resolver | None = _resolve_or_nothing
) -> str | None:
    """Why the outbound policy refuses this channel URL's server, or None. With `resolve=None`
    only names and literal addresses are judged (no DNS: for saving a channel)."""
    server = channel_server(url)
    if server is None:
        return None
    try:
        check_host(*server, policy, resolve=resolve or _no_names)
    except TargetRefused as exc:
        return f"refused by the outbound target policy: {exc}"
    return None


def send(
    url: str,
    *,
    title: str,
    body: str,
    notify_type: str = "info",
    idempotency_key: str | None = None,
    policy: OutboundPolicy | None = None,
) -> SendResult:
    """Send one message; a failure is a result, never an exception. The channel's server is
    checked against `policy` (default: the configured one) first."""
    started = time.perf_counter()
    refused = outbound_refusal(url, policy or current_policy())
    if refused:
        return SendResult(False, 0.0, refused)
    ap = apprise.Apprise()
    if not ap.add(url):
        return SendResult(False, 0.0, "invalid Apprise URL")
    if idempotency_key:
        _carry_key(ap, idempotency_key)
    try:
        result = ap.notify(title=title, body=body, notify_type=apprise.NotifyType(notify_type))
    except Exception as exc:  # noqa: BLE001 - a plugin bug must not kill the delivery job
        return SendResult(
            False, (time.perf_counter() - started) * 1000, f"{type(exc).__name__}: {exc}"
        )
    latency = (time.perf_counter() - started) * 1000
    if bool(result):
        return SendResult(True, latency)
    return SendResult(False, latency, _error_text(result)[:2000])
