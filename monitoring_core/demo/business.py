"""Demo business events: a year of a wedding platform's users, suppliers and subscriptions.

~2,000 supplier organizations (owners + team members) and ~16,000 couples, with a weekly
shape (suppliers work weekdays and are at weddings on Saturdays; couples plan at weekends),
a season (May-October is busier), an onboarding funnel with a known drop-off (mobile owners
abandon at form completion), a feature launch (`ai_writer`, 45 days ago, ramping up), and a
cohort of churning organizations (the "2024 wedding fair" cohort: activity fading over the
last two months, failed payments, half of them cancelled). Pre-existing subscriptions are
imported on the first day. A year is loaded (BI needs seasons) for any `days` >= 30 (the
default); shorter requests (the UI tests' 8 days) get 10 weeks, enough for every baseline.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import Connection

from monitoring_core.business.daily import rollup_days
from monitoring_core.business.definitions import local_day
from monitoring_core.business.ingest import copy_events
from monitoring_core.config import load_settings
from monitoring_core.partitions import ensure_partitions

__all__ = ["DAYS", "N_COUPLES", "N_ORGS", "load"]

log = logging.getLogger(__name__)
DAYS = 365
SHORT_DAYS = 70  # for `days` < 30 (the page tests): still 8 weeks of history for the baselines
N_ORGS = 2_000
N_COUPLES = 16_000
LAUNCH_DAYS_AGO = 45
COHORT = 150  # the churning "2024 wedding fair" organizations
PLANS = {"starter": 29, "professional": 59, "scale": 99}
SUPPLIER_FEATURES = ["forms_builder", "journeys", "client_list", "invoicing", "calendar"]
COUPLE_FEATURES = ["timeline", "guest_list", "budget", "vendor_search", "messaging"]
DEVICES, DEVICE_P = ["mobile", "desktop", "tablet"], [0.45, 0.5, 0.05]
SOURCES, SOURCE_P = ["google", "instagram", "referral", "wedding_fair"], [0.4, 0.25, 0.2, 0.15]
# Relative activity by weekday (Mon..Sun) and hour-of-day weights (UTC ~ London).
SUPPLIER_WEEK = np.array([1.0, 1.0, 1.0, 1.0, 0.9, 0.3, 0.45])
COUPLE_WEEK = np.array([0.8, 0.8, 0.85, 0.9, 0.9, 1.2, 1.5])
SUPPLIER_HOURS = np.array(
    [0, 0, 0, 0, 0, 0, 1, 3, 6, 8, 8, 7, 6, 7, 8, 7, 6, 4, 3, 2, 2, 1, 1, 0.5]
)
COUPLE_HOURS = np.array(
    [1, 0.5, 0, 0, 0, 0, 0.5, 1, 2, 2, 2, 3, 4, 3, 3, 3, 3, 4, 6, 8, 9, 8, 5, 2]
)


@dataclass
class _Events:
    """Column lists of the events being built (appended in numpy chunks)."""

    seconds: list[np.ndarray] = field(default_factory=list)
    types: list[np.ndarray] = field(default_factory=list)
    users: list[np.ndarray] = field(default_factory=list)
    props: list[Any] = field(default_factory=list)
    revenue: list[Any] = field(default_factory=list)

    def add(
        self, secs: np.ndarray, kind: str, users: np.ndarray, props: Any = None, revenue: Any = None
    ) -> None:
        n = len(secs)
        if not n:
            return
        self.seconds.append(np.asarray(secs, dtype=np.int64))
        self.types.append(np.full(n, kind, dtype=object))
        self.users.append(np.asarray(users, dtype=np.int64))
        self.props.extend(props if isinstance(props, list) else [props or {}] * n)
        self.revenue.extend(revenue if isinstance(revenue, list) else [revenue] * n)


@dataclass
class _World:
    rng: np.random.Generator
    days: int  # length of the generated history
    t0: int  # epoch seconds of day 0, 00:00 UTC
    now_s: int
    season: np.ndarray  # per day
    weekday: np.ndarray  # per day, 0 = Monday
    user_org: np.ndarray  # org index per user (-1: none)
    signup: np.ndarray  # day index per user (-1: before the year)
    leave: np.ndarray  # day index the user stops (days: never)
    is_supplier: np.ndarray
    device: np.ndarray
    churn_day: np.ndarray  # per org: day its subscription ends (days: never)
    cohort: np.ndarray  # per org: in the churning cohort


def _season(rng: np.random.Generator, t0: int, span: int) -> tuple[np.ndarray, np.ndarray]:
    days = np.arange(span)
    dates = (np.datetime64(t0, "s") + days * np.timedelta64(1, "D")).astype("datetime64[D]")
    months = dates.astype("datetime64[M]").astype(int) % 12 + 1
    weekday = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    season = np.where((months >= 5) & (months <= 10), 1.25, 0.9) * (
        1 + 0.06 * rng.standard_normal(span)
    )
    return season.clip(0.6, 1.6), weekday


def _signup_days(
    rng: np.random.Generator, n: int, existing: float, weights: np.ndarray
) -> np.ndarray:
    days = rng.choice(len(weights), size=n, p=weights / weights.sum())
    return np.where(rng.random(n) < existing, -1, days)


def _build_world(
    rng: np.random.Generator, span: int, t0: int, now_s: int, scale: float = 1.0
) -> _World:
    n_orgs, n_couples = int(N_ORGS * scale), int(N_COUPLES * scale)
    season, weekday = _season(rng, t0, span)
    org_signup = _signup_days(rng, n_orgs, 0.65, season)
    team = rng.poisson(0.9, n_orgs).clip(0, 3)
    owners = np.arange(n_orgs)
    members = np.repeat(owners, team)
    member_signup = np.maximum(org_signup[members], 0) + rng.integers(0, 120, len(members))
    member_signup = np.where(
        (org_signup[members] < 0) & (rng.random(len(members)) < 0.7), -1, member_signup
    )
    couple_signup = _signup_days(rng, n_couples, 0.3, season[::-1] + 0.3)  # engagement season
    couple_org = rng.integers(0, n_orgs, n_couples)
    signup = np.concatenate([org_signup, member_signup.clip(-1, span - 1), couple_signup])
    user_org = np.concatenate([owners, members, couple_org])
    n_sup = n_orgs + len(members)
    is_supplier = np.arange(len(signup)) < n_sup
    leave = np.full(len(signup), span)
    couple_life = rng.integers(60, 330, n_couples)
    leave[n_sup:] = np.maximum(couple_signup, 0) + couple_life
    cohort = np.zeros(n_orgs, dtype=bool)
    cohort[rng.choice(np.flatnonzero(org_signup < 0), int(COHORT * scale), replace=False)] = True
    churn_day = np.full(n_orgs, span)
    base_churn = rng.random(n_orgs) < 0.2
    churn_day[base_churn] = rng.integers(30, span, base_churn.sum())
    quitting = cohort & (rng.random(n_orgs) < 0.5)
    churn_day[quitting] = rng.integers(span - 35, span - 2, quitting.sum())
    churn_day[cohort & ~quitting] = span
    device = rng.choice(3, size=len(signup), p=DEVICE_P)
    return _World(
        rng,
        span,
        t0,
        now_s,
        season,
        weekday,
        user_org,
        signup,
        leave,
        is_supplier,
        device,
        churn_day,
        cohort,
    )


def _times(w: _World, day: int, n: int, hours: np.ndarray) -> np.ndarray:
    hour = w.rng.choice(24, size=n, p=hours / hours.sum())
    return w.t0 + day * 86_400 + hour * 3600 + w.rng.integers(0, 3600, n)


def _activity_p(w: _World, day: int) -> np.ndarray:
    """Each user's chance of being active on `day`."""
    p = np.where(
        w.is_supplier, 0.12 * SUPPLIER_WEEK[w.weekday[day]], 0.03 * COUPLE_WEEK[w.weekday[day]]
    )
    p = p * w.season[day]
    org = w.user_org
    fading = w.cohort[org]  # its suppliers and their couples alike
    decline = np.clip((w.days - 60 - day) / 60 + 1, 0.12, 1.0) if day > w.days - 60 else 1.0
    p = np.where(fading, p * decline, p)
    eligible = (w.signup <= day) & (day < w.leave) & ~(w.is_supplier & (w.churn_day[org] <= day))
    return np.where(eligible, p, 0.0)


