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

from monitoring_core.accounts import (
    authenticate_user,
    create_api_key,
    create_user,
    lookup_api_key,
)
from monitoring_core.alerts.service import rule_create, silence_create
from monitoring_core.audit import system_actor
from monitoring_core.collectors.store import save_collector
from monitoring_core.config_io import ConfigInvalid, apply_config, export_config
from monitoring_core.enums import ApiScope, Role
from monitoring_core.health.service import save_check
from monitoring_core.incidents.runbooks import create_runbook
from monitoring_core.notify.service import save_channel
from monitoring_core.org_scope import set_user_organizations
from monitoring_core.policies.service import policy_create
from monitoring_core.schema import (
    alert_rules,
    api_keys,
    audit_log,
    escalation_policies,
    metadata,
    notification_channels,
    notification_routes,
    oncall_layers,
    oncall_overrides,
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


# ---------------------------------------------------------------- people, keys, overrides, live settings
def _seed_people(conn: Any, now: datetime) -> dict[str, str]:
    """Users (one limited to organisations), keys (live, browser, revoked), a running override,
    the live settings; returns the keys' secrets by name."""
    ann = create_user(conn, username="ann", password="correct horse battery", role=Role.ADMIN)
    bob = create_user(conn, username="bob", password="correct horse battery", role=Role.VIEWER)
    set_user_organizations(
        conn, user=bob.id, organizations=["org-7", "org-9"], actor=ACTOR, now=now
    )
    conn.execute(users.update().where(users.c.id == bob.id).values(time_zone="Asia/Tokyo"))
    rota = conn.execute(insert(oncall_schedules).values(name="Primary")).inserted_primary_key[0]
    conn.execute(
        insert(oncall_layers).values(
            schedule_id=rota, rotation="weekly", handoff_weekday=0, handoff_time=time(9),
            starts_on=date(2026, 6, 1), members=[bob.id], level=1, name="Week",
        )
    )  # fmt: skip
    conn.execute(
        insert(oncall_overrides).values(
            schedule_id=rota, user_id=ann.id, starts_at=now - timedelta(hours=1),
            ends_at=now + timedelta(days=2), reason="swap", created_by="test",
        )
    )  # fmt: skip
    conn.execute(
        insert(oncall_overrides).values(
            schedule_id=rota, user_id=ann.id, starts_at=now - timedelta(days=3),
            ends_at=now - timedelta(days=2), reason="over", created_by="test",
        )
    )  # fmt: skip
    secrets = {
        "ingest": create_api_key(
            conn, name="ingest", scope=ApiScope.INGEST, rate_limit_per_minute=600
        ),
        "site": create_api_key(
            conn,
            name="site",
            scope=ApiScope.BROWSER,
            allowed_origins=["https://www.example.com"],
            expires_at=now + timedelta(days=90),
            points_per_minute=0,
        ),
        "old": create_api_key(conn, name="old", scope=ApiScope.READ),
    }
    conn.execute(api_keys.update().where(api_keys.c.name == "old").values(revoked_at=now))
    calendar = {"time_zone": "Europe/Paris", "peak_months": [6, 7, 8], "season_strictness": 0.3}
    conn.execute(
        insert(settings),
        [
            {"key": "wedding_calendar", "value": calendar},
            {"key": "key_rate_limits", "value": {"requests_per_minute": 900}},
        ],
    )
    return secrets


def test_it_carries_people_keys_overrides_and_live_settings(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn:
        secrets = _seed_people(conn, now)
        hashes = [r.key_hash for r in conn.execute(select(api_keys.c.key_hash))]
        passwords = [r.password_hash for r in conn.execute(select(users.c.password_hash))]
    first, needed = _export(engine, now)
    assert needed == []
    for secret in [*secrets.values(), *hashes, *passwords, "correct horse"]:
        assert secret not in first
    doc = yaml.safe_load(first)
    assert doc["users"] == [
        {"username": "ann", "role": "admin", "is_active": True, "organizations": None,
         "time_zone": None},
        {"username": "bob", "role": "viewer", "is_active": True,
         "organizations": ["org-7", "org-9"], "time_zone": "Asia/Tokyo"},
    ]  # fmt: skip
    assert [k["name"] for k in doc["api_keys"]] == ["ingest", "old", "site"]
    assert doc["api_keys"][1]["revoked"] is True
    assert doc["api_keys"][2]["allowed_origins"] == ["https://www.example.com"]
    assert [o["reason"] for o in doc["oncall_overrides"]] == ["swap"]  # running ones only
    assert doc["settings"]["wedding_calendar"]["time_zone"] == "Europe/Paris"

    _wipe(engine)
    with engine.begin() as conn:
        changes = apply_config(conn, first, env={}, actor=ACTOR, now=now)
    by_item = {(c.section, c.key): c for c in changes}
    made = {k: by_item[("api_keys", k)].secret for k in ("ingest", "site", "old")}
    assert made["old"] is None  # created revoked: its secret is never shown
    assert made["ingest"] and made["site"] and made["ingest"] not in first
    assert made["ingest"] != secrets["ingest"]  # a new secret; the old one stays unknown here
    with engine.begin() as conn:
        record = lookup_api_key(conn, made["ingest"] or "")
        assert record is not None and record.rate_limit_per_minute == 600
        assert lookup_api_key(conn, secrets["ingest"]) is None
        # created without a password: nobody signs in as them until one is set
        assert authenticate_user(conn, username="ann", password="", now=now) is None
        assert authenticate_user(conn, username="ann", password="!", now=now) is None
    second, _ = _export(engine, now)
    assert second == first, "\n".join(difflib.unified_diff(first.splitlines(), second.splitlines()))
    with engine.begin() as conn:
        assert apply_config(conn, first, env={}, actor=ACTOR, now=now) == []

    edited = yaml.safe_load(first)
    edited["users"][1]["organizations"] = ["org-7"]
    edited["users"][0]["is_active"] = False
    edited["api_keys"][0]["revoked"] = True
    del edited["users"][1:]  # a user left out of the file is kept, not deleted
    edited["users"].append({"username": "cat", "role": "responder"})
    with engine.begin() as conn:
        changes = apply_config(conn, yaml.safe_dump(edited, sort_keys=False), env={},
                               actor=ACTOR, now=now)  # fmt: skip
        assert [str(c) for c in changes] == [
            "~ users 'ann': is_active",
            "+ users 'cat'",
            "~ api_keys 'ingest': revoked",
        ]
        assert lookup_api_key(conn, made["ingest"] or "") is None
        assert conn.execute(select(func.count()).select_from(users)).scalar_one() == 3


def test_it_names_the_line_of_bad_people_keys_and_settings(engine: Engine, now: datetime) -> None:
    with engine.begin() as conn:
        _seed_people(conn, now)
    bad = """version: 1
settings:
  wedding_calendar: {time_zone: Mars/Base, peak_months: [5, 13]}
  key_rate_limits: {requests_per_minute: -5}
users:
  - username: dan
    role: superuser
    organizations: []
oncall_overrides:
  - schedule: Primary
    user: nobody
    starts_at: 2026-06-01T10:00:00+00:00
    ends_at: 2026-06-01T09:00:00+00:00
api_keys:
  - name: old
    scope: read
    revoked: false
  - name: new
    scope: ingest
    allowed_origins: [https://www.example.com]
"""
    with engine.begin() as conn, pytest.raises(ConfigInvalid) as caught:
        apply_config(conn, bad, env={}, actor=ACTOR, now=now)
    found = {(p.line, p.where): p.message for p in caught.value.problems}
    assert "Mars/Base" in found[(3, "settings.wedding_calendar")]
    assert (
        "peak_months: must be a list of distinct month numbers 1-12"
        in found[(3, "settings.wedding_calendar")]
    )
    assert "requests_per_minute" in found[(4, "settings.key_rate_limits")]
    # with the settings right, the items' own checks (they run once the file's shape is right)
    fixed = bad.replace("Mars/Base", "UTC").replace("13]", "12]").replace("-5", "5")
    with engine.begin() as conn, pytest.raises(ConfigInvalid) as caught:
        apply_config(conn, fixed, env={}, actor=ACTOR, now=now)
    found = {(p.line, p.where): p.message for p in caught.value.problems}
    assert len(found) == 6, found
    assert found[(7, "users[0].role")].startswith("must be one of")
    assert "non-empty list" in found[(8, "users[0].organizations")]
    assert found[(11, "oncall_overrides[0].user")] == "no user named 'nobody'"
    assert found[(13, "oncall_overrides[0].ends_at")] == "must be after starts_at"
    assert "stays revoked" in found[(17, "api_keys[0].revoked")]
    assert found[(20, "api_keys[1].allowed_origins")] == "apply to browser keys only"
    with engine.connect() as conn:  # nothing written
        assert conn.execute(select(func.count()).select_from(users)).scalar_one() == 2


def test_the_cli_prints_a_new_keys_secret_once(
    engine: Engine, database_url: str, tmp_path: Any
) -> None:
    target = tmp_path / "keys.yaml"
    target.write_text("version: 1\napi_keys:\n  - {name: collector, scope: ingest}\n")
    done = cli("config", "apply", str(target), url=database_url)
    assert done.returncode == 0, done.stderr
    [secret] = [w for w in done.stdout.split() if w.startswith("mk_")]
    assert "shown once" in done.stdout
    with engine.connect() as conn:
        assert lookup_api_key(conn, secret) is not None
        assert secret not in str(conn.execute(select(audit_log.c.details)).all())
