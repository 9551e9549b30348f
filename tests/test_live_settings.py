"""Settings an admin changes live: the wedding calendar (time zone, peak months, strictness,
Saturday raise) and the default key limits. Checked like their readers read them, stored as
settings rows (the environment as defaults), applied by the alert engine at a fixed `now`,
picked up by every process's cache, edited on the Admin page by admins only."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest

from monitoring_core.accounts import create_api_key
from monitoring_core.alerts.engine import AlertState, Point, evaluate
from monitoring_core.alerts.rules import Rule, parse_condition
from monitoring_core.api.app import create_app
from monitoring_core.audit import system_actor
from monitoring_core.config import load_settings
from monitoring_core.config_io.settings_rows import save_setting, validate_setting
from monitoring_core.enums import ApiScope, Role
from monitoring_core.live_settings import (
    CALENDAR_SETTING,
    KEY_LIMITS_SETTING,
    KeyLimits,
    LiveCache,
    read_live,
)
from monitoring_core.roles import PermissionDenied
from monitoring_core.schema import audit_log, settings
from monitoring_core.wedding_calendar import Calendar, make_calendar
from tests.serving import running_server

AppFactory = Callable[[Role | None], AppTest]
ACTOR = system_actor("test")
ENV = load_settings({"MONITORING_TZ": "Europe/London"})
# Friday 23:30 UTC in June: already Saturday 00:30 in London (BST), still Friday in UTC.
FRIDAY_NIGHT = datetime(2026, 6, 5, 23, 30, tzinfo=UTC)


def _save(engine: Engine, key: str, value: Any, now: datetime) -> None:
    with engine.begin() as conn:
        save_setting(conn, key=key, value=value, actor=ACTOR, role="admin", now=now)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone: 'Mars/Olympus_Mons' is not a known"),
        ({"peak_months": [5, 13]}, "peak_months: must be a list of distinct month numbers 1-12"),
        ({"peak_months": [0]}, "peak_months: must be a list of distinct month numbers 1-12"),
        ({"season_strictness": 0.95}, "season_strictness: must be a number from 0 to 0.9"),
        ({"season_strictness": -0.1}, "season_strictness: must be a number from 0 to 0.9"),
        ({"saturday_raise_levels": 4}, "saturday_raise_levels: must be a whole number from 0 to 3"),
        ({"tz": "UTC"}, "tz: unknown field"),
        ("Europe/London", "must be an object"),
    ],
)
def test_it_refuses_a_calendar_its_readers_could_not_use(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        validate_setting(CALENDAR_SETTING, value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"requests_per_minute": -1}, "requests_per_minute: must be a whole number from 0"),
        ({"points_per_minute": 1.5}, "points_per_minute: must be a whole number from 0"),
        ({"requests": 5}, "requests: unknown field"),
    ],
)
def test_it_refuses_key_limits_its_readers_could_not_use(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_setting(KEY_LIMITS_SETTING, value)


def test_the_environment_is_the_default_and_a_row_overrides_it(
    engine: Engine, now: datetime
) -> None:
    env = dataclasses.replace(ENV, key_requests_per_minute=7, key_points_per_minute=70)
    with engine.connect() as conn:
        live = read_live(conn, env)
    assert live.calendar.key == "Europe/London" and live.calendar.peak_months == set(range(5, 11))
    assert (live.calendar.strictness, live.calendar.saturday_levels) == (0.2, 1)
    assert live.key_limits == KeyLimits(7, 70)
    _save(engine, CALENDAR_SETTING, {"time_zone": "UTC", "peak_months": [12]}, now)
    _save(engine, KEY_LIMITS_SETTING, {"points_per_minute": 0}, now)
    with engine.connect() as conn:
        live = read_live(conn, env)
    assert live.calendar.key == "UTC" and live.calendar.peak_months == {12}
    assert live.calendar.strictness == 0.2  # fields left out keep their defaults
    assert live.key_limits == KeyLimits(7, 0)
    with engine.begin() as conn:  # a row broken by hand in SQL: logged, the defaults apply
        conn.execute(settings.update().values(value={"time_zone": "Nowhere/Land"}))
        assert read_live(conn, env).calendar.key == "Europe/London"
    with engine.begin() as conn, pytest.raises(PermissionDenied):
        save_setting(conn, key=CALENDAR_SETTING, value={}, actor=ACTOR, role="responder", now=now)


def _rule() -> Rule:
    condition = parse_condition(
        {"type": "threshold", "metric": "api.error_count", "operator": "greater_than", "value": 10}
    )
    return Rule(1, "errors", "high", condition, weekend_escalation=True,
                wedding_season_adjustment=True)  # fmt: skip


def _decide(calendar: Calendar, now: datetime) -> tuple[str | None, str]:
    points = [Point(now - timedelta(minutes=1), 9.0)]
    decision = evaluate(_rule(), points, AlertState(), now, tz=calendar)
    return decision.state.status, decision.severity


def test_the_calendar_setting_changes_the_engines_decision(engine: Engine) -> None:
    """At one fixed instant (not the test instant), the same rule and points: 9 errors
    against 'more than 10'."""
    now = FRIDAY_NIGHT
    with engine.connect() as conn:
        default = read_live(conn, ENV).calendar
    # London: Saturday (raised one level) in June (peak: threshold 20 % stricter, 8 < 9 fires)
    assert _decide(default, now) == ("firing", "critical")

    _save(engine, CALENDAR_SETTING, {"time_zone": "UTC", "peak_months": [12, 1]}, now)
    with engine.connect() as conn:
        utc_winter = read_live(conn, ENV).calendar
    # UTC: still Friday (no raise); June is not peak any more (threshold 10, 9 does not fire)
    assert _decide(utc_winter, now) == (None, "high")  # no instance opened

    _save(engine, CALENDAR_SETTING, {"season_strictness": 0.05, "saturday_raise_levels": 2}, now)
    with engine.connect() as conn:
        mild = read_live(conn, ENV).calendar
    # London again: 5 % stricter is 9.5, 9 does not fire; Saturday raises high two levels
    assert _decide(mild, now) == (None, "critical")
    assert _decide(make_calendar("Europe/London", levels=0), now)[1] == "high"


def test_every_process_cache_sees_a_change_within_its_ttl(engine: Engine, now: datetime) -> None:
    ticks = [0.0]
    cache = LiveCache(engine, ENV, ttl=5.0, clock=lambda: ticks[0])
    assert cache.calendar.key == "Europe/London"
    _save(engine, CALENDAR_SETTING, {"time_zone": "Asia/Tokyo"}, now)
    ticks[0] = 4.9
    assert cache.calendar.key == "Europe/London"  # within the TTL: the copy, no query
    ticks[0] = 5.0
    done = threading.Event()
    original = cache.refresh

    def refresh() -> Any:
        try:
            return original()
        finally:
            done.set()

    cache.refresh = refresh  # type: ignore[method-assign]
    assert cache.calendar.key == "Europe/London"  # stale: answered at once, refreshed behind
    assert done.wait(10)
    assert cache.calendar.key == "Asia/Tokyo"


def test_the_api_applies_the_default_key_limit_setting(
    engine: Engine, database_url: str, now: datetime
) -> None:
    _save(engine, KEY_LIMITS_SETTING, {"requests_per_minute": 2}, now)  # environment: 12,000
    with engine.begin() as conn:
        key = create_api_key(conn, name="limited", scope=ApiScope.INGEST)
    env = dataclasses.replace(ENV, database_url=database_url)
    point = [{"metric_name": "limited", "metric_value": 1}]
    with running_server(create_app(env, engine)) as url:
        codes = [
            httpx.post(
                f"{url}/api/monitoring/metrics", json=point, headers={"X-API-Key": key}
            ).status_code
            for _ in range(3)
        ]
    assert codes == [202, 202, 429]


# ---------------------------------------------------------------- the Admin page's forms
def _settings_page(logged_in_app: AppFactory, role: Role) -> AppTest:
    at = logged_in_app(role)
    at.run()
    at.switch_page("pages/admin.py")
    at.query_params["tab"] = "Settings"
    return at.run()


def test_admins_change_the_calendar_and_limits_on_the_page(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    at = _settings_page(logged_in_app, Role.ADMIN)
    assert not at.exception, at.exception
    form_zone = next(t for t in at.text_input if t.label.startswith("Business time zone"))
    assert form_zone.value == "Europe/London"  # the environment's until set
    form_zone.input("Mars/Olympus_Mons")
    next(b for b in at.button if b.label == "Save calendar").click().run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any("Olympus" in e and "is not a known IANA time zone" in e for e in errors), errors
    with engine.connect() as conn:
        assert conn.execute(select(settings.c.key)).all() == []

    next(t for t in at.text_input if t.label.startswith("Business time zone")).input("UTC")
    next(m for m in at.multiselect if m.label == "Peak-season months").set_value([6, 7, 8])
    next(n for n in at.number_input if n.label.startswith("Season strictness")).set_value(30)
    next(b for b in at.button if b.label == "Save calendar").click().run()
    assert not at.exception and any("Wedding calendar saved" in s.value for s in at.success)
    next(n for n in at.number_input if n.label.startswith("Requests per key")).set_value(500)
    next(b for b in at.button if b.label == "Save limits").click().run()
    assert any("Default key limits saved" in s.value for s in at.success)
    with engine.connect() as conn:
        rows = dict(conn.execute(select(settings.c.key, settings.c.value)).all())
        audited = conn.execute(select(audit_log.c.action, audit_log.c.target)).all()
    assert rows[CALENDAR_SETTING] == {
        "time_zone": "UTC",
        "peak_months": [6, 7, 8],
        "season_strictness": 0.3,
        "saturday_raise_levels": 1,
    }
    assert rows[KEY_LIMITS_SETTING] == {"requests_per_minute": 500, "points_per_minute": 600_000}
    assert [tuple(a) for a in audited] == [
        ("setting.update", f"setting:{CALENDAR_SETTING}"),
        ("setting.update", f"setting:{KEY_LIMITS_SETTING}"),
    ]
    # this UI process shows the new zone at once
    assert next(t for t in at.text_input if t.label.startswith("Business time zone")).value == "UTC"


@pytest.mark.parametrize("role", [Role.VIEWER, Role.RESPONDER])
def test_viewers_and_responders_cannot_change_them(
    engine: Engine, logged_in_app: AppFactory, role: Role
) -> None:
    at = _settings_page(logged_in_app, role)
    assert not at.exception
    assert not [b for b in at.button if b.label in ("Save calendar", "Save limits")]
    if role is Role.RESPONDER:
        assert [i.value for i in at.info] == ["Only admins see this section."]
    else:
        assert any("responder" in e.value for e in at.error)