def _daily_events(
    w: _World, ev: _Events, day: int, feature_props: dict[tuple[str, str], dict]
) -> None:
    active = np.flatnonzero(w.rng.random(len(w.signup)) < _activity_p(w, day))
    sup, cou = active[w.is_supplier[active]], active[~w.is_supplier[active]]
    for users, hours, kind in ((sup, SUPPLIER_HOURS, "supplier"), (cou, COUPLE_HOURS, "couple")):
        views = np.repeat(users, 1 + w.rng.poisson(0.15, len(users)))
        ev.add(_times(w, day, len(views), hours), "page_view", views)
        used = users[w.rng.random(len(users)) < 0.45]
        names = SUPPLIER_FEATURES if kind == "supplier" else COUPLE_FEATURES
        if kind == "supplier" and day >= w.days - LAUNCH_DAYS_AGO:
            ramp = min(0.45, 0.05 + 0.4 * (day - (w.days - LAUNCH_DAYS_AGO)) / LAUNCH_DAYS_AGO)
            ai = used[w.rng.random(len(used)) < ramp]
            ev.add(
                _times(w, day, len(ai), hours),
                "feature_used",
                ai,
                feature_props[("ai_writer", kind)],
            )
        picks = w.rng.integers(0, len(names), len(used))
        secs = _times(w, day, len(used), hours)
        for i, name in enumerate(names):
            ev.add(secs[picks == i], "feature_used", used[picks == i], feature_props[(name, kind)])
    _work_events(w, ev, day, sup, cou)


