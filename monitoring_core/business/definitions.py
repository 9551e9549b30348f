"""The BI vocabulary: event types, metric names and the pure rules behind each KPI.

Definitions (documented in the README):
- A day is a calendar day in the business time zone (MONITORING_TZ).
- DAU/WAU/MAU: distinct `user_id`s with any event on the day / in the 7 / 28 days ending it.
- Stickiness: DAU / MAU of the same day.
- Signups: `signup` events. Form completion rate: `form_completed` / `form_started`.
- Journey completion rate: `journey_completed` / `journey_started`.
- Revenue keeps its currency: one figure per ISO 4217 `currency` sent with the events (XXX
  for revenue sent without one), never a sum across currencies; MRR carries the currency
  symbol only when every revenue of the period is in that one currency.
- MRR: per organization, the `properties.mrr` of its latest subscription event
  (`subscription_cancelled` sets it to 0); the platform's MRR is the sum over organizations.
- MRR movements follow ChartMogul: new business, expansion, contraction, churn, reactivation
  (`classify_mrr_change`). Customer churn rate: organizations whose MRR fell to 0 in the period
  divided by the organizations paying at the period's start.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

__all__ = [
    "KEY_ACTIONS",
    "MRR_EVENTS",
    "Agg",
    "EventType",
    "KpiSpec",
    "KPIS",
    "Movement",
    "money_specs",
    "classify_mrr_change",
    "day_bounds",
    "local_day",
]


class EventType(StrEnum):
    SIGNUP = "signup"
    FORM_CREATED = "form_created"
    FORM_STARTED = "form_started"
    FORM_COMPLETED = "form_completed"
    JOURNEY_STARTED = "journey_started"
    JOURNEY_COMPLETED = "journey_completed"
    SUBSCRIPTION_STARTED = "subscription_started"
    SUBSCRIPTION_CHANGED = "subscription_changed"
    SUBSCRIPTION_CANCELLED = "subscription_cancelled"
    SUBSCRIPTION_PAID = "subscription_paid"
    PAYMENT_FAILED = "payment_failed"
    FEATURE_USED = "feature_used"
    PAGE_VIEW = "page_view"


MRR_EVENTS: tuple[str, ...] = (
    EventType.SUBSCRIPTION_STARTED,
    EventType.SUBSCRIPTION_CHANGED,
    EventType.SUBSCRIPTION_CANCELLED,
)
# Actions that show an organization is getting value; their absence feeds the churn-risk score.
KEY_ACTIONS: tuple[str, ...] = (
    EventType.FORM_CREATED,
    EventType.FORM_COMPLETED,
    EventType.JOURNEY_STARTED,
    EventType.JOURNEY_COMPLETED,
)


class Movement(StrEnum):
    NEW = "new"
    EXPANSION = "expansion"
    CONTRACTION = "contraction"
    CHURN = "churn"
    REACTIVATION = "reactivation"


def classify_mrr_change(
    previous: Decimal, current: Decimal, *, had_mrr_before: bool
) -> tuple[Movement, Decimal] | None:
    """ChartMogul's movement for one organization's MRR change, with its (positive) amount.

    new: 0 -> >0 for a first-time customer; reactivation: 0 -> >0 after an earlier churn;
    churn: >0 -> 0; expansion / contraction: a rise / fall between two non-zero values.
    """
    if previous == current:
        return None
    if previous == 0:
        return (Movement.REACTIVATION if had_mrr_before else Movement.NEW), current
    if current == 0:
        return Movement.CHURN, previous
    if current > previous:
        return Movement.EXPANSION, current - previous
    return Movement.CONTRACTION, previous - current


class Agg(StrEnum):
    """How a daily KPI summarises over a period."""

    SUM = "sum"  # counts and money: add the days
    MEAN = "mean"  # DAU, stickiness: average day
    LAST = "last"  # WAU, MAU, MRR, paying orgs: the value at the period's end
    RATIO = "ratio"  # rates: sum(numerator) / sum(denominator)


@dataclass(frozen=True)
class KpiSpec:
    name: str
    label: str
    agg: Agg
    numerator: str | None = None
    denominator: str | None = None
    fmt: str = "{:,.0f}"
    higher_is_better: bool = True
    # Churn rate divides by the paying organizations on the day before the period, not a sum.
    denominator_at_start: bool = False


KPIS: tuple[KpiSpec, ...] = (
    KpiSpec("dau", "DAU (avg)", Agg.MEAN),
    KpiSpec("wau", "WAU", Agg.LAST),
    KpiSpec("mau", "MAU", Agg.LAST),
    KpiSpec("stickiness", "Stickiness (DAU/MAU)", Agg.MEAN, fmt="{:.1%}"),
    KpiSpec("signups", "Signups", Agg.SUM),
    KpiSpec(
        "form_completion_rate",
        "Form completion rate",
        Agg.RATIO,
        "form_completions",
        "form_starts",
        fmt="{:.1%}",
    ),
    KpiSpec("journey_starts", "Journeys started", Agg.SUM),
    KpiSpec("journey_completions", "Journeys completed", Agg.SUM),
    KpiSpec("revenue", "Revenue", Agg.SUM, fmt="{:,.0f}"),  # per currency: money_specs
    KpiSpec("mrr", "MRR", Agg.LAST, fmt="{:,.0f}"),
    KpiSpec(
        "churn_rate",
        "Customer churn rate",
        Agg.RATIO,
        "churned_orgs",
        "paying_orgs",
        fmt="{:.2%}",
        higher_is_better=False,
        denominator_at_start=True,
    ),
)


_SYMBOLS = {"GBP": "£", "EUR": "€", "USD": "$"}


def _money(currency: str) -> str:
    return _SYMBOLS.get(currency, f"{currency} ") + "{:,.0f}"


def money_specs(specs: tuple[KpiSpec, ...], currencies: list[str]) -> tuple[KpiSpec, ...]:
    """The cards with revenue split per currency (`revenue:GBP` …) and MRR in the one
    currency when there is exactly one; without currencies, plain numbers (pure)."""
    out: list[KpiSpec] = []
    for spec in specs:
        if spec.name == "revenue" and currencies:
            out += [
                replace(spec, name=f"revenue:{c}", label=f"Revenue ({c})", fmt=_money(c))
                for c in sorted(currencies)
            ]
        elif spec.name == "mrr" and len(currencies) == 1:
            out.append(replace(spec, fmt=_money(currencies[0])))
        else:
            out.append(spec)
    return tuple(out)


def local_day(moment: datetime, tz: ZoneInfo) -> date:
    """The business day a timestamp falls on."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(tz).date()


def day_bounds(first: date, last: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) instants of the business days first..last (DST-correct)."""
    start = datetime.combine(first, time(0), tzinfo=tz)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz)
    return start, end
