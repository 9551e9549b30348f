"""The one transport: Apprise, one fresh `Apprise` object per channel and per send, so each
channel's result is known and no plugin's per-object throttle delays the next send
(docs/PROTOCOLS.md "Apprise 2.x"; Healthchecks builds one per send too).

Webhook receivers (`json://`, `form://`, `xml://` and their `s` forms) get the outbox row's
idempotency key as an `Idempotency-Key` header, and `json://` also as an `idempotency_key`
field, so a receiver can drop the one repeat a crashed worker may cause."""

from __future__ import annotations

import time
from dataclasses import dataclass

import apprise
from apprise.plugins.custom_form import NotifyForm
from apprise.plugins.custom_json import NotifyJSON
from apprise.plugins.custom_xml import NotifyXML

__all__ = ["IDEMPOTENCY_HEADER", "SendResult", "send"]

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


def send(
    url: str,
    *,
    title: str,
    body: str,
    notify_type: str = "info",
    idempotency_key: str | None = None,
) -> SendResult:
    """Send one message; a failure is a result, never an exception."""
    started = time.perf_counter()
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
