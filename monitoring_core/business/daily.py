"""The `business_metrics_daily` rollup: every KPI per business day, recomputed for dirty days.

Pages and the Read API read KPIs from here (a 90-day series is ~90 rows per metric), never
from raw events. The worker job recomputes today, yesterday and any recent day that received
late events, and hands today's values to the alert engine as metric points.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, TextClause, bindparam, delete, func, insert, or_, select, text

from monitoring_core.business.definitions import MRR_EVENTS, EventType, day_bounds, local_day
from monitoring_core.business.retention import ROLLUP_PREFIXES, rollup_retention
from monitoring_core.schema import business_metrics_daily

__all__ = [
    "LATE_EVENT_DAYS",
    "NO_CURRENCY",
    "compute_days",
    "dirty_days",
    "rollup_days",
    "rollup_version",
    "run_daily_rollup",
]

LATE_EVENT_DAYS = 35  # late events older than this are not rolled up again by the worker
Rows = dict[tuple[date, str], float]

_COUNTS = text(
    """
    SELECT (time AT TIME ZONE :tz)::date AS day,
           count(*) AS events,
           count(*) FILTER (WHERE event_type = :signup) AS signups,
           count(*) FILTER (WHERE event_type = :form_created) AS forms_created,
           count(*) FILTER (WHERE event_type = :form_started) AS form_starts,
           count(*) FILTER (WHERE event_type = :form_completed) AS form_completions,
           count(*) FILTER (WHERE event_type = :journey_started) AS journey_starts,
           count(*) FILTER (WHERE event_type = :journey_completed) AS journey_completions,
           count(*) FILTER (WHERE event_type = :payment_failed) AS payments_failed,
           coalesce(sum(revenue), 0) AS revenue
    FROM business_events
    WHERE time >= :lo AND time < :hi
    GROUP BY 1
    """
)

# Revenue keeps its currency: one `revenue:<ISO 4217>` row per day and currency (XXX, the ISO
# code for "no currency", for revenue sent without one). `revenue` stays the plain sum.
NO_CURRENCY = "XXX"
_REVENUE_BY_CURRENCY = text(
    """
    SELECT (time AT TIME ZONE :tz)::date AS day, upper(coalesce(currency, :none)) AS currency,
           sum(revenue) AS revenue
    FROM business_events
    WHERE time >= :lo AND time < :hi AND revenue IS NOT NULL
    GROUP BY 1, 2
    """
)

# Rolling distinct users per (group, width, day) in one sort of the (group, user, day) pairs,
# without a days x users join: an active day covers [day, day + width). A user's cover starts
# (+1) on an active day with no active day in the `width` days before it, and ends (-1) `width`
# days after an active day with none in the `width` days after it; the running sum of these
# deltas is the number of users covering each day. Width 1 is DAU, 7 WAU, 28 MAU.
# Users are told apart by a 64-bit hash of their id (integers sort several times faster than
# text); two of 100,000 users share a hash with odds of about 3 in 10^10.
_ROLLING = """
    , gaps AS (
        SELECT grp, day, day - lag(day) OVER w AS gap, lead(day) OVER w - day AS next_gap
        FROM pairs WINDOW w AS (PARTITION BY grp COLLATE "C", uh ORDER BY day)
    ), deltas AS (
        SELECT grp, width, day, 1 AS d
        FROM gaps, unnest(CAST(:widths AS int[])) AS widths(width)
        WHERE gap IS NULL OR gap >= width
        UNION ALL
        SELECT grp, width, day + width, -1
        FROM gaps, unnest(CAST(:widths AS int[])) AS widths(width)
        WHERE next_gap IS NULL OR next_gap >= width
    )
    SELECT grp, width, day, sum(sum(d)) OVER (PARTITION BY grp, width ORDER BY day) AS users
    FROM deltas GROUP BY grp, width, day ORDER BY grp, width, day
"""

_USER_PAIRS = """
    WITH pairs AS (
        SELECT '' AS grp, hashtextextended(user_id, 0) AS uh, (time AT TIME ZONE :tz)::date AS day
        FROM business_events
        WHERE time >= :lo AND time < :hi AND user_id IS NOT NULL
        GROUP BY 2, 3
    )
"""

_FEATURE_PAIRS = """
    WITH pairs AS (
        SELECT properties->>'feature' AS grp,
               hashtextextended(user_id, 0) AS uh, (time AT TIME ZONE :tz)::date AS day
        FROM business_events
        WHERE time >= :lo AND time < :hi AND event_type = :feature_used
          AND user_id IS NOT NULL AND properties->>'feature' IS NOT NULL
        GROUP BY 1, 2, 3
    )
