"""Funnels computed in Postgres with window functions (PostHog's earlier engine;
see docs/PROTOCOLS.md "Funnels in SQL").

Per user and for each step-0 event, the greedy chain takes the earliest step-k event at or after
step k-1's (ordered mode) or requires it to be the very next funnel event (strict mode: no other
step's event in between). A step counts when it falls within `window` of the step-0 event. Each
user counts once, with the start that got furthest (the earliest such start on a tie). Only the
step events of the range are read, and only aggregates leave the database. Users are told
apart by a 64-bit hash of their id (integer sorts are several times faster than text; two of
a million users share a hash with odds of about 3 in 10^8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, text

__all__ = [
    "MAX_STEPS",
    "FunnelMode",
    "FunnelResult",
    "FunnelStep",
    "build_steps",
    "event_types",
    "funnel",
    "validate_funnel",
]

MAX_STEPS = 8
TOTAL = "(all)"
OTHER = "Other"
NONE = "(none)"


class FunnelMode(StrEnum):
    ORDERED = "ordered"  # other events may happen between steps
    STRICT = "strict"  # step k+1 must be the next funnel event after step k


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
class FunnelResult:
    steps: list[FunnelStep]
    median_seconds_to_convert: float | None
    breakdown_property: str | None
    breakdown: dict[str, list[FunnelStep]]

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per (breakdown value, step): for tables and CSV."""
        groups = {TOTAL: self.steps} | self.breakdown
        return [
            {"breakdown": label} | asdict(step) for label, steps in groups.items() for step in steps
        ]


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


def _funnel_sql(k: int, mode: FunnelMode, breakdown: bool) -> str:
    """The statement for k steps; only step indexes and bind names are formatted in."""
    when = " ".join(f"WHEN :s{i} THEN {i}" for i in range(k))
    names = ", ".join(f":s{i}" for i in range(k))
    bd = "CASE WHEN event_type = :s0 THEN properties->>:prop END" if breakdown else "NULL::text"
    reached = " + ".join(
        ["1"] + [f"coalesce((a0[{i + 1}] <= a0[1] + :w)::int, 0)" for i in range(1, k)]
    )
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
    return f"""
    WITH ev AS (
        SELECT hashtextextended(user_id, 0) AS u, extract(epoch FROM time)::float8 AS ep,
               CASE event_type {when} END AS step, {bd} AS bd
        FROM business_events
        WHERE time >= :lo AND time < :hi_ext AND user_id IS NOT NULL
          AND event_type IN ({names})
    ), chains AS ({_chain_levels(k, mode)}
    ), starts AS (
        SELECT u, bd, a0, {reached} AS reached FROM chains
        WHERE step = 0 AND ep < :hi_ep
    ), best AS (
        SELECT DISTINCT ON (u) u, bd, a0, reached FROM starts ORDER BY u, reached DESC, a0[1]
    ), ranked AS (
        SELECT bd, row_number() OVER (ORDER BY count(*) DESC, bd) AS rk FROM best GROUP BY bd
    ), labelled AS (
        SELECT b.*, CASE WHEN r.rk <= :top THEN coalesce(b.bd, :none) ELSE :other END AS label
        FROM best b JOIN ranked r ON r.bd IS NOT DISTINCT FROM b.bd
    )
    SELECT label, grouping(label) AS is_total, {counts}, {medians}, {total}
    FROM labelled GROUP BY GROUPING SETS ((label), ())
    """  # noqa: S608


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
) -> FunnelResult:
    """Users entering step 1 in [start, end) and how far they got within `window`."""
    validate_funnel(steps, window)
    params: dict[str, Any] = {f"s{i}": s for i, s in enumerate(steps)}
    params |= {"lo": start, "hi_ext": end + window, "hi_ep": end.timestamp()}
    params |= {"w": window.total_seconds(), "prop": breakdown or "", "top": top}
    params |= {"none": NONE, "other": OTHER}
    sql = text(_funnel_sql(len(steps), mode, breakdown is not None))
    conn.execute(text("SET LOCAL work_mem = '64MB'"))  # the per-user sort stays in memory
    total: list[FunnelStep] = build_steps(steps, [0] * len(steps), [None] * len(steps))
    by_label: dict[str, list[FunnelStep]] = {}
    median_total = None
    for row in conn.execute(sql, params).mappings():
        users = [int(row[f"n{i}"]) for i in range(len(steps))]
        medians = [None] + [row[f"m{i}"] for i in range(1, len(steps))]
        built = build_steps(steps, users, medians)
        if row["is_total"]:
            total, median_total = built, row["m_total"]
        elif breakdown is not None:
            by_label[row["label"]] = built
    return FunnelResult(total, median_total, breakdown, _ordered(by_label))


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
