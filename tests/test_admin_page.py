"""The Admin page and its services: audit-log filters, settings, silences (recurring, end now),
runbook editing, the configuration file; every action audited, refused for the wrong role."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest

from monitoring_core.alerts import service as alert_service
from monitoring_core.audit import record_audit, user_actor
from monitoring_core.collectors.store import save_collector
from monitoring_core.config_io.audit_read import search_audit
from monitoring_core.config_io.settings_rows import (
    EXAMPLES,
    clear_setting,
    save_setting,
    validate_setting,
)
from monitoring_core.enums import Role
from monitoring_core.incidents import runbooks
from monitoring_core.roles import PermissionDenied
from monitoring_core.schema import audit_log, settings, silences, sql_collectors
from tests.ui_harness import table_with
from ui import fmt

AppFactory = Callable[[Role | None], AppTest]
ANN = user_actor("ann")
MATCH = [{"name": "service", "value": "payments", "is_regex": False}]


def _audit(engine: Engine) -> list[tuple[str, str, str | None]]:
    with engine.connect() as conn:
        query = select(audit_log.c.actor, audit_log.c.action, audit_log.c.target)
        return [tuple(r) for r in conn.execute(query.order_by(audit_log.c.id))]


def _admin_page(logged_in_app: AppFactory, role: Role, tab: str | None = None) -> AppTest:
    """The Admin page, on `tab` (its `?tab=` link) when given."""
    at = logged_in_app(role)
    at.run()
    at.switch_page("pages/admin.py")
    if tab is not None:
        at.query_params["tab"] = tab
    return at.run()


def _silence(engine: Engine, now: datetime, **extra: object) -> int:
    with engine.begin() as conn:
        return alert_service.silence_create(
            conn,
            matchers=MATCH,
            starts_at=now - timedelta(hours=1),
            ends_at=now + timedelta(hours=5),
            reason="deploy",
            actor=ANN,
            role="admin",
            now=now,
            **extra,  # type: ignore[arg-type]
        )


# ---------------------------------------------------------------- services
def test_it_finds_audit_entries_by_who_what_and_when(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn:
        for actor, action, at in (
            (ANN, "silence.create", now - timedelta(days=2)),
            ("user:bob_100%", "setting.update", now - timedelta(hours=1)),
            (ANN, "setting.update", now),
        ):
            record_audit(conn, actor=actor, action=action, target="setting:x", now=at)
        day = timedelta(days=1)
        found = search_audit(conn, since=now - day, until=now + day, actions=["setting.update"])
        assert [r["actor"] for r in found] == [ANN, "user:bob_100%"]  # newest first
        assert len(search_audit(conn, since=now - 3 * day, until=now + day, actor="ANN")) == 2
        # % and _ are letters here, not wildcards
        assert len(search_audit(conn, since=now - day, until=now + day, actor="b_100%")) == 1
        assert search_audit(conn, since=now - day, until=now + day, actor="b%1") == []


def test_it_checks_settings_as_their_readers_do(engine: Engine, now: datetime) -> None:
    kw = {"actor": ANN, "now": now}
    with engine.begin() as conn:
        save_setting(conn, key="retention_days", value={"audit_log": 400}, role="admin", **kw)
        with pytest.raises(ValueError, match="metric_pointz: unknown"):
            save_setting(conn, key="retention_days", value={"metric_pointz": 3}, role="admin", **kw)
        with pytest.raises(ValueError, match="installation secret"):
            save_setting(conn, key="ack_link_secret", value="x", role="admin", **kw)
        with pytest.raises(PermissionDenied):
            save_setting(conn, key="error_scrub_fields", value=["iban"], role="responder", **kw)
        assert clear_setting(conn, key="retention_days", role="admin", **kw)
        assert conn.execute(select(settings)).all() == []
    assert _audit(engine) == [
        (ANN, "setting.update", "setting:retention_days"),
        (ANN, "setting.clear", "setting:retention_days"),
    ]


@pytest.mark.parametrize("key", sorted(EXAMPLES))
def test_every_example_shown_is_a_value_its_reader_accepts(key: str) -> None:
    validate_setting(key, EXAMPLES[key])


def test_it_ends_a_silence_now_and_keeps_it(engine: Engine, now: datetime) -> None:
    sid = _silence(engine, now)
    with engine.begin() as conn:
        with pytest.raises(PermissionDenied):
            alert_service.silence_end(conn, silence_id=sid, actor=ANN, role="viewer", now=now)
        assert alert_service.silence_end(conn, silence_id=sid, actor=ANN, role="responder", now=now)
        assert not alert_service.silence_end(
            conn, silence_id=sid, actor=ANN, role="responder", now=now
        )
        assert conn.execute(select(silences.c.ends_at)).scalar_one() == now
    assert _audit(engine)[-1] == (ANN, "silence.end", f"silence:{sid}")


def test_it_updates_a_runbook_for_admins_only(engine: Engine, now: datetime) -> None:
    body = {"title": "Restart", "steps": [{"title": "Look"}]}
    with engine.begin() as conn:
        book = runbooks.create_runbook(conn, body=body, actor=ANN, role="admin", now=now)
        with pytest.raises(PermissionDenied):
            runbooks.update_runbook(
                conn, runbook_id=book["id"], body=body, actor=ANN, role="responder", now=now
            )
        changed = {"title": "Restart API", "steps": [{"title": "Look"}, {"title": "Restart"}]}
        saved = runbooks.update_runbook(
            conn, runbook_id=book["id"], body=changed, actor=ANN, role="admin", now=now
        )
        assert [s["title"] for s in saved["steps"]] == ["Look", "Restart"]
        with pytest.raises(LookupError):
            runbooks.update_runbook(
                conn, runbook_id=999, body=changed, actor=ANN, role="admin", now=now
            )
    assert _audit(engine)[-1] == (ANN, "runbook.update", f"runbook:{book['id']}")


# ---------------------------------------------------------------- page
def test_it_keeps_viewers_out(engine: Engine, logged_in_app: AppFactory) -> None:
    at = _admin_page(logged_in_app, Role.VIEWER)
    assert not at.exception
    assert any("responder" in e.value for e in at.error)
    assert [b.key for b in at.button_group] == ["time_range"]  # the sidebar's, no sections


def test_it_lets_responders_end_silences_but_not_read_the_log(
    engine: Engine, logged_in_app: AppFactory, now: datetime
) -> None:
    sid = _silence(engine, now)
    at = _admin_page(logged_in_app, Role.RESPONDER)  # opens on Silences, theirs to work
    assert not at.exception and at.button_group(key="url_tab").value == "Silences"
    at.button(key=f"end_silence_{sid}").click().run()
    assert not at.exception and any("End silence done" in s.value for s in at.success)
    assert at.button_group(key="url_tab").value == "Silences"  # the action kept the section
    for tab in ("Audit log", "Settings", "Runbooks", "Collectors", "Configuration file"):
        at.button_group(key="url_tab").set_value(tab).run()
        assert [i.value for i in at.info] == ["Only admins see this section."], tab
    actor, action, target = _audit(engine)[-1]
    assert actor.startswith("user:responder-") and (action, target) == (
        "silence.end",
        f"silence:{sid}",
    )


def test_it_adds_a_recurring_silence(engine: Engine, logged_in_app: AppFactory) -> None:
    at = _admin_page(logged_in_app, Role.RESPONDER)
    at.text_input(key="recurring_value").input("payments")
    at.selectbox(key="recurring_day").select("Tuesday")
    at.text_input(key="recurring_reason").input("weekly deploy")
    next(b for b in at.button if b.label == "Add recurring silence").click().run()
    assert not at.exception, at.exception
    with engine.connect() as conn:
        row = conn.execute(select(silences.c.recurrence, silences.c.reason)).one()
    assert row.recurrence == {"weekday": 1, "start": "02:00", "end": "03:00"}
    assert row.reason == "weekly deploy"


def test_admins_filter_the_log_and_change_settings(
    engine: Engine, logged_in_app: AppFactory, now: datetime
) -> None:
    _silence(engine, now)
    at = _admin_page(logged_in_app, Role.ADMIN)
    assert not at.exception
    assert list(table_with(at, "Who", "Action")["Action"]) == ["Silence: create"]
    at.text_input(key="audit_who").input("nobody-like-this").run()
    assert table_with(at, "Who", "Action").empty
    assert at.query_params["who"] in ("nobody-like-this", ["nobody-like-this"])  # in the URL

    at.button_group(key="url_tab").set_value("Settings").run()
    at.text_area(key="setting_retention_days").input('{"audit_log": "long"}')
    at.button(key="save_retention_days").click().run()
    assert any("whole number of days" in e.value for e in at.error)
    at.text_area(key="setting_retention_days").input('{"audit_log": 400}')
    at.button(key="save_retention_days").click().run()
    assert any("retention_days saved" in s.value for s in at.success)
    with engine.connect() as conn:
        assert conn.execute(select(settings.c.value)).scalar_one() == {"audit_log": 400}
    assert _audit(engine)[-1][1:] == ("setting.update", "setting:retention_days")
    at.text_area(key="setting_retention_days").input("")  # empty: back to the default
    at.button(key="save_retention_days").click().run()
    with engine.connect() as conn:
        assert conn.execute(select(settings.c.value)).all() == []


def test_admins_edit_a_runbook_on_the_page(
    engine: Engine, logged_in_app: AppFactory, now: datetime
) -> None:
    with engine.begin() as conn:
        book = runbooks.create_runbook(
            conn,
            body={"title": "Restart", "steps": [{"title": "Look"}, {"title": "Restart"}]},
            actor=ANN,
            role="admin",
            now=now,
        )
    at = _admin_page(logged_in_app, Role.ADMIN, tab="Runbooks")
    at.selectbox(key="runbook_choice").select(f"Restart (#{book['id']})").run()
    at.text_input(key=f"rb_title_{book['id']}").input("Restart the API")
    at.button(key=f"rb_save_{book['id']}").click().run()
    assert not at.exception and any("Save runbook done" in s.value for s in at.success)
    with engine.connect() as conn:
        [saved] = runbooks.list_runbooks(conn)
    assert saved["title"] == "Restart the API"
    assert [s["title"] for s in saved["steps"]] == ["Look", "Restart"]
    assert _audit(engine)[-1][1:] == ("runbook.update", f"runbook:{book['id']}")


def test_admins_edit_a_collector_and_keep_its_url(
    engine: Engine, logged_in_app: AppFactory, now: datetime
) -> None:
    secret_url = "postgresql+psycopg://reader:hunter2@db.example.com/app"
    with engine.begin() as conn:
        saved = save_collector(
            conn,
            {"name": "users", "url": secret_url, "query": "SELECT 1"},
            collector_id=None,
            actor=ANN,
            now=now,
        )
    ident = saved["id"]
    at = _admin_page(logged_in_app, Role.ADMIN, tab="Collectors")
    assert "hunter2" not in " ".join(c.value for c in at.caption)
    at.number_input(key=f"col_every_{ident}").set_value(300)
    at.checkbox(key=f"col_enabled_{ident}").uncheck()
    next(b for b in at.button if b.label == "Save collector").click().run()
    assert not at.exception and any("Save collector done" in s.value for s in at.success)
    with engine.connect() as conn:
        row = conn.execute(select(sql_collectors)).mappings().one()
    assert (row["interval_seconds"], row["is_enabled"], row["url"]) == (300, False, secret_url)
    assert _audit(engine)[-1][1:] == ("collector.update", str(ident))


def test_a_link_opens_the_audit_log_filtered(
    engine: Engine, logged_in_app: AppFactory, now: datetime
) -> None:
    _silence(engine, now)
    at = logged_in_app(Role.ADMIN)
    first = (now - timedelta(days=2)).date().isoformat()
    at.query_params.update(
        {
            "action": "silence.create",
            "target": "silence",
            "days": f"{first}..{now.date().isoformat()}",
        }
    )
    at.run()
    at = at.switch_page("pages/admin.py").run()
    assert not at.exception
    assert at.multiselect(key="audit_actions").value == ["silence.create"]
    assert at.text_input(key="audit_target").value == "silence"
    assert at.date_input(key="audit_when").value[0].isoformat() == first
    assert list(table_with(at, "Who", "Action")["Action"]) == ["Silence: create"]
    at.query_params["target"] = "nothing-here"  # back/forward: the address wins
    at.run()
    assert table_with(at, "Who", "Action").empty


def test_the_audit_log_reads_in_words(
    engine: Engine, logged_in_app: AppFactory, now: datetime
) -> None:
    """Times in the business time zone in words (not ISO, not UTC), actions and details as
    words (not identifiers and JSON)."""
    at_time = now - timedelta(hours=2, seconds=7)
    with engine.begin() as conn:
        record_audit(
            conn,
            actor="user:jo",
            action="incident.status_changed",
            target="incident:5",
            details={"from": "open", "to": "investigating", "wedding_impact": "none"},
            now=at_time,
        )
    at = _admin_page(logged_in_app, Role.ADMIN)
    assert not at.exception, at.exception
    log = table_with(at, "Who", "Action")
    assert log.to_dict("records") == [
        {
            "Time": fmt.when_exact(at_time, ZoneInfo("Europe/London"), now),
            "Who": "jo",
            "Action": "Incident: status changed",
            "Target": "incident:5",
            "Details": "From: open, To: investigating, Wedding impact: none",
        }
    ]
    assert "Incident: status changed" in at.multiselect(key="audit_actions").options


def test_a_silence_reads_as_matchers_and_a_time_in_words(
    engine: Engine, logged_in_app: AppFactory, now: datetime
) -> None:
    """Not a Python list of dicts, not a UTC strftime: `service=photos every Tuesday
    02:00–03:00 until <when in the business time zone>: reason`."""
    _silence(engine, now, recurrence={"weekday": 1, "start": "02:00", "end": "03:00"})
    at = _admin_page(logged_in_app, Role.RESPONDER, tab="Silences")
    assert not at.exception, at.exception
    until = fmt.when(now + timedelta(hours=5), ZoneInfo("Europe/London"), now)
    (line,) = [m.value for m in at.markdown if "every Tuesday" in m.value]
    assert line.replace("\\", "") == (
        f"` {_matchers_text()} ` every Tuesday 02:00–03:00 until {until}: deploy"
    )
    assert "{" not in line and "'" not in line


def _matchers_text() -> str:
    return ", ".join(f"{m['name']}{'=~' if m.get('is_regex') else '='}{m['value']}" for m in MATCH)
