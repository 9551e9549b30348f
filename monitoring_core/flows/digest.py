"""The weekly digest: one summary of a complete business week, built once, sent through the outbox.

What leadership and on-call leads read on Monday morning: uptime per check, incidents with
MTTA/MTTR (and how many fell on a Saturday), the top error groups, the KPIs against the week
before, and how the API did on Saturday — the wedding day — against the whole week.

Weeks are Monday 00:00 to Monday 00:00 in the business time zone, complete only (the digest of a
week is built after it ended). The `digest` setting names the channels and when to send:
`{"channel_ids": [1, 2], "weekday": "monday", "hour": 8}` (weekday and hour in the business
time zone; defaults Monday 08:00). `send_due` (the worker's hourly `digest` job) builds the last
complete week's digest once it is due; the `digests` primary key makes two workers build it
once, and the outbox idempotency key sends it once per channel. Nothing is sent without
channels; the digest is still built and can be downloaded from the Reports page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from monitoring_core.business.kpis import Period, kpi_summary
from monitoring_core.errors.queries import list_groups
from monitoring_core.incidents.response_figures import incident_report
from monitoring_core.notify.outbox import enqueue, outbox_rows
from monitoring_core.notify.templates import Message, inert
from monitoring_core.performance.queries import overview_summary
from monitoring_core.schema import digests, health_check_results, health_checks, settings
from monitoring_core.timerange import TimeRange

__all__ = [
    "DIGEST_SETTING",
    "DigestSchedule",
    "build_digest",
    "due_week",
    "minutes_text",
    "ms_text",
    "percent_text",
    "parse_schedule",
    "read_schedule",
    "render_markdown",
    "send_due",
    "week_bounds",
]

DIGEST_SETTING = "digest"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
TOP_GROUPS = 5


@dataclass(frozen=True)
class DigestSchedule:
    channel_ids: tuple[int, ...] = ()
    weekday: int = 0  # Monday
    hour: int = 8


def parse_schedule(value: Any) -> DigestSchedule:
    """The `digest` setting checked; ValueError naming what is wrong."""
    if not isinstance(value, dict):
        raise ValueError(
            'must be an object like {"channel_ids": [1], "weekday": "monday", "hour": 8}'
        )
    unknown = set(value) - {"channel_ids", "weekday", "hour"}
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    ids = value.get("channel_ids", [])
    if not isinstance(ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and 0 < i < 2**63 for i in ids
    ):
        raise ValueError("channel_ids must be a list of channel ids")
    weekday = value.get("weekday", "monday")
    if not isinstance(weekday, str) or weekday.lower() not in WEEKDAYS:
        raise ValueError(f"weekday must be one of {', '.join(WEEKDAYS)}")
    hour = value.get("hour", 8)
    if isinstance(hour, bool) or not isinstance(hour, int) or not 0 <= hour <= 23:
        raise ValueError("hour must be a whole number 0-23")
    return DigestSchedule(tuple(dict.fromkeys(ids)), WEEKDAYS.index(weekday.lower()), hour)


def week_bounds(week_start: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[Monday 00:00, next Monday 00:00) of the business week starting `week_start`, aware."""
    start = datetime.combine(week_start, time(), tz)
    return start, datetime.combine(week_start + timedelta(days=7), time(), tz)


def due_week(now: datetime, schedule: DigestSchedule, tz: ZoneInfo) -> date | None:
    """The Monday of the last complete week when its digest is due at `now`, else None: due from
    the schedule's weekday and hour of the following week on."""
    local = now.astimezone(tz)
    this_monday = local.date() - timedelta(days=local.weekday())
    send_at = datetime.combine(
        this_monday + timedelta(days=schedule.weekday), time(schedule.hour), tz
    )
    return this_monday - timedelta(days=7) if local >= send_at else None


