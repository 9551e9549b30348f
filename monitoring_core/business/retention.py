"""Weekly retention: cohorts by signup week (business time zone, weeks start on Monday).

Returning on any event, the grid is kept in `business_metrics_daily` by the daily rollup
(`cohort_size` and `retention_week_<n>` on the cohort's Monday), so the page reads ~90 rows;
returning on a chosen event is computed from the raw events on demand.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, select, text
from sqlalchemy.dialects.postgresql import insert

from monitoring_core.business.definitions import EventType, day_bounds
from monitoring_core.schema import business_metrics_daily

__all__ = [
    "MAX_WEEKS",
    "ROLLUP_PREFIXES",
    "Cohort",
    "grid_rows",
    "retention_grid",
    "rollup_retention",
    "week_start",
]

MAX_WEEKS = 12
SIZE, WEEK = "cohort_size", "retention_week_"
ROLLUP_PREFIXES = (SIZE, WEEK)


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
        SELECT user_id, date_trunc('week', min((time AT TIME ZONE :tz)::date))::date AS cw
        FROM business_events
        WHERE event_type = :signup AND time >= :cohort_lo AND time < :hi AND user_id IS NOT NULL
        GROUP BY user_id
    ), weeks AS (
        SELECT c.cw, date_trunc('week', (e.time AT TIME ZONE :tz)::date)::date AS aw, c.user_id
        FROM business_events e JOIN cohort c USING (user_id)
        WHERE e.time >= :active_lo AND e.time < :hi
          AND (CAST(:event AS text) IS NULL OR e.event_type = :event)
        GROUP BY 1, 2, 3
    )
    SELECT cw, (aw - cw) / 7 AS n, count(*) AS users
    FROM weeks WHERE aw >= cw AND (aw - cw) / 7 < :max_weeks
    GROUP BY 1, 2
    UNION ALL
    SELECT cw, -1, count(*) FROM cohort WHERE cw >= :size_from GROUP BY 1
    """
)


def _grid_counts(
    conn: Connection,
    *,
    first_week: date,
    active_from: date,
    last_day: date,
    tz: ZoneInfo,
    event: str | None,
) -> tuple[dict[date, int], dict[date, dict[int, int]]]:
    """Cohort sizes (cohorts from `active_from`) and returning users per (cohort, week n)
    for active weeks from `active_from`'s week up to `last_day`."""
    cohort_lo, hi = day_bounds(first_week, last_day, tz)
    active_lo, _ = day_bounds(week_start(active_from), last_day, tz)
    params = {"tz": tz.key, "signup": EventType.SIGNUP.value, "cohort_lo": cohort_lo, "hi": hi}
    params |= {"active_lo": active_lo, "event": event, "max_weeks": MAX_WEEKS}
    params["size_from"] = week_start(active_from)
    sizes: dict[date, int] = {}
    counts: dict[date, dict[int, int]] = defaultdict(dict)
    for week, n, users in conn.execute(_GRID, params):
        if n == -1:
            sizes[week] = users
        else:
            counts[week][n] = users
    return sizes, counts


def rollup_retention(conn: Connection, *, first: date, last: date, tz: ZoneInfo) -> int:
    """Upsert the grid cells that days first..last can change (their weeks, every cohort of
    the MAX_WEEKS before); the whole week is read so a mid-week recompute stays complete."""
    week_end = week_start(last) + timedelta(days=6)
    sizes, counts = _grid_counts(
        conn,
        first_week=week_start(first) - timedelta(weeks=MAX_WEEKS - 1),
        active_from=first,
        last_day=week_end,
        tz=tz,
        event=None,
    )
    rows = [{"day": w, "metric_name": SIZE, "value": float(n)} for w, n in sizes.items()]
    rows += [
        {"day": w, "metric_name": f"{WEEK}{n}", "value": float(users)}
        for w, by_n in counts.items()
        for n, users in by_n.items()
    ]
    if rows:
        stmt = insert(business_metrics_daily).values(rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=["day", "metric_name"],
            set_={"value": stmt.excluded.value, "updated_at": func.now()},
        )
        conn.execute(stmt)
    return len(rows)


def _from_rollup(
    conn: Connection, first_week: date, today: date
) -> Mapping[date, dict[str, float]]:
    t = business_metrics_daily
    rows = conn.execute(
        select(t.c.day, t.c.metric_name, t.c.value).where(
            t.c.day >= first_week,
            t.c.day <= today,
            (t.c.metric_name == SIZE) | t.c.metric_name.startswith(WEEK, autoescape=True),
        )
    )
    out: dict[date, dict[str, float]] = defaultdict(dict)
    for day, name, value in rows:
        out[day][name] = value
    return out


def retention_grid(
    conn: Connection,
    *,
    today: date,
    weeks: int = MAX_WEEKS,
    tz: ZoneInfo,
    returning_event: str | None = None,
) -> list[Cohort]:
    """The last `weeks` signup-week cohorts; returning on any event (from the rollup) or on
    `returning_event` (from raw events)."""
    weeks = min(weeks, MAX_WEEKS)
    first_week = week_start(today) - timedelta(weeks=weeks - 1)
    if returning_event is None:
        cells = _from_rollup(conn, first_week, today)
        sizes = {w: int(c[SIZE]) for w, c in cells.items() if c.get(SIZE)}
        counts = {
            w: {int(k[len(WEEK) :]): int(v) for k, v in c.items() if k != SIZE}
            for w, c in cells.items()
        }
    else:
        sizes, counts = _grid_counts(
            conn,
            first_week=first_week,
            active_from=first_week,
            last_day=today,
            tz=tz,
            event=returning_event,
        )
    cohorts = []
    for week in sorted(sizes):
        span = (week_start(today) - week).days // 7 + 1  # weeks observed so far
        returning = [counts.get(week, {}).get(i, 0) for i in range(span)]
        cohorts.append(Cohort(week, sizes[week], returning))
    return cohorts


def grid_rows(cohorts: list[Cohort]) -> list[dict[str, object]]:
    """The grid as table rows: cohort, size, and `week_0`… shares (for display and CSV)."""
    return [
        {"cohort": c.week, "size": c.size}
        | {f"week_{i}": round(share, 4) for i, share in enumerate(c.shares)}
        for c in cohorts
    ]
