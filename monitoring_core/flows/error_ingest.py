"""One batch of error events: scrub, group, classify, store, flag regressions, open incidents."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from monitoring_core.audit import system_actor
from monitoring_core.errors.fingerprint import (
    Trace,
    culprit,
    fingerprint_error,
    normalize_message,
    parse_trace,
)
from monitoring_core.errors.model import ErrorInput
from monitoring_core.errors.rules import is_regression
from monitoring_core.errors.scrub import Scrubber
from monitoring_core.errors.severity import (
    INCIDENT_POLICY_SETTING,
    IncidentPolicy,
    classify_severity,
    incident_for_error,
    parse_incident_policy,
)
from monitoring_core.errors.store import (
    GroupRow,
    PreparedError,
    claim_and_upsert,
    mark_regressed,
    open_incident_for_group,
    record_new_groups,
    store_events_and_members,
)
from monitoring_core.incidents.store import open_incident
from monitoring_core.schema import settings as settings_table
from monitoring_core.wedding_calendar import is_wedding_day

__all__ = [
    "SCRUB_FIELDS_SETTING",
    "IngestResult",
    "ingest_errors",
    "load_incident_policy",
    "load_scrubber",
    "prepare",
    "store_prepared",
]

log = logging.getLogger(__name__)
SCRUB_FIELDS_SETTING = "error_scrub_fields"  # settings row: a JSON list of extra field names
ACTOR = system_actor("error-tracking")
_SCRUBBERS: dict[tuple[str, ...], Scrubber] = {}


@dataclass(frozen=True)
class IngestResult:
    """Per input event: `error_id`, `group_id`, `severity`, `incident_id?`, `duplicate?`."""

    items: list[dict[str, Any]]
    stored: int


def _setting(conn: Connection, key: str) -> Any:
    return conn.execute(
        select(settings_table.c.value).where(settings_table.c.key == key)
    ).scalar_one_or_none()


def load_incident_policy(conn: Connection) -> IncidentPolicy:
    """The configured policy; the defaults when the row is missing or broken (logged: a bad
    setting must not stop error ingest)."""
    try:
        return parse_incident_policy(_setting(conn, INCIDENT_POLICY_SETTING))
    except ValueError:
        log.warning("settings row %s ignored", INCIDENT_POLICY_SETTING, exc_info=True)
        return IncidentPolicy()


def load_scrubber(conn: Connection) -> Scrubber:
    """A Scrubber with the extra field names configured in settings."""
    value = _setting(conn, SCRUB_FIELDS_SETTING)
    extra = tuple(str(v) for v in value) if isinstance(value, list) else ()
    scrubber = _SCRUBBERS.get(extra)
    if scrubber is None:  # one per configuration, so its caches outlive a batch
        _SCRUBBERS.clear()
        scrubber = _SCRUBBERS[extra] = Scrubber(extra_keys=extra)
    return scrubber


# Words of the scrub rules whose matches may run over a line break (`Bearer\n…`,
# `password:\n…`): a text holding none is scrubbed line by line with the same result.
_MULTILINE_TRIGGERS = ("bearer", "basic", "pass", "pwd", "secret", "token", "key", "auth", "sig")


def _scrub_text_lines(text: str, scrubber: Scrubber) -> str:
    """`scrubber.text(text)` for a long multi-line text (a stack trace), line by line when no
    rule can match across a line break: its lines repeat from event to event (the frames of
    one bug) and come from the scrubber's cache; only new lines are scanned."""
    if "\n" not in text or len(text) < 256:
        return scrubber.text(text)
    lower = text.lower()
    if any(word in lower for word in _MULTILINE_TRIGGERS):
        return scrubber.text(text)
    return "\n".join([scrubber.text(line) for line in text.split("\n")])


def _scrub(event: ErrorInput, scrubber: Scrubber) -> Trace | None:
    """Scrub in place; for a text stack trace, return what grouping reads from it."""
    event.message = scrubber.text(event.message)
    if event.message_template is not None:
        event.message_template = scrubber.text(event.message_template)
    if event.stack_trace is not None:
        event.stack_trace = _scrub_text_lines(event.stack_trace, scrubber)
    if event.endpoint_path is not None:
        event.endpoint_path = scrubber.text(event.endpoint_path)
    if event.user_id:
        event.user_id = scrubber.identifier(event.user_id)
    event.tags = scrubber.data(event.tags)
    event.context = scrubber.data(event.context)
    if event.frames:
        event.frames = scrubber.data(event.frames)
        return None
    if event.stack_trace:
        # Own-API traces are text: frames parsed from the scrubbed text need no second pass.
        trace = parse_trace(event.stack_trace)
        event.frames = trace.frames
        return trace
    return None


def prepare(event: ErrorInput, *, scrubber: Scrubber, tz: ZoneInfo) -> PreparedError:
    """Scrub in place, then fingerprint and classify (pure apart from the mutation)."""
    trace = _scrub(event, scrubber)
    template = normalize_message(event.message_template or event.message)
    severity = classify_severity(
        level=event.level,
        error_type=event.error_type,
        service_name=event.service_name,
        endpoint_path=event.endpoint_path,
        message=event.message,
        at=event.time,
        tz=tz,
        requested=event.severity,
    )
    return PreparedError(
        event=event,
        fingerprint=fingerprint_error(
            event.error_type,
            template,
            event.frames,
            event.fingerprint,
            grouping=trace.grouping if trace else None,
        ),
        message_template=template,
        culprit=trace.culprit if trace else culprit(event.frames),
        severity=severity,
    )


