"""Configuration as code: export → apply on an empty database → export gives the same file;
a second apply changes nothing; a dry run writes nothing; a bad file names its lines; secrets
never appear in an export."""

from __future__ import annotations

import difflib
from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, func, insert, select, text

from monitoring_core.alerts.service import rule_create, silence_create
from monitoring_core.audit import system_actor
from monitoring_core.collectors.store import save_collector
from monitoring_core.config_io import ConfigInvalid, apply_config, export_config
from monitoring_core.health.service import save_check
from monitoring_core.incidents.runbooks import create_runbook
from monitoring_core.notify.service import save_channel
from monitoring_core.policies.service import policy_create
from monitoring_core.schema import (
    alert_rules,
    audit_log,
    escalation_policies,
    metadata,
    notification_channels,
    notification_routes,
    oncall_layers,
    oncall_schedules,
    runbooks,
    settings,
    users,
)
from tests.test_cli import cli

ACTOR = system_actor("test")
SLACK = "json://hooks.example.com/services/T000/B000/XXXXsecrettoken"
DB_URL = "postgresql+psycopg://reader:hunter2-secret@db.example.com/app"
TOKEN = "Bearer abc-very-secret"


def _seed(conn: Any, now: datetime) -> None:
    admin = {"actor": ACTOR, "role": "admin", "now": now}
    slack = save_channel(conn, channel_id=None, body={"name": "ops slack", "url": SLACK}, **admin)
    mail = save_channel(
        conn,
        channel_id=None,
        body={"name": "mail", "url": "json://mail.example.com/hook", "tags": ["email"]},
        **admin,
    )
    policy_create(
        conn,
        body={
            "name": "Default",
            "steps": [
                {"after_minutes": 0, "channels": [slack["id"]]},
                {"after_minutes": 15, "channels": [slack["id"], mail["id"]]},
            ],
            "repeat": True,
        },
        **admin,
    )
    check = save_check(
        conn,
        {
            "check_name": "api health",
            "check_type": "http",
            "check_config": {"url": "https://api.example.com/health", "headers": {"X": TOKEN}},
            "wedding_critical": True,
        },
        check_id=None,
        actor=ACTOR,
        now=now,
    )
    save_check(
        conn,
        {"check_name": "db", "check_type": "database", "check_config": {"url": DB_URL}},
        check_id=None,
        actor=ACTOR,
        now=now,
    )
    save_collector(
        conn,
        {"name": "users", "url": DB_URL, "query": "SELECT count(*) FROM users"},
        collector_id=None,
        actor=ACTOR,
        now=now,
    )
    rule = rule_create(
        conn,
        body={
            "alert_name": "High error rate",
            "severity_level": "critical",
            "condition_config": {
                "metric": "api.error_rate",
                "operator": "greater_than",
                "value": 5,
            },
            "notification_channels": [slack["id"]],
            "escalation_policy": "Default",
            "weekend_escalation": True,
        },
        **admin,
    )
    book = create_runbook(
        conn,
        body={
            "title": "Restart the API",
            "alert_rule_id": rule["id"],
            "steps": [
                {"title": "Look at the dashboard"},
                {"title": "Recheck", "kind": "health_check", "config": {"check_id": check.id}},
                {
                    "title": "Tell ops",
                    "kind": "notify",
                    "config": {"channels": [mail["id"]], "message": "restarting"},
                },
            ],
        },
        **admin,
    )
    conn.execute(alert_rules.update().values(runbook_id=book["id"]))
    silence_create(
        conn,
        matchers=[{"name": "service", "value": "payments"}],
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(days=30),
        reason="weekly maintenance",
        recurrence={"weekday": 1, "start": "02:00", "end": "03:00"},
        actor=ACTOR,
        role="admin",
        now=now,
    )
    conn.execute(
        insert(settings),
        [
            {"key": "retention_days", "value": {"metric_points": 7}},
            {"key": "error_scrub_fields", "value": ["iban"]},
            {"key": "ack_link_secret", "value": "installation-secret-value"},
        ],
    )


def _wipe(engine: Engine) -> None:
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


def _secrets_env(needed: list[str]) -> dict[str, str]:
    """The value each exported `${ENV}` reference stands for (as an operator would set)."""
    values = {"CHANNELS_MAIL": "json://mail.example.com/hook", "CHANNELS_OPS": SLACK}
    values |= {"HEADERS": TOKEN, "DB_CHECK": DB_URL, "COLLECTORS": DB_URL}
    return {name: next(v for k, v in values.items() if k in name) for name in needed}


def _export(engine: Engine, now: datetime) -> tuple[str, list[str]]:
    with engine.connect() as conn:
        return export_config(conn, now=now)