def _work_events(w: _World, ev: _Events, day: int, sup: np.ndarray, cou: np.ndarray) -> None:
    rng = w.rng
    forms = sup[rng.random(len(sup)) < 0.05]
    ev.add(_times(w, day, len(forms), SUPPLIER_HOURS), "form_created", forms)
    journeys = sup[rng.random(len(sup)) < 0.07]
    start = _times(w, day, len(journeys), SUPPLIER_HOURS)
    ev.add(start, "journey_started", journeys)
    done = rng.random(len(journeys)) < 0.58
    ev.add(start[done] + rng.integers(60, 7200, done.sum()), "journey_completed", journeys[done])
    filling = cou[rng.random(len(cou)) < 0.14]
    start = _times(w, day, len(filling), COUPLE_HOURS)
    ev.add(start, "form_started", filling)
    p_done = np.where(w.device[filling] == 0, 0.52, 0.74)
    done = rng.random(len(filling)) < p_done
    ev.add(start[done] + rng.integers(60, 1800, done.sum()), "form_completed", filling[done])


def _signups(w: _World, ev: _Events, signup_props: list[dict]) -> np.ndarray:
    """Signup events, and the onboarding funnel of new owners; returns paying start seconds per org."""
    rng = w.rng
    new = np.flatnonzero(w.signup >= 0)
    t = np.empty(len(new), dtype=np.int64)
    for supplier, hours in ((True, SUPPLIER_HOURS), (False, COUPLE_HOURS)):
        mask = w.is_supplier[new] == supplier
        t[mask] = _times(w, 0, int(mask.sum()), hours) + w.signup[new[mask]] * 86_400
    ev.add(t, "signup", new, [signup_props[u] for u in new])
    n_orgs = len(w.cohort)
    paying_from = np.full(n_orgs, -1, dtype=np.int64)
    paying_from[w.signup[:n_orgs] < 0] = w.t0 + 300  # imported on the first day
    owners = new[new < n_orgs]
    t_own = t[new < n_orgs]
    made = rng.random(len(owners)) < 0.75  # form_created within two days
    t1 = t_own + rng.integers(600, 2 * 86_400, len(owners))
    ev.add(t1[made], "form_created", owners[made])
    ev.add(t1[made] + 120, "form_started", owners[made])
    # The known drop-off: owners on mobile abandon their first form far more often.
    p_done = np.where(w.device[owners] == 0, 0.3, 0.72)
    done = made & (rng.random(len(owners)) < p_done)
    t2 = t1 + rng.integers(600, 3 * 86_400, len(owners))
    ev.add(t2[done], "form_completed", owners[done])
    pays = done & (rng.random(len(owners)) < 0.7)
    paying_from[owners[pays]] = t2[pays] + rng.integers(86_400, 10 * 86_400, pays.sum())
    return paying_from


def _subscriptions(w: _World, ev: _Events, paying_from: np.ndarray) -> None:
    """Starts, monthly payments, upgrades, downgrades, failed payments, churn, reactivation."""
    rng = w.rng
    money = {v: Decimal(v) for v in (29, 59, 99)}
    for org in np.flatnonzero(paying_from >= 0).tolist():
        start = int(paying_from[org])
        plan = 29 if w.cohort[org] else int(rng.choice([29, 59, 99], p=[0.5, 0.35, 0.15]))
        end = w.t0 + int(w.churn_day[org]) * 86_400 + int(rng.integers(0, 86_400))
        if start >= min(end, w.now_s):
            continue
        _one_subscription(w, ev, org, start, end, plan, money)
        if end < w.now_s and not w.cohort[org] and rng.random() < 0.2:
            back = end + int(rng.integers(30, 90)) * 86_400
            if back < w.now_s:
                _one_subscription(w, ev, org, back, w.now_s + 1, plan, money)


