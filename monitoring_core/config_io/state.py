"""The configuration in the database as a document: sections of items keyed by name.

`current_state` holds secrets in clear (it is what an apply compares against, never printed);
`export_document` replaces them with `${ENV}` references and is what `config export` writes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import yaml
from sqlalchemy import Connection, select

from monitoring_core.config_io.spec import (
    FORMAT_VERSION,
    SECTIONS,
    UNMANAGED_SETTINGS,
    WHOLE_ITEM_SECTIONS,
    env_name,
    secret_paths,
)
from monitoring_core.oncall.store import list_schedules
from monitoring_core.schema import (
    alert_rules,
    api_keys,
    dashboards,
    escalation_policies,
    health_checks,
    notification_channels,
    notification_routes,
    oncall_overrides,
    oncall_schedules,
    runbooks,
    settings,
    silences,
    sql_collectors,
    users,
)

__all__ = [
    "STEP_REFS",
    "State",
    "current_state",
    "export_document",
    "item_key",
    "layer_item",
    "silence_key",
    "to_yaml",
]

State = dict[str, dict[str, dict[str, Any]]]  # section -> key -> item (plus "settings")
# A policy step's id lists and what they name: (step key, State section of the names).
# People may be in the file's `users` section or already exist where it is applied (`_users`
# in a state holds every user name either has).
STEP_REFS = (("channels", "channels"), ("users", "_users"), ("schedules", "schedules"))


class _Names:
    """id -> name of the items other items refer to."""

    def __init__(self, conn: Connection) -> None:
        def names(table: Any, column: str) -> dict[int, str]:
            rows = conn.execute(select(table.c.id, table.c[column]))
            return {int(r[0]): str(r[1]) for r in rows}

        self.channels = names(notification_channels, "name")
        self.policies = names(escalation_policies, "name")
        self.checks = names(health_checks, "check_name")
        self.rules = names(alert_rules, "alert_name")
        self.runbooks = names(runbooks, "title")
        self.users = names(users, "username")
        self.schedules = names(oncall_schedules, "name")

    @staticmethod
    def of(mapping: dict[int, str], ref: Any) -> str | None:
        return None if ref is None else mapping.get(int(ref), f"#{ref}")


def silence_key(item: Mapping[str, Any]) -> str:
    """A silence's identity: all of it (silences have no name)."""
    return json.dumps(
        {k: item.get(k) for k in ("matchers", "starts_at", "ends_at", "recurrence", "reason")},
        sort_keys=True,
        default=lambda v: v.astimezone(UTC).isoformat() if isinstance(v, datetime) else str(v),
    )


def item_key(section: str, item: Mapping[str, Any]) -> str:
    """The identity of an item: its name, or all of it in a section of nameless items."""
    if section not in WHOLE_ITEM_SECTIONS:
        spec = next(s for s in SECTIONS if s.name == section)
        return str(item[spec.key])
    if section == "silences":
        return silence_key(item)
    return json.dumps(
        {k: item.get(k) for k in ("schedule", "user", "starts_at", "ends_at", "reason")},
        sort_keys=True,
        default=lambda v: v.astimezone(UTC).isoformat() if isinstance(v, datetime) else str(v),
    )


def _api_keys(conn: Connection) -> dict[str, dict[str, Any]]:
    """Keys by name: the live one, else the newest revoked one (a name's revoked predecessors
    are history, not configuration). Two live keys of one name cannot be told apart in a file."""
    by_name: dict[str, dict[str, Any]] = {}
    for r in _rows(conn, api_keys, api_keys.c.id):
        item = {
            **_pick(r, "api_keys"),
            "allowed_origins": list(r["allowed_origins"] or []),
            "revoked": r["revoked_at"] is not None,
        }
        held = by_name.get(r["name"])
        if held is not None and not held["revoked"] and not item["revoked"]:
            raise ValueError(
                f"two live api_keys are named {r['name']!r}: revoke one (apikey revoke ID) "
                "before exporting (the file names keys, it does not number them)"
            )
        if held is None or held["revoked"]:
            by_name[r["name"]] = item
    return by_name