def _uptime(conn: Connection, start: datetime, end: datetime) -> list[dict[str, Any]]:
    r, c = health_check_results.c, health_checks.c
    rows = conn.execute(
        select(
            c.check_name,
            func.count().filter(r.success).label("ok"),
            func.count().label("runs"),
        )
        .select_from(health_check_results.join(health_checks, c.id == r.check_id))
        .where(r.time >= start, r.time < end)
        .group_by(c.check_name)
        .order_by(c.check_name)
    )
    return [
        {"check": row.check_name, "uptime": row.ok / row.runs, "runs": row.runs}
        for row in rows
        if row.runs
    ]


def _saturday(conn: Connection, start: datetime, tz: ZoneInfo) -> dict[str, Any]:
    saturday = start.date() + timedelta(days=5)
    sat_start, _ = week_bounds(saturday, tz)  # midnight to midnight of that Saturday
    day = TimeRange(sat_start, datetime.combine(saturday + timedelta(days=1), time(), tz))
    week = TimeRange(start, start + timedelta(days=7))
    keys = ("requests", "error_rate", "p95_ms")
    sat, whole = overview_summary(conn, day), overview_summary(conn, week)
    return {
        "date": saturday.isoformat(),
        "saturday": {k: sat.get(k) for k in keys},
        "week": {k: whole.get(k) for k in keys},
    }


def build_digest(conn: Connection, *, week_start: date, tz: ZoneInfo) -> dict[str, Any]:
    """Every figure of the week starting Monday `week_start` (a JSON-ready dict)."""
    start, end = week_bounds(week_start, tz)
    report = incident_report(conn, start=start, end=end, tz=tz)
    groups = list_groups(conn, start=start, end=end, sort="events", limit=TOP_GROUPS)
    period = Period(week_start, week_start + timedelta(days=6))
    kpis = [
        {
            "name": k.name,
            "label": k.label,
            "value": k.value,
            "previous": k.previous,
            "delta": k.delta,
            "higher_is_better": k.higher_is_better,
            "shown": k.fmt.format(k.value),  # the KPI's own format (%, money, counts)
        }
        for k in kpi_summary(conn, period=period)
        if k.value is not None
    ]
    return {
        "week_start": week_start.isoformat(),
        "week_end": (week_start + timedelta(days=6)).isoformat(),
        "time_zone": tz.key,
        "uptime": _uptime(conn, start, end),
        "incidents": {**report["totals"], "saturday": report["saturday"]},
        "by_severity": report["by_severity"],
        "top_error_groups": [
            {
                "id": g["id"],
                "error_type": g.get("error_type"),
                "message": g.get("message_template") or g.get("message"),
                "events": int(g.get("events") or 0),
                "status": g.get("status"),
            }
            for g in groups
        ],
        "kpis": kpis,
        "saturday_performance": _saturday(conn, start, tz),
    }


def percent_text(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f} %"


def minutes_text(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f} min" if value < 120 else f"{value / 60:.1f} h"


def ms_text(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}".rstrip("0").rstrip(".")


def _delta(kpi: dict[str, Any]) -> str:
    delta = kpi["delta"]
    if delta is None:
        return "no earlier week to compare"
    better = (delta >= 0) == bool(kpi["higher_is_better"])
    word = "better" if better or delta == 0 else "worse"
    return f"{delta * 100:+.1f} % against the week before ({word})"


