"""Feature adoption: share of active users using each feature, new-feature ramps, segments.

Daily and weekly shares read the rollup (`feature_users:<f>` / `dau`, `feature_wau:<f>` / `wau`);
the per-segment view reads `feature_used` events of the range (an indexed, small slice).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta

from sqlalchemy import Connection, func, select, text

from monitoring_core.business.definitions import EventType
from monitoring_core.business.kpis import Period
from monitoring_core.schema import business_metrics_daily

__all__ = [
    "SEGMENT_DAYS",
    "adoption_shares",
    "feature_ramp",
    "features_by_segment",
    "launch_days",
]

DAILY, WEEKLY = "feature_users:", "feature_wau:"


def _feature_rows(
    conn: Connection, prefix: str, first: date, last: date
) -> dict[str, dict[date, float]]:
    t = business_metrics_daily
    rows = conn.execute(
        select(t.c.metric_name, t.c.day, t.c.value).where(
            t.c.day >= first, t.c.day <= last, t.c.metric_name.startswith(prefix, autoescape=True)
        )
    )
    out: dict[str, dict[date, float]] = defaultdict(dict)
    for name, day, value in rows:
        out[name.removeprefix(prefix)][day] = value
    return dict(out)


def _active(conn: Connection, name: str, first: date, last: date) -> dict[date, float]:
    t = business_metrics_daily
    rows = conn.execute(
        select(t.c.day, t.c.value).where(t.c.metric_name == name, t.c.day >= first, t.c.day <= last)
    )
    return {day: value for day, value in rows}


def adoption_shares(
    conn: Connection, *, period: Period, grain: str = "week"
) -> list[dict[str, object]]:
    """Per day (or per week, on its last day) and feature: users, active users and their share."""
    if grain not in ("day", "week"):
        raise ValueError("grain must be day or week")
    prefix, active_name = (DAILY, "dau") if grain == "day" else (WEEKLY, "wau")
    features = _feature_rows(conn, prefix, period.first, period.last)
    active = _active(conn, active_name, period.first, period.last)
    days = period.each_day()
    if grain == "week":  # the rolling 7 days ending each Sunday, and the period's last day
        days = [d for d in days if d.weekday() == 6 or d == period.last]
    rows: list[dict[str, object]] = []
    for feature, by_day in sorted(features.items()):
        for day in days:
            users, base = by_day.get(day, 0.0), active.get(day, 0.0)
            share = users / base if base else 0.0
            rows.append(
                {
                    "day": day,
                    "feature": feature,
                    "users": users,
                    "active_users": base,
                    "share": share,
                }
            )
    return rows


def launch_days(conn: Connection) -> dict[str, date]:
    """The first day each feature was used (its launch, as far as the data goes back)."""
    t = business_metrics_daily
    rows = conn.execute(
        select(t.c.metric_name, func.min(t.c.day))
        .where(t.c.metric_name.startswith(DAILY, autoescape=True))
        .group_by(t.c.metric_name)
    )
    return {name.removeprefix(DAILY): day for name, day in rows}


def feature_ramp(
    conn: Connection, *, today: date, launched_within_days: int = 120
) -> list[dict[str, object]]:
    """Weekly share of active users for features launched recently, by weeks since launch."""
    launches = {
        f: d
        for f, d in launch_days(conn).items()
        if d >= today - timedelta(days=launched_within_days)
    }
    if not launches:
        return []
    first = min(launches.values())
    weekly = _feature_rows(conn, WEEKLY, first, today)
    wau = _active(conn, "wau", first, today)
    rows: list[dict[str, object]] = []
    for feature, launch in sorted(launches.items()):
        week = 0
        while launch + timedelta(days=7 * week + 6) <= today:
            day = launch + timedelta(days=7 * week + 6)
            users, base = weekly.get(feature, {}).get(day, 0.0), wau.get(day, 0.0)
            rows.append(
                {
                    "feature": feature,
                    "launched": launch,
                    "week": week,
                    "users": users,
                    "share": users / base if base else 0.0,
                }
            )
            week += 1
    return rows


# Users as 64-bit hashes of their ids: the distinct counts hash integers, not text.
_SEGMENTS = text(
    """
    WITH used AS (
        SELECT coalesce(properties->>:segment, :none) AS segment,
               properties->>'feature' AS feature, hashtextextended(user_id, 0) AS uh
        FROM business_events
        WHERE event_type = :feature_used AND time >= :start AND time < :end
          AND user_id IS NOT NULL
        GROUP BY 1, 2, 3
    ), per_feature AS (
        SELECT segment, feature, count(*) AS users FROM used GROUP BY 1, 2
    ), per_segment AS (
        SELECT segment, count(*) AS users FROM (SELECT DISTINCT segment, uh FROM used) s
        GROUP BY 1
    ), ranked AS (
        SELECT f.segment, f.feature, f.users, s.users AS segment_users,
               row_number() OVER (PARTITION BY f.segment ORDER BY f.users DESC, f.feature) AS rank
        FROM per_feature f JOIN per_segment s USING (segment)
    )
    SELECT segment, feature, users, segment_users, users::float8 / segment_users AS share, rank
    FROM ranked WHERE rank <= :top ORDER BY segment, rank
    """
)
SEGMENT_DAYS = 7


def features_by_segment(
    conn: Connection, *, start: datetime, end: datetime, segment: str = "user_type", top: int = 5
) -> list[dict[str, object]]:
    """Top features per segment value over the last SEGMENT_DAYS days of [start, end): users
    and share of the segment's feature users."""
    start = max(start, end - timedelta(days=SEGMENT_DAYS))
    params = {
        "segment": segment,
        "none": "(none)",
        "feature_used": EventType.FEATURE_USED.value,
        "start": start,
        "end": end,
        "top": top,
    }
    return [dict(row) for row in conn.execute(_SEGMENTS, params).mappings()]
