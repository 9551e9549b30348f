"""Weekly retention: cohorts by signup week (business time zone, weeks start on Monday)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text

from monitoring_core.business.definitions import EventType, day_bounds

__all__ = ["Cohort", "grid_rows", "retention_grid", "week_start"]


@dataclass(frozen=True)
class Cohort:
    week: date  # the Monday of the signup week
    size: int
    returning: list[int]  # users active in week 0, 1, 2, … after signup (up to today)

    @property
    def shares(self) -> list[float]:
        return [n / self.size if self.size else 0.0 for n in self.returning]


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


# Cohort users are few (one signup each); their activity is found by hash-joining the range's
# events to them, so only (user, week) pairs of cohort members are kept.
_GRID = text(
    """
    WITH cohort AS (
        SELECT user_id, min((time AT TIME ZONE :tz)::date) AS signup_day
        FROM business_events
        WHERE event_type = :signup AND time >= :lo AND time < :cohort_hi AND user_id IS NOT NULL
        GROUP BY user_id
    ), weeks AS (
        SELECT c.user_id,
               date_trunc('week', c.signup_day)::date AS cohort_week,
               date_trunc('week', (e.time AT TIME ZONE :tz)::date)::date AS active_week
        FROM business_events e JOIN cohort c USING (user_id)
        WHERE e.time >= :lo AND e.time < :hi AND (CAST(:event AS text) IS NULL OR e.event_type = :event)
        GROUP BY 1, 2, 3
    )
    SELECT cohort_week, (active_week - cohort_week) / 7 AS week_n, count(*) AS users
    FROM weeks WHERE active_week >= cohort_week
    GROUP BY 1, 2
    UNION ALL
    SELECT date_trunc('week', signup_day)::date, -1, count(*) FROM cohort GROUP BY 1
    """
)


def retention_grid(
    conn: Connection,
    *,
    today: date,
    weeks: int = 12,
    tz: ZoneInfo,
    returning_event: str | None = None,
) -> list[Cohort]:
    """The last `weeks` signup-week cohorts; returning on any event or on `returning_event`."""
    first_week = week_start(today) - timedelta(weeks=weeks - 1)
    lo, hi = day_bounds(first_week, today, tz)
    params = {
        "tz": tz.key,
        "signup": EventType.SIGNUP.value,
        "lo": lo,
        "cohort_hi": hi,
        "hi": hi,
        "event": returning_event,
    }
    sizes: dict[date, int] = {}
    counts: dict[date, dict[int, int]] = defaultdict(dict)
    for week, n, users in conn.execute(_GRID, params):
        if n == -1:
            sizes[week] = users
        else:
            counts[week][n] = users
    cohorts = []
    for week in sorted(sizes):
        span = (week_start(today) - week).days // 7 + 1  # weeks observed so far
        cohorts.append(Cohort(week, sizes[week], [counts[week].get(i, 0) for i in range(span)]))
    return cohorts


def grid_rows(cohorts: list[Cohort]) -> list[dict[str, object]]:
    """The grid as table rows: cohort, size, and `week_0`… shares (for display and CSV)."""
    return [
        {"cohort": c.week, "size": c.size}
        | {f"week_{i}": round(share, 4) for i, share in enumerate(c.shares)}
        for c in cohorts
    ]