def render_markdown(figures: dict[str, Any]) -> str:
    """The digest as Markdown (user data made inert: no mentions, no hidden links)."""
    first = date.fromisoformat(figures["week_start"])
    last = date.fromisoformat(figures["week_end"])
    lines = [
        f"# Weekly digest: {first:%-d %B} – {last:%-d %B %Y}",
        "",
        f"Monday to Sunday in {figures['time_zone']}.",
        "",
        "## Uptime",
    ]
    uptime = figures["uptime"]
    lines += [
        f"- {inert(u['check'])}: {percent_text(u['uptime'], 3)} of {u['runs']:,} runs"
        for u in uptime
    ]
    if not uptime:
        lines.append("- no health check ran this week")
    inc = figures["incidents"]
    sat = inc["saturday"]
    lines += [
        "",
        "## Incidents",
        f"- {inc['incidents']} incident(s); mean time to acknowledge {minutes_text(inc['mtta_minutes'])},"
        f" to resolve {minutes_text(inc['mttr_minutes'])}",
        f"- on Saturday: {sat['incidents']} (acknowledged in {minutes_text(sat['mtta_minutes'])})",
    ]
    lines += [
        f"- {inert(s['severity'])}: {s['incidents']}, MTTA {minutes_text(s['mtta_minutes'])},"
        f" MTTR {minutes_text(s['mttr_minutes'])}"
        for s in figures["by_severity"]
    ]
    lines += ["", "## Top error groups"]
    for g in figures["top_error_groups"]:
        lines.append(
            f"- #{g['id']} {inert(g['error_type'])}: {inert(g['message'])[:120]}"
            f" — {g['events']:,} events ({inert(g['status'])})"
        )
    if not figures["top_error_groups"]:
        lines.append("- no errors this week")
    lines += ["", "## Business"]
    lines += [
        f"- {inert(k['label'])}: {k.get('shown') or _number(k['value'])} — {_delta(k)}"
        for k in figures["kpis"]
    ]
    if not figures["kpis"]:
        lines.append("- no business figures this week")
    perf = figures["saturday_performance"]
    day, week = perf["saturday"], perf["week"]
    lines += [
        "",
        f"## Saturday {date.fromisoformat(perf['date']):%-d %B}",
        f"- {int(day['requests'] or 0):,} API requests; p95 {ms_text(day['p95_ms'])}"
        f" (week {ms_text(week['p95_ms'])}); errors {percent_text(day['error_rate'])}"
        f" (week {percent_text(week['error_rate'])})",
    ]
    return "\n".join(lines) + "\n"


def read_schedule(conn: Connection) -> DigestSchedule | None:
    """The `digest` setting, None when unset (or, from an older release, unreadable)."""
    value = conn.execute(select(settings.c.value).where(settings.c.key == DIGEST_SETTING)).scalar()
    if value is None:
        return None
    try:
        return parse_schedule(value)
    except ValueError:
        return None  # saved settings are validated; an old bad value sends nothing


def store_digest(
    conn: Connection, *, week_start: date, tz: ZoneInfo, now: datetime, channel_ids: tuple[int, ...]
) -> bool:
    """Build and keep the week's digest; False when it exists already (another worker)."""
    figures = build_digest(conn, week_start=week_start, tz=tz)
    made = conn.execute(
        pg_insert(digests)
        .values(
            week_start=week_start,
            built_at=now,
            figures=figures,
            markdown=render_markdown(figures),
            channel_ids=list(channel_ids),
        )
        .on_conflict_do_nothing(index_elements=[digests.c.week_start])
        .returning(digests.c.week_start)
    ).first()
    return made is not None


def send_due(engine: Engine, now: datetime, *, tz: ZoneInfo) -> str:
    """The hourly job: build the last complete week's digest once due and queue it for its
    channels. Returns what it did (for the job log)."""
    with engine.begin() as conn:
        schedule = read_schedule(conn) or DigestSchedule()
        week = due_week(now, schedule, tz)
        if week is None:
            return "not due"
        if not store_digest(
            conn, week_start=week, tz=tz, now=now, channel_ids=schedule.channel_ids
        ):
            return f"week of {week} already built"
        markdown = conn.execute(
            select(digests.c.markdown).where(digests.c.week_start == week)
        ).scalar_one()
        title = markdown.splitlines()[0].lstrip("# ")
        rows = outbox_rows(
            channel_ids=schedule.channel_ids,
            message=Message(title, markdown, "info"),
            kind="digest",
            idempotency_key=f"digest:{week.isoformat()}",
            now=now,
        )
        queued = enqueue(conn, rows)
    return f"week of {week} built, queued for {len(queued)} channel(s)"


def list_digests(conn: Connection, limit: int = 52) -> list[dict[str, Any]]:
    """The kept digests, newest first (the Reports page)."""
    query = (
        select(digests.c.week_start, digests.c.built_at, digests.c.markdown, digests.c.figures)
        .order_by(digests.c.week_start.desc())
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(query).mappings()]
