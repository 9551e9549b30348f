"""`config export` and `config apply`: the diff between file and database, written in one go.

Apply creates and updates; it never deletes what the file leaves out (an item missing from a
hand-edited file should not silently delete a rule and its history, nor a person). Every
changed item is one audit row (`config.apply`, the item, the fields that changed: never their
values). A user it creates has no password (`user reset-password NAME` sets one); an API key
it creates gets a new secret, handed back once on its Change (`secret`) for the caller to show
— the file never holds one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from monitoring_core.accounts import _insert_key
from monitoring_core.alerts import signals
from monitoring_core.audit import record_audit
from monitoring_core.config_io.document import read_document
from monitoring_core.config_io.spec import SECTIONS
from monitoring_core.config_io.state import (
    STEP_REFS,
    State,
    current_state,
    export_document,
    to_yaml,
)
from monitoring_core.dashboards import validate_panels
from monitoring_core.health.store import create_check, update_check
from monitoring_core.oncall.store import add_override, save_schedule
from monitoring_core.org_scope import set_user_organizations
from monitoring_core.schema import (
    alert_rules,
    api_keys,
    dashboards,
    escalation_policies,
    health_checks,
    notification_channels,
    notification_routes,
    oncall_schedules,
    runbooks,
    settings,
    silences,
    sql_collectors,
    users,
)

__all__ = ["Change", "apply_config", "diff_states", "export_config"]

_ORDER = ("settings", *(s.name for s in SECTIONS))
NO_PASSWORD = "!"  # not an argon2 hash: no password verifies against it (accounts)


@dataclass(frozen=True)
class Change:
    section: str
    key: str
    kind: str  # create | update
    fields: tuple[str, ...]
    secret: str | None = field(default=None, repr=False, compare=False)  # a created key's

    def __str__(self) -> str:
        sign = "+" if self.kind == "create" else "~"
        nameless = {"silences": "(silence)", "oncall_overrides": "(override)"}
        shown = nameless.get(self.section, self.key)
        fields = f": {', '.join(self.fields)}" if self.kind == "update" else ""
        return f"{sign} {self.section} {shown!r}{fields}"


def export_config(conn: Connection, *, now: datetime) -> tuple[str, list[str]]:
    """The YAML text of the configuration and the environment variables its secrets need."""
    doc, needed = export_document(current_state(conn, now=now))
    return to_yaml(doc), needed


def diff_states(current: State, desired: State) -> list[Change]:
    """What applying `desired` changes, in apply order; secrets only by field name."""
    changes = []
    for section in _ORDER:
        for key, item in desired[section].items():
            if section == "settings":
                if key not in current["settings"]:
                    changes.append(Change(section, key, "create", ()))
                elif current["settings"][key] != item:
                    changes.append(Change(section, key, "update", ("value",)))
                continue
            old = current[section].get(key)
            if old is None:
                changes.append(Change(section, key, "create", ()))
            elif fields := tuple(f for f in item if old.get(f) != item[f]):
                changes.append(Change(section, key, "update", fields))
    return changes


def apply_config(
    conn: Connection,
    text: str,
    *,
    env: Mapping[str, str],
    actor: str,
    now: datetime,
    dry_run: bool = False,
) -> list[Change]:
    """Validate the whole file, then write its changes in the caller's transaction.

    ConfigInvalid (every problem with its line) before any write; nothing written on a dry run.
    """
    current = current_state(conn, now=now)
    desired = read_document(
        text, env=env, known=current, signal_problems=lambda cfg: signals.problems(conn, cfg)
    )
    changes = diff_states(current, desired)
    if dry_run or not changes:
        return changes
    writer = _Writer(conn, desired, current, actor=actor, now=now)
    writer.write(changes)
    changes = [replace(c, secret=writer.secrets.get((c.section, c.key))) for c in changes]
    for change in changes:
        record_audit(
            conn,
            actor=actor,
            action="config.apply",
            target=f"{change.section}:{change.key}"[:500],
            details={"change": change.kind, "fields": list(change.fields)},
            now=now,
        )
    return changes


class _Writer:
    """Rows for the changed items, references resolved to ids as the items appear."""

    def __init__(
        self, conn: Connection, desired: State, current: State, *, actor: str, now: datetime
    ) -> None:
        self.conn, self.desired, self.current = conn, desired, current
        self.actor, self.now = actor, now
        self.secrets: dict[tuple[str, str], str] = {}  # new keys' secrets, handed back once

    def _ids(self, table: Any, column: str) -> dict[str, int]:
        rows = self.conn.execute(select(table.c[column], table.c.id))
        return {str(r[0]): int(r[1]) for r in rows}

    def _upsert(self, table: Any, column: str, key: str, values: dict[str, Any]) -> None:
        found = self.conn.execute(select(table.c.id).where(table.c[column] == key)).scalar()
        if found is None:
            self.conn.execute(insert(table).values(**values))
        else:
            self.conn.execute(update(table).where(table.c.id == found).values(**values))

    def write(self, changes: list[Change]) -> None:
        by_section: dict[str, list[Change]] = {}
        for change in changes:
            by_section.setdefault(change.section, []).append(change)
        for section in _ORDER:
            for change in by_section.get(section, []):
                getattr(self, f"_{section}")(
                    change.key, copy.deepcopy(self.desired[section][change.key])
                )
        for change in by_section.get("alert_rules", []):  # runbooks exist now
            runbook = self.desired["alert_rules"][change.key]["runbook"]
            runbook_id = None if runbook is None else self._ids(runbooks, "title")[runbook]
            self.conn.execute(
                update(alert_rules)
                .where(alert_rules.c.alert_name == change.key)
                .values(runbook_id=runbook_id)
            )

    def _settings(self, key: str, value: Any) -> None:
        stmt = pg_insert(settings).values(key=key, value=value, updated_by="config")
        self.conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["key"], set_={"value": value, "updated_by": "config"}
            )
        )

    def _users(self, key: str, item: dict[str, Any]) -> None:
        organizations = item.pop("organizations")
        values = {"role": item["role"], "is_active": item["is_active"]}
        values["time_zone"] = item["time_zone"]
        found = self._ids(users, "username").get(key)
        if found is None:  # no password: nobody can sign in as it until one is set
            stmt = insert(users).values(username=key, password_hash=NO_PASSWORD, **values)
            self.conn.execute(stmt.values(organization_ids=organizations))
            return
        self.conn.execute(update(users).where(users.c.id == found).values(**values))
        if organizations != self.current["users"][key]["organizations"]:
            # through org_scope: the user's live grants end at once (audited there too)
            set_user_organizations(
                self.conn, user=found, organizations=organizations, actor=self.actor, now=self.now
            )

    def _oncall_overrides(self, key: str, item: dict[str, Any]) -> None:
        schedule = self._ids(oncall_schedules, "name")[item.pop("schedule")]
        item["user_id"] = self._ids(users, "username")[item.pop("user")]
        add_override(
            self.conn, schedule_id=schedule, values=item, created_by="config", now=self.now
        )

    def _api_keys(self, key: str, item: dict[str, Any]) -> None:
        revoked = item.pop("revoked")
        held = self.current["api_keys"].get(key)
        if held is None:
            key_id, secret = _insert_key(self.conn, **item)
            if revoked:  # recorded as revoked (the file said so): its secret is never shown
                self.conn.execute(
                    update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=self.now)
                )
            else:
                self.secrets[("api_keys", key)] = secret
            return
        live = select(api_keys.c.id).where(api_keys.c.name == key)
        found = self.conn.execute(live.order_by(api_keys.c.revoked_at.is_(None).desc(),
                                                api_keys.c.id.desc())).scalar()  # fmt: skip
        values = {**item, "revoked_at": self.now} if revoked and not held["revoked"] else item
        self.conn.execute(update(api_keys).where(api_keys.c.id == found).values(**values))

    def _channels(self, key: str, item: dict[str, Any]) -> None:
        owner = item.pop("owner")
        item["user_id"] = None if owner is None else self._ids(users, "username")[owner]
        self._upsert(notification_channels, "name", key, item)

    def _schedules(self, key: str, item: dict[str, Any]) -> None:
        people = self._ids(users, "username")
        values = {"name": key, "description": item["description"]}
        layers = [
            {
                **layer,
                "handoff_time": time.fromisoformat(layer["handoff_time"]),
                "starts_on": date.fromisoformat(layer["starts_on"]),
                "members": [people[name] for name in layer["members"]],
            }
            for layer in item["layers"]
        ]
        found = self._ids(oncall_schedules, "name").get(key)
        save_schedule(self.conn, schedule_id=found, values=values, layers=layers)

    def _escalation_policies(self, key: str, item: dict[str, Any]) -> None:
        tables = {"channels": notification_channels, "users": users, "schedules": oncall_schedules}
        columns = {"channels": "name", "users": "username", "schedules": "name"}
        for step in item["steps"]:
            for ref, _ in STEP_REFS:
                if ref in step:
                    ids = self._ids(tables[ref], columns[ref])
                    step[ref] = [ids[name] for name in step[ref]]
        self._upsert(escalation_policies, "name", key, item)

    def _notification_routes(self, key: str, item: dict[str, Any]) -> None:
        tables = {"channels": notification_channels, "users": users, "schedules": oncall_schedules}
        columns = {"channels": "name", "users": "username", "schedules": "name"}
        targets = {}
        for kind, names in item["targets"].items():
            ids = self._ids(tables[kind], columns[kind])
            targets[kind] = [ids[name] for name in names]
        self._upsert(notification_routes, "min_severity", key, {**item, "targets": targets})

    def _health_checks(self, key: str, item: dict[str, Any]) -> None:
        found = self._ids(health_checks, "check_name").get(key)
        if found is None:
            create_check(self.conn, item)
        else:
            update_check(self.conn, found, item)

    def _collectors(self, key: str, item: dict[str, Any]) -> None:
        self._upsert(sql_collectors, "name", key, item)

    def _alert_rules(self, key: str, item: dict[str, Any]) -> None:
        channels = self._ids(notification_channels, "name")
        policy = item.pop("escalation_policy")
        item.pop("runbook")  # set once the runbooks are written (write())
        item["notification_channels"] = [channels[n] for n in item["notification_channels"]]
        item["escalation_policy_id"] = (
            None if policy is None else self._ids(escalation_policies, "name")[policy]
        )
        found = self._ids(alert_rules, "alert_name").get(key)
        if found is None:
            self.conn.execute(insert(alert_rules).values(**item, created_by="config"))
        else:  # a changed rule waits for data again, as after an edit in the UI
            stmt = update(alert_rules).where(alert_rules.c.id == found)
            self.conn.execute(stmt.values(**item, data_seen_at=None))

    def _runbooks(self, key: str, item: dict[str, Any]) -> None:
        rule = item.pop("alert_rule")
        item["alert_rule_id"] = None if rule is None else self._ids(alert_rules, "alert_name")[rule]
        channels, checks = self._ids(notification_channels, "name"), None
        for step in item["steps"]:
            config = step["config"]
            if "channels" in config:
                config["channels"] = [channels[n] for n in config["channels"]]
            if "check" in config:
                checks = checks or self._ids(health_checks, "check_name")
                config["check_id"] = checks[config.pop("check")]
        self._upsert(runbooks, "title", key, item)

    def _dashboards(self, key: str, item: dict[str, Any]) -> None:
        item["panels"] = validate_panels(item["panels"])
        self._upsert(dashboards, "name", key, {**item, "updated_by": "config"})

    def _silences(self, key: str, item: dict[str, Any]) -> None:
        self.conn.execute(insert(silences).values(**item, created_by="config"))
