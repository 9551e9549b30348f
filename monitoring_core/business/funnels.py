"""Funnels computed in Postgres with window functions (PostHog's earlier engine;
see docs/PROTOCOLS.md "Funnels in SQL").

Per user and for each step-0 event, the greedy chain takes the earliest step-k event at or after
step k-1's (ordered mode) or requires it to be the very next funnel event (strict mode: no other
step's event in between). A step counts when it falls within `window` of the step-0 event. In
any-order mode every step event is a possible start, and a user reached "n steps" when n
different steps happen within `window` of it (in any order). Each user counts once, with the
start that got furthest (the earliest such start on a tie). Only the step events of the range
are read, and only aggregates (or the few people asked for) leave the database. Users are told
apart by a 64-bit hash of their id (integer sorts are several times faster than text; two of
a million users share a hash with odds of about 3 in 10^8).

A filter on the first step (`FunnelFilter`, e.g. `user_type = supplier`) keeps only the first
step's events whose property has one of the values: a funnel of suppliers' signups. In
any-order mode it keeps the users with such a first-step event.

One statement answers the steps, the conversion per entry day/week (`trend`) and the
time-to-convert distribution (`time_to_convert`); `funnel_people` lists who dropped off.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, bindparam, text

__all__ = [
    "MAX_PEOPLE",
    "MAX_STEPS",
    "TTC_EDGES_S",
    "FunnelFilter",
    "FunnelMode",
    "FunnelResult",
    "FunnelStep",
    "TrendPoint",
    "build_steps",
    "event_types",
    "funnel",
    "funnel_people",
    "property_values",
    "step_labels",
    "validate_funnel",
]

MAX_STEPS = 8
MAX_PEOPLE = 5000
TOTAL = "(all)"
OTHER = "Other"
NONE = "(none)"
GRAINS = ("day", "week", "month")
# Time-to-convert bins (seconds): a minute, 5, 15, 30 minutes, 1, 3, 6, 12 hours, 1, 2, 3,
# 7, 14, 30, 60 days; the last bin ends at the conversion window.
TTC_EDGES_S = (0, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400,
               3 * 86400, 7 * 86400, 14 * 86400, 30 * 86400, 60 * 86400)  # fmt: skip


class FunnelMode(StrEnum):
    ORDERED = "ordered"  # other events may happen between steps
    STRICT = "strict"  # step k+1 must be the next funnel event after step k
    ANY_ORDER = "any_order"  # the steps in any order, all within the window


@dataclass(frozen=True)
class FunnelFilter:
    """Only first-step events whose `properties[prop]` is one of `values`."""

    prop: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class FunnelStep:
    step: int
    event_type: str
    users: int
    conversion_rate: float  # of the users who did step 0
    step_conversion_rate: float  # of the users who reached the previous step
    drop_off: int  # users of the previous step who did not reach this one
    drop_off_rate: float
    median_seconds_from_previous: float | None


@dataclass(frozen=True)
class TrendPoint:
    """Users entering in the bucket starting on `period` and how many of them converted."""

    period: date
    entered: int
    converted: int

    @property
    def conversion_rate(self) -> float | None:
        return self.converted / self.entered if self.entered else None


@dataclass(frozen=True)
class FunnelResult:
    steps: list[FunnelStep]
    median_seconds_to_convert: float | None
    breakdown_property: str | None
    breakdown: dict[str, list[FunnelStep]]
    trend: list[TrendPoint] = field(default_factory=list)
    # (from seconds, to seconds, converted users) per bin, only bins below the window
    time_to_convert: list[tuple[float, float, int]] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per (breakdown value, step): for tables and CSV."""
        groups = {TOTAL: self.steps} | self.breakdown
        return [
            {"breakdown": label} | asdict(step) for label, steps in groups.items() for step in steps
        ]


def step_labels(steps: Sequence[str], mode: FunnelMode) -> list[str]:
    """What each step is called: its event type, or in any order "any n of k"."""
    if mode is FunnelMode.ANY_ORDER:
        return [f"any {i} of {len(steps)}" for i in range(1, len(steps) + 1)]
    return list(steps)


def build_steps(
    event_types: Sequence[str], users: Sequence[int], medians: Sequence[float | None]
) -> list[FunnelStep]:
    """Conversion and drop-off per step from users reaching each step (pure)."""
    out = []
    for i, (event_type, n) in enumerate(zip(event_types, users, strict=True)):
        first = users[0]
        previous = users[i - 1] if i else n
        out.append(
            FunnelStep(
                step=i + 1,
                event_type=event_type,
                users=n,
                conversion_rate=n / first if first else 0.0,
                step_conversion_rate=n / previous if previous else 0.0,
                drop_off=previous - n,
                drop_off_rate=(previous - n) / previous if previous else 0.0,
                median_seconds_from_previous=medians[i] if i else None,
            )
        )
    return out


