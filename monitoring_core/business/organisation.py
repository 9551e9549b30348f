"""Business figures of the organisations an organisation-scoped session may read.

The daily rollup (`business_metrics_daily`) adds up every organisation and names none, so it
cannot be shown to a user limited to organisations (`monitoring_core.org_scope`). Their figures
are computed by the function that builds the rollup, `daily.compute_days`, run in their scoped
session: row-level security hands it only their organisations' `business_events`, so every KPI
means what it means on the Business page, for their organisations only. The cards are
`kpis.cards_of` of that series, as the Business page's are of the rollup's. Nothing here
filters by organisation: run as the owner it would return the whole platform's figures, which is
why only scoped sessions call it (ui.org_business).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text

from monitoring_core.business import kpis
from monitoring_core.business.daily import NO_CURRENCY, compute_days
from monitoring_core.business.definitions import KPIS, Agg, KpiSpec, day_bounds

__all__ = ["ORGANISATION_KPIS", "ORGANISATION_TRENDS", "OrganisationFigures", "figures"]

# The Business page's cards that mean something for a few organisations (a churn *rate* of one
# organisation is 0 or 100 %), with their events and paying organisations.
ORGANISATION_KPIS: tuple[KpiSpec, ...] = (
    KpiSpec("events", "Events", Agg.SUM),
    *(spec for spec in KPIS if spec.name != "churn_rate"),
    KpiSpec("paying_orgs", "Paying organisations", Agg.LAST),
)
ORGANISATION_TRENDS = (
    "events",
    "dau",
    "wau",
    "mau",
    "signups",
    "form_starts",
    "form_completions",
    "journey_starts",
    "journey_completions",
    "revenue",
    "mrr",
)


@dataclass(frozen=True)
class OrganisationFigures:
    cards: list[kpis.KpiValue]
    currencies: list[str]
    series: dict[str, dict[date, float]]  # every KPI per day of `kpis.card_days`
    event_types: list[dict[str, Any]]  # event type, events in the period and the one before
    organisations: list[dict[str, Any]]  # per organisation: events, people, revenue


_BY_TYPE = text(
    """
    SELECT event_type,
           count(*) FILTER (WHERE time >= :lo) AS events,
           count(*) FILTER (WHERE time < :lo) AS previous
    FROM business_events
    WHERE time >= :prev_lo AND time < :hi
    GROUP BY 1 ORDER BY 2 DESC, 1
    """
)
_BY_ORGANISATION = text(
    """
    SELECT organization_id, count(*) AS events, count(DISTINCT user_id) AS people,
           upper(coalesce(currency, :none)) AS currency, sum(revenue) AS revenue
    FROM business_events
    WHERE time >= :lo AND time < :hi AND organization_id IS NOT NULL
    GROUP BY GROUPING SETS ((1), (1, 4))
    """
)


def _series(rows: dict[tuple[date, str], float]) -> dict[str, dict[date, float]]:
    out: dict[str, dict[date, float]] = defaultdict(dict)
    for (day, name), value in rows.items():
        out[name][day] = value
    return dict(out)


def _organisations(conn: Connection, lo: datetime, hi: datetime) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    params = {"lo": lo, "hi": hi, "none": NO_CURRENCY}
    for org, events, people, currency, revenue in conn.execute(_BY_ORGANISATION, params):
        row = found.setdefault(org, {"organization_id": org, "revenue": {}})
        if currency is None:  # the organisation's own grouping set: every event of it
            row |= {"events": int(events), "people": int(people)}
        elif revenue is not None:  # revenue stays per currency, never added across them
            row["revenue"][currency] = float(revenue)
    return sorted(found.values(), key=lambda r: (-r["events"], r["organization_id"]))


def figures(
    conn: Connection, *, period: kpis.Period, now: datetime, tz: ZoneInfo
) -> OrganisationFigures:
    """The cards of `period` (its complete days against as many before, today apart), every
    KPI per day of `kpis.card_days`, events per type and per organisation over the complete
    days — all from the `business_events` this session may read."""
    days = kpis.card_days(period, now, tz)
    rows = compute_days(conn, first=days.first, last=days.last, tz=tz)
    series = _series(rows)
    currencies = sorted(n.split(":", 1)[1] for n in series if n.startswith("revenue:"))
    complete = kpis.complete_period(period, now, tz)
    lo, hi = day_bounds(complete.first, complete.last, tz)
    prev_lo, _ = day_bounds(complete.previous().first, complete.last, tz)
    by_type = conn.execute(_BY_TYPE, {"lo": lo, "hi": hi, "prev_lo": prev_lo}).mappings()
    return OrganisationFigures(
        cards=kpis.cards_of(
            series, currencies, period=period, now=now, tz=tz, specs=ORGANISATION_KPIS
        ),
        currencies=currencies,
        series=series,
        event_types=[dict(r) for r in by_type],
        organisations=_organisations(conn, lo, hi),
    )
