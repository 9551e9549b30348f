"""Incident reporting: MTTA and MTTR by severity and month, counts by service, wedding impact
and Saturdays; the same figures as metric points for the alert engine; the Overview card.

Definitions: MTTA = mean(first acknowledgement − detection) over incidents acknowledged;
MTTR = mean(resolution − detection) over incidents resolved; both in minutes. Months are
calendar months in the business time zone, counted by detection time.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from statistics import fmean
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from monitoring_core.incidents.lifecycle import ACTIVE_STATUSES
from monitoring_core.ingest.points import MetricPoint, store_points
from monitoring_core.schema import incidents

__all__ = [
    "METRIC_WINDOW",
    "SOURCE_SYSTEM",
    "incident_metric_points",
    "incident_report",
    "minutes_between",
    "overview_card",
    "record_incident_metrics",
    "summarise",
]

METRIC_WINDOW = timedelta(days=30)
SOURCE_SYSTEM = "incidents"
_COLUMNS = (
    "id",
    "severity",
    "status",
    "affected_services",
    "wedding_impact",
    "is_saturday",
    "detected_at",
    "acknowledged_at",
    "resolved_at",
)


def minutes_between(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() / 60 if start and end else None


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(fmean(kept), 2) if kept else None


def _figures(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "incidents": len(rows),
        "mtta_minutes": _mean(
            minutes_between(r["detected_at"], r["acknowledged_at"]) for r in rows
        ),
        "mttr_minutes": _mean(minutes_between(r["detected_at"], r["resolved_at"]) for r in rows),
    }


def summarise(rows: Sequence[Mapping[str, Any]], tz: ZoneInfo) -> dict[str, Any]:
    """The report of a list of incident rows (pure)."""
    by_key: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_key[(row["detected_at"].astimezone(tz).strftime("%Y-%m"), row["severity"])].append(row)
    services = Counter(s for r in rows for s in (r["affected_services"] or []))
    saturday = [r for r in rows if r["is_saturday"]]
    return {
        "totals": _figures(rows),
        "by_month_severity": [
            {"month": m, "severity": s, **_figures(group)}
            for (m, s), group in sorted(by_key.items())
        ],
        "by_severity": [
            {"severity": s, **_figures([r for r in rows if r["severity"] == s])}
            for s in sorted({r["severity"] for r in rows})
        ],
        "by_service": [{"service": s, "incidents": n} for s, n in services.most_common()],
        "by_wedding_impact": [
            {"wedding_impact": w, "incidents": n}
            for w, n in Counter(r["wedding_impact"] for r in rows).most_common()
        ],
        "saturday": {
            **_figures(saturday),
            "share": round(len(saturday) / len(rows), 3) if rows else None,
        },
    }


def _rows(conn: Connection, start: datetime, end: datetime) -> list[dict[str, Any]]:
    query = select(*(incidents.c[c] for c in _COLUMNS)).where(
        incidents.c.detected_at >= start, incidents.c.detected_at < end
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def incident_report(
    conn: Connection, *, start: datetime, end: datetime, tz: ZoneInfo
) -> dict[str, Any]:
    """MTTA/MTTR by severity and month and the counts, for incidents detected in [start, end)."""
    return summarise(_rows(conn, start, end), tz)


def incident_metric_points(
    rows: Sequence[Mapping[str, Any]], open_rows: Sequence[Mapping[str, Any]], now: datetime
) -> list[MetricPoint]:
    """`incidents.mtta_minutes`/`incidents.mttr_minutes` per severity over the window, and
    `incidents.open_count` (all and per severity) at `now` (pure)."""
    points = [MetricPoint("incidents.open_count", float(len(open_rows)), now, {}, SOURCE_SYSTEM)]
    for severity in ("SEV1", "SEV2", "SEV3", "SEV4"):
        dims = {"severity": severity}
        mine = [r for r in rows if r["severity"] == severity]
        count = sum(r["severity"] == severity for r in open_rows)
        points.append(MetricPoint("incidents.open_count", float(count), now, dims, SOURCE_SYSTEM))
        figures = _figures(mine)
        for name in ("mtta_minutes", "mttr_minutes"):
            if figures[name] is not None:
                points.append(
                    MetricPoint(f"incidents.{name}", figures[name], now, dims, SOURCE_SYSTEM)
                )
    return points


def _open_rows(conn: Connection) -> list[dict[str, Any]]:
    query = select(incidents.c.id, incidents.c.severity).where(
        incidents.c.status.in_([s.value for s in ACTIVE_STATUSES])
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def record_incident_metrics(conn: Connection, *, now: datetime) -> int:
    """Write the incident metric points at `now` (through the ingest writer); how many."""
    points = incident_metric_points(_rows(conn, now - METRIC_WINDOW, now), _open_rows(conn), now)
    store_points(conn, points)
    return len(points)


def overview_card(conn: Connection, *, now: datetime) -> dict[str, Any]:
    """Open incidents (and how many SEV1) with the last 30 days' MTTA and MTTR."""
    open_rows = _open_rows(conn)
    figures = _figures(_rows(conn, now - METRIC_WINDOW, now))
    return {
        "open": len(open_rows),
        "open_sev1": sum(r["severity"] == "SEV1" for r in open_rows),
        "incidents_30d": figures["incidents"],
        "mtta_minutes_30d": figures["mtta_minutes"],
        "mttr_minutes_30d": figures["mttr_minutes"],
    }