def test_it_round_trips_through_an_empty_database(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn:
        _seed(conn, now)
    first, needed = _export(engine, now)
    for secret in (SLACK, "XXXXsecrettoken", "hunter2", TOKEN, "installation-secret-value"):
        assert secret not in first
    assert sorted(needed) == sorted(
        [
            "MONITORING_SECRET_CHANNELS_MAIL_URL",
            "MONITORING_SECRET_CHANNELS_OPS_SLACK_URL",
            "MONITORING_SECRET_COLLECTORS_USERS_URL",
            "MONITORING_SECRET_HEALTH_CHECKS_API_HEALTH_CHECK_CONFIG_HEADERS_X",
            "MONITORING_SECRET_HEALTH_CHECKS_DB_CHECK_CONFIG_URL",
        ]
    )
    doc = yaml.safe_load(first)
    assert doc["version"] == 1
    assert doc["alert_rules"][0]["notification_channels"] == ["ops slack"]
    assert doc["alert_rules"][0]["runbook"] == "Restart the API"
    assert doc["runbooks"][0]["steps"][1]["config"] == {"check": "api health"}

    _wipe(engine)
    env = _secrets_env(needed)
    with engine.begin() as conn:
        changes = apply_config(conn, first, env=env, actor=ACTOR, now=now)
    assert len(changes) == 11  # 2 settings, 2 channels, 1 policy, 2 checks, 1 collector, ...
    second, _ = _export(engine, now)
    assert second == first
    with engine.begin() as conn:  # a second apply changes nothing and audits nothing
        before = conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
        assert apply_config(conn, first, env=env, actor=ACTOR, now=now) == []
        assert conn.execute(select(func.count()).select_from(audit_log)).scalar_one() == before
        notify = conn.execute(select(runbooks.c.steps)).scalar_one()[2]["config"]["channels"]
        named = select(notification_channels.c.name).where(notification_channels.c.id == notify[0])
        assert conn.execute(named).scalar_one() == "mail"  # ids are this database's own
        audited = conn.execute(select(audit_log.c.actor, audit_log.c.details)).all()
    assert {a.actor for a in audited} == {ACTOR}
    assert all(SLACK not in str(a.details) for a in audited)


def test_it_changes_nothing_on_a_dry_run_and_lists_the_changes(
    engine: Engine, now: datetime
) -> None:
    with engine.begin() as conn:
        _seed(conn, now)
    exported, needed = _export(engine, now)
    doc = yaml.safe_load(exported)
    doc["alert_rules"][0]["severity_level"] = "high"
    doc["channels"].append({"name": "pager", "url": "json://pager.example.com/x"})
    edited = yaml.safe_dump(doc, sort_keys=False)
    with engine.begin() as conn:
        changes = apply_config(
            conn, edited, env=_secrets_env(needed), actor=ACTOR, now=now, dry_run=True
        )
    assert [str(c) for c in changes] == [
        "+ channels 'pager'",
        "~ alert_rules 'High error rate': severity_level",
    ]
    assert _export(engine, now)[0] == exported


def test_it_names_the_line_of_every_problem(engine: Engine, now: datetime) -> None:
    bad = """version: 1
channels:
  - name: ops
    url: ${NOT_SET_ANYWHERE}
alert_rules:
  - alert_name: x
    severity_level: urgent
    condition_config: {metric: api.requests, aggregation: count, operator: greater_than, value: 1}
    notification_channels: [nobody]
    colour: red
"""
    with engine.begin() as conn, pytest.raises(ConfigInvalid) as caught:
        apply_config(conn, bad, env={}, actor=ACTOR, now=now)
    found = {(p.line, p.where) for p in caught.value.problems}
    assert (4, "channels[0].url") in found
    assert (10, "alert_rules[0].colour") in found
    with engine.begin() as conn, pytest.raises(ConfigInvalid) as caught:
        apply_config(
            conn,
            bad.replace("colour: red\n", ""),
            env={"NOT_SET_ANYWHERE": SLACK},
            actor=ACTOR,
            now=now,
        )
    found = {(p.line, p.where) for p in caught.value.problems}
    assert found == {
        (7, "alert_rules[0].severity_level"),
        (9, "alert_rules[0].notification_channels[0]"),
    }
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(alert_rules)).scalar_one() == 0


def test_it_refuses_an_unknown_signal_as_the_api_does(engine: Engine, now: datetime) -> None:
    doc = """version: 1
alert_rules:
  - alert_name: typo
    severity_level: high
    condition_config: {metric: api.latncy_ms, operator: greater_than, value: 1}
"""
    with engine.begin() as conn, pytest.raises(ConfigInvalid) as caught:
        apply_config(conn, doc, env={}, actor=ACTOR, now=now)
    (problem,) = caught.value.problems
    assert problem.line == 5 and "unknown signal 'api.latncy_ms'" in problem.message
    assert "api.latency_ms" in problem.message  # the known ones are named


