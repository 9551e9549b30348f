"""Churn early warning: an explainable risk score per paying organization, with reasons.

score = 40 x activity decline (7-day vs 30-day daily events) + 35 x inactivity (days since the
last key action, full at 28 days) + 25 x failed payments (full at 2 in 30 days), each part in
[0, 1]; the reasons are the parts that contributed, largest first, in words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, text

from monitoring_core.business.definitions import KEY_ACTIONS, MRR_EVENTS, EventType

__all__ = ["ChurnRisk", "OrgActivity", "churn_risk", "load_activity", "rank_churn_risk"]

WEIGHTS = {"decline": 40.0, "inactivity": 35.0, "failed_payments": 25.0}
INACTIVE_FULL_DAYS = 28
FAILED_FULL = 2
KEY_LOOKBACK_DAYS = 90


@dataclass(frozen=True)
class OrgActivity:
    organization_id: str
    mrr: float
    events_7d: int
    events_30d: int
    last_key_action: datetime | None
    failed_payments_30d: int


@dataclass(frozen=True)
class ChurnRisk:
    organization_id: str
    score: float  # 0..100
    level: str  # high | medium | low
    mrr: float
    reasons: list[str]
    parts: dict[str, float] = field(default_factory=dict)

    def row(self) -> dict[str, object]:
        return {
            "organization_id": self.organization_id,
            "score": round(self.score, 1),
            "level": self.level,
            "mrr": self.mrr,
            "reasons": "; ".join(self.reasons),
        }


def _clamp(x: float) -> float:
    return min(1.0, max(0.0, x))


def _parts(a: OrgActivity, now: datetime) -> tuple[dict[str, float], dict[str, str]]:
    per_day_7, per_day_30 = a.events_7d / 7, a.events_30d / 30
    decline = 1.0 if per_day_30 == 0 else _clamp(1 - per_day_7 / per_day_30)
    words = {
        "decline": f"activity down {decline:.0%} (last 7 days vs 30-day daily average)"
        if per_day_30
        else "no activity in 30 days",
    }
    if a.last_key_action is None:
        idle, words["inactivity"] = 1.0, f"no key action in {KEY_LOOKBACK_DAYS} days"
    else:
        days = (now - a.last_key_action) / timedelta(days=1)
        idle = _clamp(days / INACTIVE_FULL_DAYS)
        words["inactivity"] = f"no key action for {days:.0f} days"
    failed = _clamp(a.failed_payments_30d / FAILED_FULL)
    words["failed_payments"] = f"{a.failed_payments_30d} failed payment(s) in 30 days"
    return {"decline": decline, "inactivity": idle, "failed_payments": failed}, words


def churn_risk(a: OrgActivity, now: datetime) -> ChurnRisk:
    """The organization's score and the reasons behind it (pure; `now` is explicit)."""
    parts, words = _parts(a, now)
    points = {k: WEIGHTS[k] * v for k, v in parts.items()}
    score = sum(points.values())
    reasons = [words[k] for k in sorted(points, key=lambda k: -points[k]) if points[k] >= 5]
    level = "high" if score >= 60 else "medium" if score >= 30 else "low"
    return ChurnRisk(a.organization_id, score, level, a.mrr, reasons, parts)


def rank_churn_risk(
    activity: Sequence[OrgActivity], now: datetime, *, limit: int | None = None
) -> list[ChurnRisk]:
    """Highest risk first; at equal score the larger MRR (more to lose) first."""
    scored = sorted((churn_risk(a, now) for a in activity), key=lambda r: (-r.score, -r.mrr))
    return scored[:limit] if limit else scored


_ACTIVITY = text(
    """
    WITH sub AS (
        SELECT DISTINCT ON (organization_id) organization_id,
               CASE WHEN event_type = :cancelled THEN 0
                    ELSE coalesce((properties->>'mrr')::float8, 0) END AS mrr
        FROM business_events
        WHERE event_type IN :mrr_events AND organization_id IS NOT NULL AND time < :now
        ORDER BY organization_id, time DESC
    ), paying AS (
        SELECT organization_id, mrr FROM sub WHERE mrr > 0
    ), recent AS (
        SELECT organization_id,
               count(*) FILTER (WHERE time >= :d7) AS events_7d,
               count(*) AS events_30d,
               count(*) FILTER (WHERE event_type = :failed) AS failed_payments_30d
        FROM business_events
        WHERE time >= :d30 AND time < :now AND organization_id IS NOT NULL
        GROUP BY organization_id
    ), key AS (
        SELECT organization_id, max(time) AS last_key_action
        FROM business_events
        WHERE event_type IN :key_actions AND time >= :d90 AND time < :now
          AND organization_id IS NOT NULL
        GROUP BY organization_id
    )
    SELECT p.organization_id, p.mrr,
           coalesce(r.events_7d, 0) AS events_7d, coalesce(r.events_30d, 0) AS events_30d,
           k.last_key_action, coalesce(r.failed_payments_30d, 0) AS failed_payments_30d
    FROM paying p
    LEFT JOIN recent r USING (organization_id)
    LEFT JOIN key k USING (organization_id)
    """
).bindparams(bindparam("mrr_events", expanding=True), bindparam("key_actions", expanding=True))


def load_activity(conn: Connection, *, now: datetime) -> list[OrgActivity]:
    """Activity of every paying organization (MRR > 0 now) over the last 7/30/90 days."""
    params = {
        "now": now,
        "d7": now - timedelta(days=7),
        "d30": now - timedelta(days=30),
        "d90": now - timedelta(days=KEY_LOOKBACK_DAYS),
        "cancelled": EventType.SUBSCRIPTION_CANCELLED.value,
        "failed": EventType.PAYMENT_FAILED.value,
        "mrr_events": list(MRR_EVENTS),
        "key_actions": list(KEY_ACTIONS),
    }
    return [OrgActivity(**row) for row in conn.execute(_ACTIVITY, params).mappings()]