def ingest_errors(
    conn: Connection,
    events: Sequence[ErrorInput],
    *,
    now: datetime,
    tz: ZoneInfo,
    scrubber: Scrubber | None = None,
    open_incidents: bool = True,
    incident_policy: IncidentPolicy | None = None,
) -> IngestResult:
    """Store a batch in the caller's transaction; partitions for the events' days must exist.

    `open_incidents=False` (demo history) records wedding-day criticals without paging.
    `scrubber` and `incident_policy` are read from settings when not given (the API passes
    copies it refreshes every few seconds).
    """
    scrubber = scrubber or load_scrubber(conn)
    prepared = [prepare(e, scrubber=scrubber, tz=tz) for e in events]
    return store_prepared(
        conn,
        prepared,
        now=now,
        tz=tz,
        open_incidents=open_incidents,
        incident_policy=incident_policy,
    )


def store_prepared(
    conn: Connection,
    prepared: Sequence[PreparedError],
    *,
    now: datetime,
    tz: ZoneInfo,
    open_incidents: bool = True,
    incident_policy: IncidentPolicy | None = None,
) -> IngestResult:
    """`ingest_errors` for events already through `prepare` (the API prepares each request's
    events while the previous group commit is in the database). Can run again on the same
    events after a rolled-back attempt."""
    kept, groups = claim_and_upsert(conn, prepared)
    record_new_groups(conn, sorted(g.id for g in groups.values() if g.inserted), now=now)
    regressed = _flag_regressions(conn, kept, groups, now)
    stored = store_events_and_members(conn, kept)
    fresh = regressed | {g.id for g in groups.values() if g.inserted or g.status == "regressed"}
    incidents = (
        _open_incidents(
            conn, kept, fresh, policy=incident_policy or load_incident_policy(conn), now=now, tz=tz
        )
        if open_incidents
        else {}
    )
    kept_ids = {id(p) for p in kept}
    items = [_reply(p, incidents, duplicate=id(p) not in kept_ids) for p in prepared]
    return IngestResult(items=items, stored=stored)


def _flag_regressions(
    conn: Connection, events: Sequence[PreparedError], groups: dict[str, GroupRow], now: datetime
) -> set[int]:
    """Flag the resolved groups these events regress; their ids."""
    flagged: set[int] = set()
    resolved = {fp: g for fp, g in groups.items() if g.status == "resolved"}
    for p in sorted(events, key=lambda p: p.event.time):
        group = resolved.get(p.fingerprint)
        if group is not None:
            if is_regression(
                status=group.status,
                resolved_at=group.resolved_at,
                resolved_in_release=group.resolved_in_release,
                event_time=p.event.time,
                event_release=p.event.release,
            ):
                mark_regressed(conn, group_id=group.id, now=now, release=p.event.release)
                flagged.add(group.id)
                del resolved[p.fingerprint]
    return flagged


def _open_incidents(
    conn: Connection,
    events: Sequence[PreparedError],
    fresh: set[int],
    *,
    policy: IncidentPolicy,
    now: datetime,
    tz: ZoneInfo,
) -> dict[int, int]:
    """group id -> incident id: a serious, recent event joins its group's open incident, or
    opens one when the policy says so (`fresh`: groups new in this batch or regressed)."""
    opened: dict[int, int] = {}
    for p in events:
        if p.group_id in opened:
            continue

        def severity_for(new_or_regressed: bool, p: PreparedError = p) -> str | None:
            return incident_for_error(
                policy,
                severity=p.severity,
                service_name=p.event.service_name,
                new_or_regressed=new_or_regressed,
                at=p.event.time,
                now=now,
                tz=tz,
            )

        if severity_for(True) is None:  # not serious or recent enough to page anyone
            continue
        if existing := open_incident_for_group(conn, group_id=p.group_id):
            opened[p.group_id] = existing
        elif sev := severity_for(p.group_id in fresh):
            opened[p.group_id] = _open(conn, p, severity=sev, now=now, tz=tz)
    return opened


def _open(conn: Connection, p: PreparedError, *, severity: str, now: datetime, tz: ZoneInfo) -> int:
    e = p.event
    kind = f"Wedding-day {p.severity}" if is_wedding_day(e.time, tz) else p.severity.capitalize()
    incident = open_incident(
        conn,
        title=f"{kind} error: {e.error_type} in {e.service_name}",
        description=f"{p.message_template}\n\nFirst event {e.event_id} at {e.time.isoformat()}.",
        severity=severity,
        affected_services=[e.service_name],
        source="error",
        created_by=ACTOR,
        now=now,
        error_group_id=p.group_id,
        tz=tz,
    )
    return int(incident["id"])


def _reply(p: PreparedError, incidents: dict[int, int], *, duplicate: bool) -> dict[str, Any]:
    item: dict[str, Any] = {
        "error_id": str(p.event.event_id),
        "group_id": p.group_id or None,
        "severity": p.severity,
    }
    if p.group_id in incidents:
        item["incident_id"] = incidents[p.group_id]
    if duplicate:
        item["duplicate"] = True
    return item
