"""The one transport: Apprise, one fresh `Apprise` object per channel and per send, so each
channel's result is known and no plugin's per-object throttle delays the next send
(REFERENCE.md "Apprise 2.x"; Healthchecks builds one per send too)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import apprise

__all__ = ["SendResult", "send"]


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


def send(url: str, *, title: str, body: str, notify_type: str = "info") -> SendResult:
    """Send one message; a failure is a result, never an exception."""
    started = time.perf_counter()
    ap = apprise.Apprise()
    if not ap.add(url):
        return SendResult(False, 0.0, "invalid Apprise URL")
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