def _chain_levels(k: int, mode: FunnelMode) -> str:
    """Nested selects, last step first: `a{j}` holds [t_j, t_j+1, ...] as epoch seconds."""
    sql = f"SELECT *, CASE WHEN step = {k - 1} THEN ARRAY[ep] END AS a{k - 1} FROM ev"  # noqa: S608
    for j in range(k - 2, -1, -1):
        if mode is FunnelMode.STRICT:
            nxt = f"CASE WHEN lead(step) OVER w = {j + 1} THEN lead(a{j + 1}) OVER w END"
        else:
            # Arrays compare element by element: the minimum following a{j+1} is the chain of
            # the earliest next step (the greedy choice, which reaches furthest).
            nxt = f"min(a{j + 1}) OVER (w ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING)"
        select = f"SELECT *, CASE WHEN step = {j} THEN ARRAY[ep] || {nxt} END AS a{j} "
        sql = select + f"FROM ({sql}) l{j + 1} WINDOW w AS (PARTITION BY u ORDER BY ep, step)"
    return sql


_BEST = """
    , best AS (
        SELECT DISTINCT ON (u) u, bd, a0, reached FROM starts ORDER BY u, reached DESC, a0[1]
    )"""


def _best_sql(k: int, mode: FunnelMode, breakdown: bool, filtered: bool) -> str:
    """CTEs up to `best`: one row per user (u, bd, a0 = step times, reached = steps done)."""
    when = " ".join(f"WHEN :s{i} THEN {i}" for i in range(k))
    names = ", ".join(f":s{i}" for i in range(k))
    bd = "CASE WHEN event_type = :s0 THEN properties->>:prop END" if breakdown else "NULL::text"
    keep = "AND (event_type <> :s0 OR properties->>:fprop IN :fvals)" if filtered else ""
    ev = f"""
    WITH ev AS (
        SELECT hashtextextended(user_id, 0) AS u, extract(epoch FROM time)::float8 AS ep,
               CASE event_type {when} END AS step, {bd} AS bd
        FROM business_events
        WHERE time >= :lo AND time < :hi_ext AND user_id IS NOT NULL
          AND event_type IN ({names}) {keep}
    )"""  # noqa: S608
    if mode is FunnelMode.ANY_ORDER:
        # The next time of each step at or after every event; the distinct steps within the
        # window, in time order, are the chain.
        frame = "f AS (PARTITION BY u ORDER BY ep, step ROWS BETWEEN CURRENT ROW AND " + (
            "UNBOUNDED FOLLOWING)"
        )
        nexts = ", ".join(f"min(CASE WHEN step = {i} THEN ep END) OVER f AS n{i}" for i in range(k))
        arr = ", ".join(f"n{i}" for i in range(k))
        chains = f"""
    , nx AS (
        SELECT u, ep, max(bd) OVER (PARTITION BY u) AS bd,
               bool_or(step = 0) OVER (PARTITION BY u) AS has0, {nexts}
        FROM ev WINDOW {frame}
    ), starts AS (
        SELECT u, bd, a0, cardinality(a0) AS reached FROM (
            SELECT u, bd, ep, has0,
                   ARRAY(SELECT x FROM unnest(ARRAY[{arr}]) x WHERE x <= ep + :w ORDER BY x) AS a0
            FROM nx) s
        WHERE ep < :hi_ep {"AND has0" if filtered else ""}
    )"""  # noqa: S608
    else:
        reached = " + ".join(
            ["1"] + [f"coalesce((a0[{i + 1}] <= a0[1] + :w)::int, 0)" for i in range(1, k)]
        )
        chains = f"""
    , chains AS ({_chain_levels(k, mode)}
    ), starts AS (
        SELECT u, bd, a0, {reached} AS reached FROM chains
        WHERE step = 0 AND ep < :hi_ep
    )"""  # noqa: S608
    return f"{ev}{chains}{_BEST}"