def _unique(section: str, rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row[key] in out:
            raise ValueError(
                f"two {section} are named {row[key]!r}: rename one before exporting "
                "(the file names items, it does not number them)"
            )
        out[row[key]] = row
    return out


def _rows(conn: Connection, table: Any, order: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(select(table).order_by(order))]


def _pick(row: Mapping[str, Any], section: str) -> dict[str, Any]:
    spec = next(s for s in SECTIONS if s.name == section)
    return {f.name: row.get(f.name) for f in spec.fields}


def _policy_steps(steps: Any, names: _Names) -> list[Any]:
    maps = {"channels": names.channels, "users": names.users, "schedules": names.schedules}
    out = []
    for step in steps or []:
        step = dict(step)
        for key, _ in STEP_REFS:
            if key in step or key == "channels":
                step[key] = [_Names.of(maps[key], i) for i in step.get(key, [])]
        out.append(step)
    return out


def _targets(raw: Any, names: _Names) -> dict[str, list[Any]]:
    maps = {"channels": names.channels, "users": names.users, "schedules": names.schedules}
    return {kind: [_Names.of(maps[kind], i) for i in (raw or {}).get(kind, [])] for kind in maps}


def _runbook_steps(steps: Any, names: _Names) -> list[Any]:
    out = []
    for step in steps or []:
        step = copy.deepcopy(dict(step))
        config = step.get("config") or {}
        if "channels" in config:
            config["channels"] = [_Names.of(names.channels, c) for c in config["channels"]]
        if "check_id" in config:
            config["check"] = _Names.of(names.checks, config.pop("check_id"))
        step["config"] = config
        out.append(step)
    return out


def layer_item(layer: Mapping[str, Any], users_by_id: Mapping[int, str]) -> dict[str, Any]:
    """An on-call layer as the file shows it: times as text, members by user name."""
    return {
        "name": layer["name"],
        "level": layer["level"],
        "rotation": layer["rotation"],
        "handoff_time": layer["handoff_time"].strftime("%H:%M"),
        "handoff_weekday": layer["handoff_weekday"],
        "starts_on": layer["starts_on"].isoformat(),
        "members": [users_by_id.get(m, f"#{m}") for m in layer["members"]],
        "active_days": sorted(layer["active_days"] or []),
    }


def current_state(conn: Connection, *, now: datetime) -> State:
    """Everything `config export` covers, secrets in clear; silences still running at `now`."""
    names = _Names(conn)
    state: State = {}
    chans = _rows(conn, notification_channels, notification_channels.c.name)
    state["channels"] = {}
    for r in chans:
        state["channels"][r["name"]] = {
            **_pick(r, "channels"),
            "owner": _Names.of(names.users, r["user_id"]),
        }
    state["escalation_policies"] = {}
    for r in _rows(conn, escalation_policies, escalation_policies.c.name):
        item = _pick(r, "escalation_policies")
        item["steps"] = _policy_steps(r["steps"], names)
        state["escalation_policies"][r["name"]] = item
    checks = _rows(conn, health_checks, health_checks.c.check_name)
    state["health_checks"] = {r["check_name"]: _pick(r, "health_checks") for r in checks}
    colls = _rows(conn, sql_collectors, sql_collectors.c.name)
    state["collectors"] = {r["name"]: _pick(r, "collectors") for r in colls}
    state["alert_rules"] = {}
    rules = _unique("alert_rules", _rows(conn, alert_rules, alert_rules.c.id), "alert_name")
    for name, r in rules.items():
        item = _pick(r, "alert_rules")
        item["notification_channels"] = [
            _Names.of(names.channels, c) for c in r["notification_channels"] or []
        ]
        item["escalation_policy"] = _Names.of(names.policies, r["escalation_policy_id"])
        item["runbook"] = _Names.of(names.runbooks, r["runbook_id"])
        state["alert_rules"][name] = item
    state["runbooks"] = {}
    for title, r in _unique("runbooks", _rows(conn, runbooks, runbooks.c.id), "title").items():
        item = _pick(r, "runbooks")
        item["alert_rule"] = _Names.of(names.rules, r["alert_rule_id"])
        item["steps"] = _runbook_steps(r["steps"], names)
        state["runbooks"][title] = item
    state["dashboards"] = {
        r["name"]: _pick(r, "dashboards") for r in _rows(conn, dashboards, dashboards.c.name)
    }
    live = conn.execute(select(silences).where(silences.c.ends_at > now).order_by(silences.c.id))
    state["silences"] = {}
    for silence in live:
        item = _pick(dict(silence._mapping), "silences")
        state["silences"][silence_key(item)] = item
    state["notification_routes"] = {
        r["min_severity"]: {
            "min_severity": r["min_severity"],
            "targets": _targets(r["targets"], names),
        }
        for r in _rows(conn, notification_routes, notification_routes.c.min_severity)
    }
    state["_users"] = {name: {} for name in names.users.values()}
    state["users"] = {
        r["username"]: {
            **_pick(r, "users"),
            "organizations": None if r["organization_ids"] is None else list(r["organization_ids"]),
        }
        for r in _rows(conn, users, users.c.username)
    }
    state["api_keys"] = _api_keys(conn)
    running = select(oncall_overrides).where(oncall_overrides.c.ends_at > now)
    state["oncall_overrides"] = {}
    for row in map(dict, conn.execute(running.order_by(oncall_overrides.c.id)).mappings()):
        item = {
            **_pick(row, "oncall_overrides"),
            "schedule": _Names.of(names.schedules, row["schedule_id"]),
            "user": _Names.of(names.users, row["user_id"]),
        }
        state["oncall_overrides"][item_key("oncall_overrides", item)] = item
    state["schedules"] = {
        row["name"]: {
            "name": row["name"],
            "description": row["description"],
            "layers": [layer_item(layer, names.users) for layer in row["layers"]],
        }
        for row in list_schedules(conn)
    }
    state["settings"] = {
        r.key: r.value
        for r in conn.execute(select(settings.c.key, settings.c.value).order_by(settings.c.key))
        if r.key not in UNMANAGED_SETTINGS
    }
    return state


def _set_path(item: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    target = item
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


def export_document(state: State) -> tuple[dict[str, Any], list[str]]:
    """The file's content with secrets as `${ENV}` references, and those variables' names."""
    state = copy.deepcopy(state)
    needed: list[str] = []
    doc: dict[str, Any] = {"version": FORMAT_VERSION, "settings": state["settings"]}
    for section in SECTIONS:
        items = []
        for key in sorted(state[section.name]):
            item = state[section.name][key]
            for path in list(secret_paths(section.name, item)):
                variable = env_name(section.name, key, path)
                _set_path(item, path, "${" + variable + "}")
                needed.append(variable)
            for field in ("starts_at", "ends_at", "expires_at"):
                if isinstance(item.get(field), datetime):
                    item[field] = item[field].astimezone(UTC).isoformat()
            items.append(item)
        doc[section.name] = items
    return doc, needed


def to_yaml(doc: Mapping[str, Any]) -> str:
    """Stable YAML text: the same configuration always gives the same file."""
    header = (
        "# monitoring configuration (python -m monitoring_core config export)\n"
        "# Secrets are ${ENV} references: set those variables before `config apply`.\n"
    )
    body = yaml.safe_dump(dict(doc), sort_keys=False, allow_unicode=True, width=100)
    return header + body
