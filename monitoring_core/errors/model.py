"""The one shape every error takes between the wire and the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["ErrorInput"]


@dataclass
class ErrorInput:
    """An error event as received (own API or Sentry), before scrubbing and grouping."""

    error_type: str
    message: str
    service_name: str
    level: str  # frontend|api|database|third_party
    time: datetime
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)
    # Sentry's logentry template ("Payment %s failed"): what grouping reads instead of message.
    message_template: str | None = None
    severity: str | None = None  # what the client asked for
    stack_trace: str | None = None
    frames: list[dict[str, Any]] = field(default_factory=list)
    endpoint_path: str | None = None
    user_id: str | None = None
    organization_id: str | None = None
    session_id: str | None = None
    request_id: str | None = None
    trace_id: str | None = None
    release: str | None = None
    environment: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    fingerprint: list[str] | None = None
    dedup: bool = False  # event_id came from the client: store it at most once