"""

# Module constants joined once; nothing here comes from input.
_USER_ROLLING = text(_USER_PAIRS + _ROLLING)
_FEATURE_ROLLING = text(_FEATURE_PAIRS + _ROLLING)

# Every MRR change of every organization up to :hi, classified as ChartMogul does
# (see definitions.classify_mrr_change, which the tests hold this SQL to).
_MRR = text(
    """
    WITH ev AS (
        SELECT organization_id AS org, time, (time AT TIME ZONE :tz)::date AS day,
               CASE WHEN event_type = :cancelled THEN 0
                    ELSE coalesce((properties->>'mrr')::numeric, 0) END AS mrr
        FROM business_events
        WHERE event_type IN :mrr_events AND organization_id IS NOT NULL AND time < :hi
    ), seq AS (
        SELECT org, day, mrr,
               coalesce(lag(mrr) OVER w, 0) AS prev,
               coalesce(bool_or(mrr > 0) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING
                                                 AND 1 PRECEDING), false) AS had
        FROM ev WINDOW w AS (PARTITION BY org ORDER BY time)
    )
    SELECT day,
           sum(mrr - prev) AS mrr_delta,
           sum((mrr > 0)::int - (prev > 0)::int) AS paying_delta,
           coalesce(sum(mrr) FILTER (WHERE prev = 0 AND mrr > 0 AND NOT had), 0) AS mrr_new,
           coalesce(sum(mrr) FILTER (WHERE prev = 0 AND mrr > 0 AND had), 0) AS mrr_reactivation,
           coalesce(sum(mrr - prev) FILTER (WHERE prev > 0 AND mrr > prev), 0) AS mrr_expansion,
           coalesce(sum(prev - mrr) FILTER (WHERE mrr > 0 AND mrr < prev), 0)
               AS mrr_contraction,
           coalesce(sum(prev) FILTER (WHERE prev > 0 AND mrr = 0), 0) AS mrr_churn,
           count(*) FILTER (WHERE prev = 0 AND mrr > 0 AND NOT had) AS new_orgs,
           count(*) FILTER (WHERE prev = 0 AND mrr > 0 AND had) AS reactivated_orgs,
           count(*) FILTER (WHERE prev > 0 AND mrr = 0) AS churned_orgs
    FROM seq GROUP BY day ORDER BY day
    """
).bindparams(bindparam("mrr_events", expanding=True))

_EVENT_PARAMS = {
    "signup": EventType.SIGNUP.value,
    "form_created": EventType.FORM_CREATED.value,
    "form_started": EventType.FORM_STARTED.value,
    "form_completed": EventType.FORM_COMPLETED.value,
    "journey_started": EventType.JOURNEY_STARTED.value,
    "journey_completed": EventType.JOURNEY_COMPLETED.value,
    "payment_failed": EventType.PAYMENT_FAILED.value,
}


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _counts(conn: Connection, first: date, last: date, tz: ZoneInfo) -> Rows:
    lo, hi = day_bounds(first, last, tz)
    params = {"tz": tz.key, "lo": lo, "hi": hi, **_EVENT_PARAMS}
    out: Rows = {}
    for row in conn.execute(_COUNTS, params).mappings():
        for name, value in row.items():
            if name != "day":
                out[(row["day"], name)] = float(value)
    return out


def _revenue_by_currency(conn: Connection, first: date, last: date, tz: ZoneInfo) -> Rows:
    lo, hi = day_bounds(first, last, tz)
    params = {"tz": tz.key, "lo": lo, "hi": hi, "none": NO_CURRENCY}
    rows = conn.execute(_REVENUE_BY_CURRENCY, params)
    return {(day, f"revenue:{currency}"): float(total) for day, currency, total in rows}


def _rolling(
    conn: Connection,
    statement: TextClause,
    windows: dict[int, str],
    first: date,
    last: date,
    tz: ZoneInfo,
) -> Rows:
    """`{(day, name): users}` for each window width; name is `prefix` or `prefix:group`."""
    lo, hi = day_bounds(first - timedelta(days=max(windows) - 1), last, tz)
    params = {"tz": tz.key, "lo": lo, "hi": hi, "widths": list(windows)}
    params["feature_used"] = EventType.FEATURE_USED.value
    changes: dict[tuple[str, int], list[tuple[date, float]]] = defaultdict(list)
    for grp, width, day, users in conn.execute(statement, params):
        changes[(grp, width)].append((day, float(users)))
    out: Rows = {}
    for (grp, width), points in changes.items():
        prefix = windows[width]
        name = f"{prefix}:{grp}" if grp else prefix
        out |= _carry_forward(points, first, last, name, keep_zero=not grp)
    return out


def _carry_forward(
    points: list[tuple[date, float]], first: date, last: date, name: str, *, keep_zero: bool
) -> Rows:
    """The running sum has rows only on days it changes: give every day first..last its value."""
    out: Rows = {}
    current, i = 0.0, 0
    for day in _days(first, last):
        while i < len(points) and points[i][0] <= day:
            current = points[i][1]
            i += 1
        if current or keep_zero:
            out[(day, name)] = current
    return out


def _mrr(conn: Connection, first: date, last: date, tz: ZoneInfo) -> Rows:
    _, hi = day_bounds(first, last, tz)
    params = {"tz": tz.key, "hi": hi, "cancelled": EventType.SUBSCRIPTION_CANCELLED.value}
    params["mrr_events"] = list(MRR_EVENTS)
    by_day = {row["day"]: row for row in conn.execute(_MRR, params).mappings()}
    out: Rows = {}
    mrr, paying = Decimal(0), 0
    for day in sorted(d for d in by_day if d < first):
        mrr += by_day[day]["mrr_delta"]
        paying += by_day[day]["paying_delta"]
    for day in _days(first, last):
        row = by_day.get(day)
        if row is not None:
            mrr += row["mrr_delta"]
            paying += row["paying_delta"]
            for name, value in row.items():
                if name not in ("day", "mrr_delta", "paying_delta"):
                    out[(day, name)] = float(value)
        out[(day, "mrr")] = float(mrr)
        out[(day, "paying_orgs")] = float(paying)
    return out


def _derived(rows: Rows, days: Iterable[date]) -> Rows:
    """Ratios that only exist when their denominator does."""
    out: Rows = {}
    for day in days:
        for name, num, den in (
            ("stickiness", "dau", "mau"),
            ("form_completion_rate", "form_completions", "form_starts"),
            ("journey_completion_rate", "journey_completions", "journey_starts"),
        ):
            if rows.get((day, den)):
                out[(day, name)] = rows.get((day, num), 0.0) / rows[(day, den)]
    return out


def compute_days(conn: Connection, *, first: date, last: date, tz: ZoneInfo) -> Rows:
    """Every KPI of the business days first..last (no write)."""
    # Distinct (user, day) pairs of a year are hashed in memory rather than spilled to disk.
    conn.execute(text("SET LOCAL work_mem = '64MB'"))
    rows = _counts(conn, first, last, tz)
    rows |= _revenue_by_currency(conn, first, last, tz)
    for day in _days(first, last):  # a day without events still has zero activity
        for name in ("events", "dau", "signups", "revenue", "form_starts", "journey_starts"):
            rows.setdefault((day, name), 0.0)
    rows |= _rolling(conn, _USER_ROLLING, {1: "dau", 7: "wau", 28: "mau"}, first, last, tz)
    rows |= _rolling(
        conn, _FEATURE_ROLLING, {1: "feature_users", 7: "feature_wau"}, first, last, tz
    )
    rows |= _mrr(conn, first, last, tz)
    rows |= _derived(rows, _days(first, last))
    return rows


def rollup_days(conn: Connection, *, first: date, last: date, tz: ZoneInfo) -> int:
    """Recompute and replace the rollup rows of days first..last; return the rows written."""
    rows = compute_days(conn, first=first, last=last, tz=tz)
    table = business_metrics_daily
    # Retention cells sit on their cohort's Monday and are upserted by rollup_retention: a
    # recompute of that Monday must not drop the cells of later weeks.
    kept = or_(*(table.c.metric_name.startswith(p, autoescape=True) for p in ROLLUP_PREFIXES))
    conn.execute(delete(table).where(table.c.day >= first, table.c.day <= last, ~kept))
    if rows:
        conn.execute(
            insert(table),
            [{"day": day, "metric_name": name, "value": v} for (day, name), v in rows.items()],
        )
    return len(rows) + rollup_retention(conn, first=first, last=last, tz=tz)


def dirty_days(
    conn: Connection, *, now: datetime, tz: ZoneInfo, since: datetime | None
) -> list[date]:
    """Today, yesterday, and recent days whose events arrived after `since` (None: ever)."""
    today = local_day(now, tz)
    days = {today, today - timedelta(days=1)}
    lo, _ = day_bounds(today - timedelta(days=LATE_EVENT_DAYS), today, tz)
    sql = text(
        "SELECT DISTINCT (time AT TIME ZONE :tz)::date FROM business_events "
        "WHERE time >= :lo AND time < :hi AND ingested_at > :since"
    )
    since = since or datetime(1970, 1, 1, tzinfo=lo.tzinfo)
    params = {"tz": tz.key, "lo": lo, "hi": now + timedelta(days=1), "since": since}
    days |= set(conn.execute(sql, params).scalars())
    return sorted(days)


def _watermark(conn: Connection) -> datetime | None:
    table = business_metrics_daily
    return conn.execute(
        select(table.c.updated_at).order_by(table.c.updated_at.desc()).limit(1)
    ).scalar()


def run_daily_rollup(conn: Connection, *, now: datetime, tz: ZoneInfo) -> list[date]:
    """The worker job: recompute dirty days (in runs of consecutive days); return them."""
    since = _watermark(conn)
    # Rows committed a moment after the last run's snapshot can carry an older ingested_at.
    days = dirty_days(conn, now=now, tz=tz, since=since - timedelta(minutes=10) if since else None)
    for first, last in _runs(days):
        rollup_days(conn, first=first, last=last, tz=tz)
    return days


def rollup_version(conn: Connection, *, today: date) -> datetime | None:
    """When the rollup last changed (the newest `updated_at` of the days the worker
    recomputes: today back to LATE_EVENT_DAYS): a cache key for pages that read it."""
    table = business_metrics_daily
    return conn.execute(
        select(func.max(table.c.updated_at)).where(
            table.c.day >= today - timedelta(days=LATE_EVENT_DAYS + 1)
        )
    ).scalar()


def _runs(days: list[date]) -> list[tuple[date, date]]:
    runs: list[tuple[date, date]] = []
    for day in days:
        if runs and day - runs[-1][1] == timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs
