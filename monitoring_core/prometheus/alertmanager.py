"""Alerts as Prometheus, Grafana and Alertmanager send them, read into `ExternalAlert`s.

Two shapes are accepted (both JSON):
- Alertmanager API v2 `POST /api/v2/alerts` (what Prometheus and Grafana send to an
  Alertmanager): an array of `{labels, annotations?, startsAt?, endsAt?, generatorURL?}`;
- an Alertmanager (or Grafana) webhook notification: `{version, status, receiver,
  groupLabels, commonLabels, alerts: [{status, labels, annotations, startsAt, endsAt,
  generatorURL, fingerprint}], …}`.

An alert is identified by its label set (as in Alertmanager), named by its `alertname`
label. It is resolved when its `endsAt` is at or before `now` (or its webhook `status` is
`resolved`); a firing alert without `endsAt` ends `RESOLVE_TIMEOUT` after it was received,
unless re-sent (Alertmanager's `resolve_timeout`). Zero times (`0001-01-01T00:00:00Z`, what Go
sends for "unset") count as absent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from monitoring_core.ingest.validate import InvalidItems, ItemError

__all__ = [
    "RESOLVE_TIMEOUT",
    "ExternalAlert",
    "alert_key",
    "parse_alerts",
    "severity_of",
]

RESOLVE_TIMEOUT = timedelta(minutes=5)
MAX_ALERTS = 1000
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_MAX_TEXT = 2000
# Severity label values as Prometheus and Grafana rule authors write them, mapped to ours.
_SEVERITIES = {
    "critical": "critical",
    "page": "critical",
    "emergency": "critical",
    "high": "high",
    "error": "high",
    "major": "high",
    "medium": "medium",
    "warning": "medium",
    "warn": "medium",
    "minor": "medium",
    "low": "low",
    "info": "info",
    "informational": "info",
    "none": "info",
}
DEFAULT_SEVERITY = "medium"


@dataclass(frozen=True)
class ExternalAlert:
    """One alert: its label set (dedup key), annotations and when it starts and ends."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime
    resolved: bool
    generator_url: str = ""

    @property
    def name(self) -> str:
        return self.labels["alertname"]

    @property
    def summary(self) -> str:
        notes = self.annotations
        return notes.get("summary") or notes.get("description") or notes.get("message") or ""


def severity_of(labels: Mapping[str, str]) -> str:
    """Our severity for the alert's `severity` (or `priority`) label."""
    raw = (labels.get("severity") or labels.get("priority") or "").strip().lower()
    return _SEVERITIES.get(raw, DEFAULT_SEVERITY)


def alert_key(labels: Mapping[str, str]) -> str:
    """The instance key: every label but `alertname`, sorted (the rule holds the name)."""
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels) if k != "alertname")


def _time(raw: Any, field: str, index: int, errors: list[ItemError]) -> datetime | None:
    if raw in (None, ""):
        return None
    if not isinstance(raw, str):
        errors.append(ItemError(index, field, "must be an RFC 3339 time string"))
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        errors.append(ItemError(index, field, f"{raw[:40]!r} is not an RFC 3339 time"))
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return None if moment.year <= 1 else moment.astimezone(UTC)


def _strings(raw: Any, field: str, index: int, errors: list[ItemError]) -> dict[str, str] | None:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        errors.append(ItemError(index, field, "must be an object of strings"))
        return None
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str) or not _LABEL_NAME.fullmatch(key):
            errors.append(ItemError(index, f"{field}.{key[:60]}", "must be a string label"))
            return None
        if "\x00" in value or len(value) > _MAX_TEXT:
            errors.append(ItemError(index, f"{field}.{key}", f"at most {_MAX_TEXT} characters"))
            return None
        if value:  # an empty label is no label (Prometheus)
            out[key] = value
    return out


def _one(item: Any, index: int, now: datetime, errors: list[ItemError]) -> ExternalAlert | None:
    if not isinstance(item, dict):
        errors.append(ItemError(index, "", "an alert must be an object"))
        return None
    labels = _strings(item.get("labels"), "labels", index, errors)
    notes = _strings(item.get("annotations"), "annotations", index, errors)
    starts = _time(item.get("startsAt"), "startsAt", index, errors)
    ends = _time(item.get("endsAt"), "endsAt", index, errors)
    url = item.get("generatorURL") or ""
    if labels is None or notes is None or errors:
        return None
    if not labels.get("alertname"):
        errors.append(ItemError(index, "labels.alertname", "is required"))
        return None
    if not isinstance(url, str) or "\x00" in url:
        errors.append(ItemError(index, "generatorURL", "must be a string"))
        return None
    resolved = item.get("status") == "resolved" or (ends is not None and ends <= now)
    start = starts or now
    end = ends if ends is not None else now + RESOLVE_TIMEOUT
    return ExternalAlert(labels, notes, start, end, resolved, url[:_MAX_TEXT])


def parse_alerts(payload: Any, *, now: datetime) -> list[ExternalAlert]:
    """The alerts of a v2 array or a webhook object; InvalidItems naming each bad one."""
    items = payload.get("alerts") if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        raise InvalidItems([ItemError(None, "", "expected an array of alerts or {alerts: [...]}")])
    if len(items) > MAX_ALERTS:
        raise InvalidItems([ItemError(None, "", f"at most {MAX_ALERTS} alerts per request")])
    errors: list[ItemError] = []
    alerts = []
    for index, item in enumerate(items):
        alert = _one(item, index, now, errors)
        if alert is not None:
            alerts.append(alert)
    if errors:
        raise InvalidItems(errors)
    return alerts
