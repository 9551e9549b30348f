"""Demo errors: recurring bugs across the platform's services, a burst spanning services, a
resolved bug that comes back (a regression), a bug that went quiet (recovered), browser noise
that was ignored — all through the real ingest path, so scrubbing, grouping, severity and
counts are what production would have recorded.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection

from monitoring_core.audit import user_actor
from monitoring_core.config import load_settings
from monitoring_core.errors.model import ErrorInput
from monitoring_core.errors.recovery import DEFAULT_QUIET, recover_quiet_groups
from monitoring_core.errors.service import change_group_status
from monitoring_core.flows.error_ingest import ingest_errors

__all__ = ["BUGS", "load"]

CHUNK = timedelta(hours=6)  # events are ingested in time order, one batch per chunk


@dataclass(frozen=True)
class Bug:
    error_type: str
    message: str  # `{n}`, `{id}`, `{email}` are filled per event
    service: str
    level: str
    per_hour: float
    stack: str
    release: str
    stops_days_ago: float | None = None  # went quiet (auto-recovered)


def _py(*frames: tuple[str, str, int]) -> str:
    lines = ["Traceback (most recent call last):"]
    for path, func, line in frames:
        lines.append(f'  File "{path}", line {line}, in {func}')
    return "\n".join(lines)


def _js(*frames: tuple[str, str, int]) -> str:
    return "\n".join(f"    at {func} ({path}:{line}:7)" for path, func, line in reversed(frames))


BUGS: tuple[Bug, ...] = (
    Bug(
        "TypeError",
        "Cannot read properties of undefined (reading 'seatNumber') for guest {n}",
        "web",
        "frontend",
        3.0,
        _js(("https://app.example.com/static/seating.js", "renderTable", 88)),
        "web@5.2.0",
    ),
    Bug(
        "CardError",
        "Your card was declined: card {card} for booking {n}",
        "payments",
        "third_party",
        0.6,
        _py(("/srv/payments/charge.py", "charge_deposit", 41)),
        "payments@2.3.0",
    ),
    Bug(
        "ValidationError",
        "RSVP form submission rejected: field 'dietary' too long ({n} chars) from {email}",
        "rsvp",
        "api",
        1.2,
        _py(("/srv/rsvp/forms.py", "submit_rsvp", 77), ("/srv/rsvp/validate.py", "check", 12)),
        "rsvp@1.8.1",
    ),
    Bug(
        "OperationalError",
        "could not obtain connection from pool within {n} ms",
        "vendors",
        "database",
        0.3,
        _py(("/srv/vendors/search.py", "search_vendors", 130), ("/srv/vendors/db.py", "query", 9)),
        "vendors@3.0.4",
    ),
    Bug(
        "ReadTimeout",
        "GET https://maps.example.net/geocode?q={n} timed out after 10 s",
        "venues",
        "third_party",
        0.8,
        _py(("/srv/venues/geo.py", "geocode_venue", 55)),
        "venues@1.1.0",
    ),
    Bug(
        "KeyError",
        "'photo_{n}' missing from gallery manifest (api_key=sk_live_{n}abcdefgh)",
        "gallery",
        "api",
        0.5,
        _py(("/srv/gallery/manifest.py", "load_manifest", 23)),
        "gallery@4.0.2",
    ),
    Bug(
        "SMTPRecipientsRefused",
        "invitation to {email} refused by the mail server",
        "mail",
        "third_party",
        0.4,
        _py(("/srv/mail/send.py", "send_invitation", 61)),
        "mail@2.0.0",
        stops_days_ago=3.0,
    ),
    Bug(
        "ResizeObserver",
        "ResizeObserver loop completed with undelivered notifications",
        "web",
        "frontend",
        2.0,
        "",
        "web@5.2.0",
    ),
)
_BUG_INDEX = {bug.error_type: i for i, bug in enumerate(BUGS)}
REGRESSION = 1  # CardError: resolved in payments@2.3.1, back in payments@2.3.2
IGNORED = 7  # ResizeObserver: browser noise, ignored
BURST = (  # one incident's worth of errors across services within five minutes
    Bug(
        "PoolTimeout",
        "QueuePool limit of size {n} overflow reached",
        "api",
        "database",
        0,
        "",
        "api@7.1.0",
    ),
    Bug(
        "HTTPError", "503 from /api/bookings for booking {n}", "web", "frontend", 0, "", "web@5.2.0"
    ),
    Bug(
        "BookingSyncError",
        "booking {n} not confirmed: upstream unavailable",
        "payments",
        "api",
        0,
        "",
        "payments@2.3.0",
    ),
)


def _event(bug: Bug, at: datetime, rng: np.random.Generator, **extra: Any) -> ErrorInput:
    n = int(rng.integers(1, 100_000))
    message = bug.message.format(
        n=n, email=f"guest{n % 50}@example.com", card="4242 4242 4242 4242", id=uuid.uuid4()
    )
    user = int(rng.integers(0, 400))
    fields: dict[str, Any] = {
        "error_type": bug.error_type,
        "message": message,
        "service_name": bug.service,
        "level": bug.level,
        "time": at,
        "stack_trace": (bug.stack + f"\n{bug.error_type}: {message}") if bug.stack else None,
        "user_id": f"user-{user}",
        "organization_id": f"org_{user % 60:04d}",  # the business demo's organisations
        "release": bug.release,
        "environment": "production",
        "endpoint_path": f"/api/{bug.service}",
        "request_id": uuid.UUID(int=int(rng.integers(0, 2**62))).hex,
        "context": {"browser": "Chrome 131"} if bug.level == "frontend" else {},
    }
    fields.update(extra)
    return ErrorInput(**fields)


def _hourly(
    bug: Bug, start: datetime, end: datetime, now: datetime, rng: np.random.Generator
) -> list[ErrorInput]:
    events = []
    hour = start
    while hour < end:
        if bug.stops_days_ago is None or hour < now - timedelta(days=bug.stops_days_ago):
            busy = 1.6 if 9 <= hour.hour <= 21 else 0.4  # people plan weddings by day
            for _ in range(int(rng.poisson(bug.per_hour * busy))):
                at = hour + timedelta(seconds=float(rng.uniform(0, 3600)))
                if at < end:
                    events.append(_event(bug, at, rng))
        hour += timedelta(hours=1)
    return events


def _burst(at: datetime, rng: np.random.Generator) -> list[ErrorInput]:
    events = []
    for i in range(40):
        trace = uuid.UUID(int=int(rng.integers(0, 2**62))).hex
        for k, bug in enumerate(BURST):
            offset = timedelta(seconds=int(k * 90 + i * 6 + rng.integers(0, 5)))
            events.append(_event(bug, at + offset, rng, trace_id=trace, severity="high"))
    return events


def load(conn: Connection, *, days: int, now: datetime, rng: np.random.Generator) -> dict[str, int]:
    """Ingest `days` of errors in time order; resolve, ignore and recover along the way."""
    tz = load_settings().tz
    start = (now - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    resolve_at = now - timedelta(days=min(days, 8) * 0.6)
    burst_at = (now - timedelta(days=1)).replace(hour=14, minute=0, second=0, microsecond=0)
    group_of: dict[int, int] = {}
    stored, cursor = 0, start
    while cursor < now:
        end = min(cursor + CHUNK, now)
        batch: list[ErrorInput] = []
        for index, bug in enumerate(BUGS):
            events = _hourly(bug, cursor, end, now, rng)
            if index == REGRESSION and cursor >= resolve_at:
                for e in events:
                    e.release = (
                        "payments@2.3.2"
                        if e.time > resolve_at + timedelta(days=1)
                        else "payments@2.3.0"
                    )
            batch += events
        if cursor <= burst_at < end:
            batch += _burst(burst_at, rng)
        batch.sort(key=lambda e: e.time)
        result = ingest_errors(conn, batch, now=end, tz=tz, open_incidents=False)
        stored += result.stored
        for event, item in zip(batch, result.items, strict=True):
            known = _BUG_INDEX.get(event.error_type)
            if known is not None and item["group_id"]:
                group_of.setdefault(known, item["group_id"])
        _lifecycle(conn, group_of, cursor, end, resolve_at, start)
        cursor = end
    recover_quiet_groups(conn, now=now, quiet=DEFAULT_QUIET)
    return {"error_events": stored, "error_groups": len(group_of) + len(BURST)}


def load_window(
    conn: Connection, start: datetime, now: datetime, loaded: datetime, rng: np.random.Generator
) -> dict[str, int]:
    """Errors in [start, now) after a history loaded up to `loaded` (`demo.feed`): each
    bug at its hourly rate (those that stopped stay stopped), the payments regression on
    the release it came back in; no bursts, no resolving."""
    batch: list[ErrorInput] = []
    for index, bug in enumerate(BUGS):
        events = _hourly(bug, start, now, loaded, rng)
        if index == REGRESSION:
            for event in events:
                event.release = "payments@2.3.2"
        batch += events
    if not batch:
        return {"error_events": 0}
    batch.sort(key=lambda e: e.time)
    result = ingest_errors(conn, batch, now=now, tz=load_settings().tz, open_incidents=False)
    return {"error_events": result.stored}


def _lifecycle(
    conn: Connection,
    group_of: dict[int, int],
    cursor: datetime,
    end: datetime,
    resolve_at: datetime,
    start: datetime,
) -> None:
    """A responder resolves the card bug (fix in 2.3.1) and ignores the browser noise."""
    if cursor <= resolve_at < end and REGRESSION in group_of:
        change_group_status(
            conn,
            group_id=group_of[REGRESSION],
            action="resolve",
            actor=user_actor("ann"),
            now=resolve_at,
            release="payments@2.3.1",
        )
    if cursor == start and IGNORED in group_of:
        change_group_status(
            conn, group_id=group_of[IGNORED], action="ignore", actor=user_actor("ben"), now=end
        )