def _one_subscription(
    w: _World, ev: _Events, org: int, start: int, end: int, plan: int, money: dict
) -> None:
    rng, user = w.rng, np.array([org])
    ev.add(np.array([start]), "subscription_started", user, {"mrr": plan, "plan": _plan_name(plan)})
    change_at = start + int(rng.integers(20, 200)) * 86_400
    new_plan = plan
    roll = rng.random()
    if roll < 0.15 and plan < 99 and change_at < min(end, w.now_s):
        new_plan = 59 if plan == 29 else 99
    elif roll > 0.95 and plan > 29 and change_at < min(end, w.now_s):
        new_plan = 29 if plan == 59 else 59
    if new_plan != plan:
        ev.add(
            np.array([change_at]),
            "subscription_changed",
            user,
            {"mrr": new_plan, "plan": _plan_name(new_plan)},
        )
    # Imported customers were billed on their own days of the month before the data began.
    pay = start + (int(rng.integers(0, 30)) * 86_400 if start < w.t0 + 86_400 else 0)
    while pay < min(end, w.now_s):
        amount = new_plan if pay >= change_at else plan
        failing = w.cohort[org] and pay > w.now_s - 40 * 86_400 and rng.random() < 0.7
        if failing:
            ev.add(np.array([pay]), "payment_failed", user, {"mrr": amount})
        else:
            ev.add(
                np.array([pay]),
                "subscription_paid",
                user,
                {"plan": _plan_name(amount)},
                money[amount],
            )
        pay += 30 * 86_400
    if end < w.now_s:
        ev.add(np.array([end]), "subscription_cancelled", user, {"reason": "demo"})


def _plan_name(mrr: int) -> str:
    return {v: k for k, v in PLANS.items()}[mrr]


def _rows(w: _World, ev: _Events) -> tuple[list[tuple[Any, ...]], datetime, datetime]:
    """COPY rows sorted by time (COPY routes sorted rows to one partition after another)."""
    secs = np.concatenate(ev.seconds)
    order = np.argsort(secs, kind="stable")
    order = order[secs[order] < w.now_s]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    times = [epoch + timedelta(seconds=s) for s in secs[order].tolist()]
    types = np.concatenate(ev.types)[order].tolist()
    users = np.concatenate(ev.users)[order]
    user_ids = np.array([f"user_{i:05d}" for i in range(len(w.signup))], dtype=object)
    org_ids = np.array([f"org_{i:04d}" for i in range(len(w.cohort))], dtype=object)
    props = [ev.props[i] for i in order.tolist()]
    revenue = [ev.revenue[i] for i in order.tolist()]
    currency = ["GBP" if r is not None else None for r in revenue]
    rows = list(
        zip(
            times,
            types,
            user_ids[users].tolist(),
            org_ids[w.user_org[users]].tolist(),
            [None] * len(times),
            props,
            revenue,
            currency,
            strict=True,
        )
    )
    return rows, times[0], times[-1]


@contextmanager
def _no_gc() -> Iterator[None]:
    """A million new tuples trigger the cyclic GC over and over (3x the build time, measured);
    none of them form cycles, so it is paused while building."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load(conn: Connection, *, days: int, now: datetime, rng: np.random.Generator) -> dict[str, int]:
    """Write the year of business events and roll it up; rows written per table."""
    started = time.perf_counter()
    with _no_gc():
        rows, lo, hi = _generate(now, rng, DAYS if days >= 30 else SHORT_DAYS)
    tz = load_settings().tz
    generated = time.perf_counter()
    ensure_partitions(conn, start=lo, end=hi + timedelta(days=2), tables=("business_events",))
    partitioned = time.perf_counter()
    written = copy_events(conn, rows)
    copied = time.perf_counter()
    metrics = rollup_days(conn, first=local_day(lo, tz), last=local_day(now, tz), tz=tz)
    log.info(
        "business demo: generated %.1f s, partitions %.1f s, COPY %.1f s, rollup %.1f s",
        generated - started,
        partitioned - generated,
        copied - partitioned,
        time.perf_counter() - copied,
    )
    return {"business_events": written, "business_metrics_daily": metrics}


def _generate(
    now: datetime, rng: np.random.Generator, span: int
) -> tuple[list[tuple[Any, ...]], datetime, datetime]:
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first = midnight - timedelta(days=span - 1)
    w = _build_world(rng, span, int(first.timestamp()), int(now.timestamp()))
    ev = _Events()
    kinds = ("supplier", "couple")
    feature_props = {
        (f, k): {"feature": f, "user_type": k}
        for f in [*SUPPLIER_FEATURES, *COUPLE_FEATURES, "ai_writer"]
        for k in kinds
    }
    signup_props = [
        {
            "user_type": "supplier" if s else "couple",
            "device": DEVICES[d],
            "acquisition_source": src,
        }
        for s, d, src in zip(
            w.is_supplier,
            w.device,
            rng.choice(SOURCES, size=len(w.signup), p=SOURCE_P),
            strict=True,
        )
    ]
    paying_from = _signups(w, ev, signup_props)
    for day in range(w.days):
        _daily_events(w, ev, day, feature_props)
    _subscriptions(w, ev, paying_from)
    return _rows(w, ev)
