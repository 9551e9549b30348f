"""The Alerts page's rule editor: the signal catalogue in a select box, and rules edited,
duplicated, deleted, enabled and disabled from the page (admins only, audited)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest

from monitoring_core.alerts import service
from monitoring_core.enums import Role
from monitoring_core.schema import alert_rules, audit_log

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
RULE = {
    "alert_name": "Search slow",
    "severity_level": "high",
    "condition_config": {"type": "threshold", "metric": "api.latency_ms", "aggregation": "p95",
                         "operator": "greater_than", "value": 800, "window_minutes": 10,
                         "filters": {"endpoint": "/api/suppliers/search"}},
}  # fmt: skip


def _rule(engine: Engine) -> int:
    with engine.begin() as conn:
        created = service.rule_create(conn, body=RULE, actor="user:a", role="admin", now=NOW)
    return int(created["id"])


def _rules(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(alert_rules).order_by(alert_rules.c.id))
        return [dict(r._mapping) for r in rows]


def _audited(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(audit_log.c.action).order_by(audit_log.c.id)).scalars())


def _button(at: AppTest, key: str) -> None:
    next(b for b in at.button if b.key == key).click().run()
    assert not at.exception


def test_it_offers_the_catalogue_not_a_free_typed_name(
    engine: Engine, logged_in_app: Callable[[Role | None], AppTest]
) -> None:
    at = logged_in_app(Role.ADMIN).run()
    at.switch_page("pages/alerts.py").run()
    at.button_group(key="url_tab").set_value("Rules").run()  # the rules are behind ?tab=
    options = [o.split(" (")[0] for o in at.selectbox(key="new_(blank)_signal").options]
    assert {"api.error_rate", "web_vitals.LCP", "errors.events", "health.up"} <= set(options)
    at.selectbox(key="new_(blank)_signal").select("web_vitals.LCP").run()
    assert at.multiselect(key="new_(blank)_group").options == ["page_route", "device_type"]
    assert "p75" in at.selectbox(key="new_(blank)_agg").options
    assert not [t for t in at.text_input if "metric" in t.label.lower()]


def test_an_admin_duplicates_disables_edits_and_deletes_a_rule(
    engine: Engine, logged_in_app: Callable[[Role | None], AppTest]
) -> None:
    rule_id = _rule(engine)
    at = logged_in_app(Role.ADMIN).run()
    at.switch_page("pages/alerts.py").run()
    at.button_group(key="url_tab").set_value("Rules").run()  # the rules are behind ?tab=
    _button(at, f"dup{rule_id}")
    copy = _rules(engine)[1]
    assert (copy["alert_name"], copy["is_enabled"]) == ("Search slow (copy)", False)
    assert copy["condition_config"] == RULE["condition_config"]
    _button(at, f"tog{rule_id}")
    assert _rules(engine)[0]["is_enabled"] is False
    _button(at, f"edit{rule_id}")
    at.text_input(key=f"edit{rule_id}_name").input("Search very slow")
    at.number_input(key=f"edit{rule_id}_value").set_value(1500)
    next(b for b in at.button if b.label == "Save").click().run()
    assert not at.exception
    edited = _rules(engine)[0]
    assert edited["alert_name"] == "Search very slow"
    assert edited["condition_config"]["value"] == 1500
    assert edited["condition_config"]["filters"] == {"endpoint": "/api/suppliers/search"}
    _button(at, "rule_edit_cancel")
    _button(at, f"del{copy['id']}")
    assert [r["id"] for r in _rules(engine)] == [rule_id]
    assert _audited(engine) == [
        "alert_rule.create",
        "alert_rule.duplicate",
        "alert_rule.update",
        "alert_rule.update",
        "alert_rule.delete",
    ]


def test_a_responder_sees_rules_but_cannot_change_them(
    engine: Engine, logged_in_app: Callable[[Role | None], AppTest]
) -> None:
    rule_id = _rule(engine)
    at = logged_in_app(Role.RESPONDER).run()
    at.switch_page("pages/alerts.py").run()
    at.button_group(key="url_tab").set_value("Rules").run()  # the rules are behind ?tab=
    assert "Search slow" in " ".join(m.value for m in at.markdown)
    assert not [b for b in at.button if b.key in (f"edit{rule_id}", f"dup{rule_id}")]