def _funnel_sql(k: int, mode: FunnelMode, breakdown: bool, filtered: bool) -> str:
    """The statement for k steps; only step indexes and bind names are formatted in."""
    counts = ", ".join(f"count(*) FILTER (WHERE reached >= {i + 1}) AS n{i}" for i in range(k))
    medians = ", ".join(
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY a0[{i + 1}] - a0[{i}]) "
        f"FILTER (WHERE reached >= {i + 1}) AS m{i}"
        for i in range(1, k)
    )
    total = (
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY a0[{k}] - a0[1]) "
        f"FILTER (WHERE reached >= {k}) AS m_total"
    )
    # Only integers and bind names are formatted into this text; values are bound.
    tail = f"""
    , ranked AS (
        SELECT bd, row_number() OVER (ORDER BY count(*) DESC, bd) AS rk FROM best GROUP BY bd
    ), labelled AS (
        SELECT b.*, CASE WHEN r.rk <= :top THEN coalesce(b.bd, :none) ELSE :other END AS label
        FROM best b JOIN ranked r ON r.bd IS NOT DISTINCT FROM b.bd
    ), per AS (
        SELECT label, grouping(label) AS is_total, {counts}, {medians}, {total}
        FROM labelled GROUP BY GROUPING SETS ((label), ())
    ), trend AS (
        SELECT date_trunc(:grain, (to_timestamp(a0[1]) AT TIME ZONE :tz))::date AS period,
               count(*) AS entered, count(*) FILTER (WHERE reached >= {k}) AS converted
        FROM best GROUP BY 1
    ), ttc AS (
        SELECT width_bucket(a0[{k}] - a0[1], CAST(:edges AS float8[])) AS bin, count(*) AS users
        FROM best WHERE reached >= {k} GROUP BY 1
    )
    SELECT (SELECT json_agg(per) FROM per) AS per,
           (SELECT json_agg(trend ORDER BY period) FROM trend) AS trend,
           (SELECT json_agg(ttc ORDER BY bin) FROM ttc) AS ttc
    """  # noqa: S608
    return f"{_best_sql(k, mode, breakdown, filtered)}{tail}"


@dataclass(frozen=True)
class _Query:
    sql_args: tuple[int, FunnelMode, bool, bool]
    params: dict[str, Any]


def _query(
    steps: Sequence[str],
    start: datetime,
    end: datetime,
    window: timedelta,
    mode: FunnelMode,
    breakdown: str | None,
    where: FunnelFilter | None,
) -> _Query:
    validate_funnel(steps, window)
    params: dict[str, Any] = {f"s{i}": s for i, s in enumerate(steps)}
    params |= {"lo": start, "hi_ext": end + window, "hi_ep": end.timestamp()}
    params |= {"w": window.total_seconds(), "prop": breakdown or ""}
    if where is not None:
        if not where.values:
            raise ValueError("a filter needs at least one value")
        params |= {"fprop": where.prop, "fvals": list(where.values)}
    return _Query((len(steps), mode, breakdown is not None, where is not None), params)


def _statement(sql: str, filtered: bool) -> Any:
    statement = text(sql)
    return statement.bindparams(bindparam("fvals", expanding=True)) if filtered else statement


def funnel(
    conn: Connection,
    *,
    steps: Sequence[str],
    start: datetime,
    end: datetime,
    window: timedelta,
    mode: FunnelMode = FunnelMode.ORDERED,
    breakdown: str | None = None,
    top: int = 5,
    where: FunnelFilter | None = None,
    grain: str = "day",
    tz: ZoneInfo | None = None,
) -> FunnelResult:
    """Users entering step 1 in [start, end) and how far they got within `window`; the
    conversion per entry `grain` (day/week/month in `tz`, UTC by default) and the
    distribution of the time to convert."""
    if grain not in GRAINS:
        raise ValueError(f"grain must be one of {', '.join(GRAINS)}")
    query = _query(steps, start, end, window, mode, breakdown, where)
    params = query.params | {"top": top, "none": NONE, "other": OTHER, "grain": grain}
    edges = [e for e in TTC_EDGES_S if e < window.total_seconds()]
    params |= {"tz": (tz.key if tz else "UTC"), "edges": edges}
    sql = _statement(_funnel_sql(*query.sql_args), where is not None)
    conn.execute(text("SET LOCAL work_mem = '64MB'"))  # the per-user sort stays in memory
    labels = step_labels(steps, mode)
    total: list[FunnelStep] = build_steps(labels, [0] * len(steps), [None] * len(steps))
    by_label: dict[str, list[FunnelStep]] = {}
    median_total = None
    row = conn.execute(sql, params).one()
    for group in _json(row.per):
        users = [int(group[f"n{i}"]) for i in range(len(steps))]
        medians = [None] + [group[f"m{i}"] for i in range(1, len(steps))]
        built = build_steps(labels, users, medians)
        if group["is_total"]:
            total, median_total = built, group["m_total"]
        elif breakdown is not None:
            by_label[group["label"]] = built
    trend = [
        TrendPoint(date.fromisoformat(t["period"]), int(t["entered"]), int(t["converted"]))
        for t in _json(row.trend)
    ]
    bounds = [*edges, window.total_seconds()]
    ttc = [
        (float(bounds[b["bin"] - 1]), float(bounds[b["bin"]]), int(b["users"]))
        for b in _json(row.ttc)
        if 1 <= b["bin"] <= len(edges)
    ]
    return FunnelResult(total, median_total, breakdown, _ordered(by_label), trend, ttc)