def test_it_reports_broken_yaml_with_its_line(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn, pytest.raises(ConfigInvalid) as caught:
        apply_config(conn, "version: 1\nchannels:\n  - name: [x\n", env={}, actor=ACTOR, now=now)
    assert caught.value.problems[0].line in (3, 4)


def test_the_cli_exports_and_applies(
    engine: Engine, database_url: str, now: datetime, tmp_path: Any
) -> None:
    with engine.begin() as conn:
        _seed(conn, now)
    target = tmp_path / "config.yaml"
    result = cli("config", "export", str(target), url=database_url)
    assert result.returncode == 0, result.stderr
    assert "MONITORING_SECRET_CHANNELS_OPS_SLACK_URL" in result.stderr
    assert SLACK not in target.read_text() + result.stdout + result.stderr
    listed = next(x for x in result.stderr.splitlines() if x.startswith("secrets are read"))
    env = _secrets_env(listed.split(": ", 1)[1].split(", "))
    dry = cli("config", "apply", str(target), "--dry-run", url=database_url, **env)
    assert dry.returncode == 0, dry.stderr
    assert "no changes" in dry.stdout
    edited = target.read_text().replace("severity_level: critical", "severity_level: loud")
    target.write_text(edited)
    line = edited.splitlines().index("  severity_level: loud") + 1
    bad = cli("config", "apply", str(target), url=database_url, **env)
    assert bad.returncode == 1
    assert f"{target}:{line}: alert_rules[0].severity_level: must be one of" in bad.stderr


def test_it_names_people_and_schedules_that_must_exist_where_applied(
    engine: Engine, now: datetime
) -> None:
    with engine.begin() as conn:
        ann = conn.execute(
            insert(users).values(username="ann", password_hash="x", role="responder")
        ).inserted_primary_key[0]
        rota = conn.execute(insert(oncall_schedules).values(name="Primary")).inserted_primary_key[0]
        conn.execute(
            insert(oncall_layers).values(
                schedule_id=rota, rotation="weekly", handoff_weekday=0, handoff_time=time(9),
                starts_on=date(2026, 6, 1), members=[ann], level=1, name="Week",
            )
        )  # fmt: skip
        phone = conn.execute(
            insert(notification_channels).values(name="ann phone", url=SLACK, user_id=ann)
        ).inserted_primary_key[0]
        conn.execute(
            insert(escalation_policies).values(
                name="People",
                steps=[
                    {"after_minutes": 0, "channels": [phone], "users": [ann], "schedules": [rota]}
                ],
            )
        )
        conn.execute(
            insert(notification_routes).values(
                min_severity="high", targets={"schedules": [rota], "channels": [phone]}
            )
        )
    text, needed = _export(engine, now)
    doc = yaml.safe_load(text)
    assert doc["notification_routes"] == [
        {
            "min_severity": "high",
            "targets": {"channels": ["ann phone"], "users": [], "schedules": ["Primary"]},
        }
    ]
    assert doc["channels"][0]["owner"] == "ann"
    assert doc["escalation_policies"][0]["steps"] == [
        {"after_minutes": 0, "channels": ["ann phone"], "users": ["ann"], "schedules": ["Primary"]}
    ]
    assert (
        doc["schedules"][0]["layers"][0] | {"members": ["ann"]} == doc["schedules"][0]["layers"][0]
    )
    assert doc["schedules"][0]["layers"][0]["starts_on"] == "2026-06-01"
    env = {needed[0]: SLACK}
    with engine.begin() as conn:  # moved to an installation with the same people: no change
        conn.execute(notification_routes.delete())
        conn.execute(escalation_policies.delete())
        conn.execute(notification_channels.delete())
        conn.execute(oncall_schedules.delete())
        assert len(apply_config(conn, text, env=env, actor=ACTOR, now=now)) == 4
        assert apply_config(conn, text, env=env, actor=ACTOR, now=now) == []
        [steps] = conn.execute(select(escalation_policies.c.steps)).scalars()
        new_rota = conn.execute(select(oncall_schedules.c.id)).scalar_one()
        assert steps[0]["users"] == [ann] and steps[0]["schedules"] == [new_rota]
    after = _export(engine, now)[0]
    assert after == text, "\n".join(difflib.unified_diff(text.splitlines(), after.splitlines()))
    unknown = text.replace("- ann\n", "- bob\n").replace("owner: ann", "owner: bob")
    with engine.begin() as conn, pytest.raises(ConfigInvalid) as caught:
        apply_config(conn, unknown, env=env, actor=ACTOR, now=now)
    messages = {(p.where, p.message) for p in caught.value.problems}
    assert ("channels[0].owner", "no user named 'bob'") in messages
    assert ("escalation_policies[0].steps[0].users[0]", "no user named 'bob'") in messages
    assert ("schedules[0].layers[0].members[0]", "no user named 'bob'") in messages