def _json(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    return list(json.loads(value) if isinstance(value, str) else value)


_PEOPLE = """
    , dropped AS (SELECT u, a0 FROM best WHERE reached = :reached)
    , chosen AS (SELECT u, a0 FROM dropped ORDER BY a0[1], u LIMIT :limit)
    , names AS (
        SELECT DISTINCT ON (h) h, user_id, organization_id FROM (
            SELECT hashtextextended(user_id, 0) AS h, user_id, organization_id, time
            FROM business_events
            WHERE time >= :lo AND time < :hi_ext AND user_id IS NOT NULL
              AND event_type IN (SELECT unnest(CAST(:types AS text[])))) e
        WHERE h IN (SELECT u FROM chosen)
        ORDER BY h, (organization_id IS NULL), time
    )
    SELECT (SELECT count(*) FROM dropped) AS total, n.user_id, n.organization_id,
           to_timestamp(c.a0[1]) AS entered_at, to_timestamp(c.a0[:reached]) AS last_step_at
    FROM chosen c JOIN names n ON n.h = c.u
    ORDER BY c.a0[1], n.user_id
"""


def funnel_people(
    conn: Connection,
    *,
    steps: Sequence[str],
    start: datetime,
    end: datetime,
    window: timedelta,
    dropped_at: int,
    mode: FunnelMode = FunnelMode.ORDERED,
    where: FunnelFilter | None = None,
    limit: int = MAX_PEOPLE,
) -> tuple[int, list[dict[str, Any]]]:
    """The people who reached step `dropped_at - 1` (1-based) but not step `dropped_at`:
    (how many there are, up to `limit` of them, earliest entry first) with their user and
    organization ids, when they entered and when they did their last step."""
    if not 2 <= dropped_at <= len(steps):
        raise ValueError(f"dropped_at must be a step from 2 to {len(steps)}")
    query = _query(steps, start, end, window, mode, None, where)
    params = query.params | {"reached": dropped_at - 1, "limit": min(limit, MAX_PEOPLE)}
    sql = f"{_best_sql(*query.sql_args)}{_PEOPLE}"
    params["types"] = list(steps)
    conn.execute(text("SET LOCAL work_mem = '64MB'"))
    rows = conn.execute(_statement(sql, where is not None), params).mappings().all()
    if not rows:  # `chosen` is empty only when nobody dropped there
        return 0, []
    labels = step_labels(steps, mode)
    people = [
        {
            "user_id": r["user_id"],
            "organization_id": r["organization_id"],
            "entered_at": r["entered_at"],
            "last_step": labels[dropped_at - 2],
            "last_step_at": r["last_step_at"],
            "dropped_before": labels[dropped_at - 1],
        }
        for r in rows
    ]
    return int(rows[0]["total"]), people


def _ordered(by_label: dict[str, list[FunnelStep]]) -> dict[str, list[FunnelStep]]:
    """Largest groups first, "Other" last."""
    keys = sorted(by_label, key=lambda k: (k == OTHER, -by_label[k][0].users, k))
    return {k: by_label[k] for k in keys}


def validate_funnel(steps: Sequence[str], window: timedelta) -> None:
    """ValueError saying what is wrong with a funnel definition."""
    if not 2 <= len(steps) <= MAX_STEPS:
        raise ValueError(f"a funnel needs 2 to {MAX_STEPS} steps, got {len(steps)}")
    if len(set(steps)) != len(steps):
        raise ValueError("each step must be a different event type")
    if window <= timedelta(0):
        raise ValueError("the conversion window must be positive")


_EVENT_TYPES = text(
    """
    SELECT event_type FROM business_events WHERE time >= :start AND time < :end
    GROUP BY event_type ORDER BY count(*) DESC LIMIT 200
    """
)


def event_types(conn: Connection, *, start: datetime, end: datetime) -> list[str]:
    """Event types seen in [start, end), most frequent first (the funnel step choices)."""
    return list(conn.execute(_EVENT_TYPES, {"start": start, "end": end}).scalars())


_PROPERTY_VALUES = text(
    """
    SELECT properties->>:prop AS value FROM business_events
    WHERE time >= :start AND time < :end AND event_type = :event_type
      AND properties->>:prop IS NOT NULL
    GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 50
    """
)


def property_values(
    conn: Connection, *, event_type: str, prop: str, start: datetime, end: datetime
) -> list[str]:
    """The values `prop` takes on `event_type` events in [start, end), most frequent first
    (the choices of a first-step filter)."""
    params = {"prop": prop, "start": start, "end": end, "event_type": event_type}
    return list(conn.execute(_PROPERTY_VALUES, params).scalars())
