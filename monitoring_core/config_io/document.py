"""Reading a configuration file: YAML with line numbers, every problem found before any write.

`read_document(text, env, known)` returns the desired state (secrets resolved from `env`) or
raises ConfigInvalid listing every problem with the line it is on. Items are checked by the
same validators the API uses (health checks, collectors, runbook steps, rule conditions,
silences, Apprise URLs); references by name must name an item of the file or of the database.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from monitoring_core.accounts import AccountInvalid, _origins, _rate_limit
from monitoring_core.alerts.rules import RuleInvalid, parse_condition
from monitoring_core.alerts.silences import validate_silence
from monitoring_core.collectors.store import validate_collector
from monitoring_core.config_io.settings_rows import validate_setting
from monitoring_core.config_io.spec import (
    FORMAT_VERSION,
    REQUIRED,
    SECTIONS,
    Section,
    env_reference,
)
from monitoring_core.config_io.state import STEP_REFS, State, item_key, layer_item
from monitoring_core.dashboards import DashboardInvalid, validate_panels
from monitoring_core.enums import ApiScope, Role, Severity
from monitoring_core.health.validate import validate_check
from monitoring_core.incidents.runbooks import validate_steps
from monitoring_core.incidents.service import IncidentInvalid
from monitoring_core.ingest.validate import InvalidItems
from monitoring_core.notify.channels import validate_url
from monitoring_core.oncall.validate import OncallInvalid, parse_route, parse_schedule
from monitoring_core.policies.steps import parse_steps

__all__ = ["ConfigInvalid", "Problem", "read_document"]

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    line: int | None
    where: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line or '?'}: {self.where or 'file'}: {self.message}"


class ConfigInvalid(ValueError):
    """The file cannot be applied; `problems` lists every one, each with its line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _where(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_map(node: yaml.Node, path: Path, out: dict[Path, int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                _line_map(value, (*path, key.value), out)
                out[(*path, key.value)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            _line_map(value, (*path, i), out)


class _Reader:
    def __init__(self, lines: dict[Path, int], env: Mapping[str, str]) -> None:
        self.lines, self.env = lines, env
        self.problems: list[Problem] = []

    def fail(self, path: Path, message: str) -> None:
        at = path
        while at and at not in self.lines:
            at = at[:-1]
        self.problems.append(Problem(self.lines.get(at), _where(path), message))

    def fail_field(self, path: Path, field: str, message: str) -> None:
        """A validator's `a.b[2].c` field name, placed under `path`."""
        parts = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", field)]
        self.fail((*path, *parts), message)

    def resolve(self, value: Any, path: Path) -> Any:
        """`${NAME}` strings replaced by the environment's value, anywhere in `value`."""
        if isinstance(value, dict):
            return {k: self.resolve(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, (*path, i)) for i, v in enumerate(value)]
        if (name := env_reference(value)) is not None:
            if name not in self.env:
                self.fail(path, f"environment variable {name} is not set")
                return value
            return self.env[name]
        return value


def _typed(kind: str, value: Any) -> tuple[bool, Any]:
    """(fits, normalized value) for a field of `kind`."""
    if kind.endswith("?"):  # the kind, or null
        return (True, None) if value is None else _typed(kind[:-1], value)
    if kind == "time":
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                return False, value
        ok = isinstance(value, datetime) and value.utcoffset() is not None
        return ok, value.astimezone(UTC) if ok else value
    if kind == "num" and isinstance(value, int | float) and not isinstance(value, bool):
        return True, float(value)
    checks: dict[str, Callable[[Any], bool]] = {
        "str": lambda v: isinstance(v, str) and bool(v.strip()),
        "string": lambda v: isinstance(v, str),
        "text": lambda v: v is None or isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "list": lambda v: isinstance(v, list),
        "dict": lambda v: isinstance(v, dict),
        "json": lambda v: v is None or isinstance(v, dict | list),
        "ref": lambda v: v is None or (isinstance(v, str) and bool(v)),
        "refs": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    }
    return checks.get(kind, lambda v: False)(value), value


_KIND_TEXT = {
    "str": "a non-empty string",
    "string": "a string",
    "text": "a string or null",
    "bool": "true or false",
    "int": "a whole number",
    "num": "a number",
    "list": "a list",
    "dict": "a mapping",
    "json": "a mapping, a list or null",
    "ref": "a name or null",
    "refs": "a list of names",
    "time": "a date-time with its UTC offset, e.g. 2026-06-01T02:00:00+00:00",
    "int?": "a whole number or null",
    "time?": "a date-time with its UTC offset, or null",
}


def _item(reader: _Reader, section: Section, raw: Any, path: Path) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        reader.fail(path, "each item must be a mapping")
        return None
    allowed = {f.name for f in section.fields}
    for unknown in sorted(set(map(str, raw)) - allowed):
        reader.fail((*path, unknown), f"unknown field; allowed: {', '.join(sorted(allowed))}")
    item: dict[str, Any] = {}
    for field in section.fields:
        if field.name not in raw and field.default is REQUIRED:
            reader.fail(path, f"{field.name} is required")
            continue
        value = reader.resolve(raw.get(field.name, field.default), (*path, field.name))
        ok, value = _typed(field.kind, value)
        if not ok:
            reader.fail((*path, field.name), f"must be {_KIND_TEXT[field.kind]}")
        item[field.name] = value
    return item


def _parse(text: str) -> tuple[Any, dict[Path, int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigInvalid([Problem(line, "", f"not valid YAML: {exc}")]) from None
    lines: dict[Path, int] = {}
    if node is not None:
        _line_map(node, (), lines)
    return data, lines


def read_document(
    text: str,
    *,
    env: Mapping[str, str],
    known: State,
    signal_problems: Callable[[Mapping[str, Any]], list[dict[str, str]]] | None = None,
) -> State:
    """The desired state the file describes (ConfigInvalid lists every problem).

    `known` is the database's current state: names the file refers to may be there instead.
    `signal_problems(condition)` checks the signal a rule names against the catalogue
    (`alerts.signals.problems` on the caller's connection), as the API does.
    """
    data, lines = _parse(text)
    reader = _Reader(lines, env)
    if not isinstance(data, dict):
        raise ConfigInvalid([Problem(1, "", "the file must be a mapping with `version: 1`")])
    if data.get("version") != FORMAT_VERSION:
        reader.fail(("version",), f"version must be {FORMAT_VERSION} (the only format so far)")
    names = {s.name for s in SECTIONS} | {"version", "settings"}
    for unknown in sorted(set(map(str, data)) - names):
        reader.fail((unknown,), f"unknown section; known: {', '.join(sorted(names))}")
    desired: State = {"settings": _settings(reader, data.get("settings"))}
    paths: dict[tuple[str, str], Path] = {}
    for section in SECTIONS:
        raw_items = data.get(section.name) or []
        if not isinstance(raw_items, list):
            reader.fail((section.name,), "must be a list of items")
            raw_items = []
        desired[section.name] = {}
        for i, raw in enumerate(raw_items):
            path: Path = (section.name, i)
            item = _item(reader, section, raw, path)
            if item is None:
                continue
            key = item_key(section.name, item)
            if key in desired[section.name]:
                reader.fail((*path, section.key), f"{section.key} {key!r} appears twice")
            desired[section.name][key] = item
            paths[(section.name, key)] = path
    desired["_users"] = {name: {} for name in desired["users"]}  # references may name them
    if not reader.problems:
        _Checks(reader, desired, known, paths, signal_problems).run()
    if reader.problems:
        raise ConfigInvalid(reader.problems)
    return desired


def _settings(reader: _Reader, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        reader.fail(("settings",), "must be a mapping of setting name to value")
        return {}
    values = {str(k): reader.resolve(v, ("settings", k)) for k, v in raw.items()}
    for key, value in values.items():
        try:
            validate_setting(key, value)
        except ValueError as exc:
            reader.fail(("settings", key), str(exc))
    return values


class _Checks:
    """The domain validators and the references, item by item."""

    def __init__(
        self,
        reader: _Reader,
        desired: State,
        known: State,
        paths: dict[tuple[str, str], Path],
        signal_problems: Callable[[Mapping[str, Any]], list[dict[str, str]]] | None = None,
    ) -> None:
        self.reader, self.desired, self.known, self.paths = reader, desired, known, paths
        self.signal_problems = signal_problems

    def run(self) -> None:
        for section in SECTIONS:
            check = getattr(self, f"_{section.name}")
            for key, item in self.desired[section.name].items():
                check(item, self.paths[(section.name, key)])

    def _ref(self, section: str, name: Any, path: Path) -> None:
        known = self.desired.get(section, {}) | self.known.get(section, {})
        if name is not None and name not in known:
            what = section.strip("_").rstrip("s").replace("_", " ")
            self.reader.fail(path, f"no {what} named {name!r}")

    def _users(self, item: dict[str, Any], path: Path) -> None:
        if item["role"] not in set(Role):
            self.reader.fail((*path, "role"), f"must be one of {', '.join(Role)}")
        orgs = item["organizations"]
        if orgs is not None:
            if (
                not isinstance(orgs, list)
                or not orgs
                or not all(isinstance(o, str) and o.strip() and "\x00" not in o for o in orgs)
            ):
                self.reader.fail(
                    (*path, "organizations"),
                    "must be null (every organisation) or a non-empty list of organisation ids",
                )
            else:
                item["organizations"] = list(dict.fromkeys(o.strip() for o in orgs))
        zone = item["time_zone"]
        if zone is not None:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                self.reader.fail((*path, "time_zone"), f"{zone!r} is not a known IANA time zone")

    def _oncall_overrides(self, item: dict[str, Any], path: Path) -> None:
        self._ref("schedules", item["schedule"], (*path, "schedule"))
        self._ref("_users", item["user"], (*path, "user"))
        if item["schedule"] is None or item["user"] is None:
            self.reader.fail(path, "an override names its schedule and its user")
        if item["ends_at"] <= item["starts_at"]:
            self.reader.fail((*path, "ends_at"), "must be after starts_at")

    def _api_keys(self, item: dict[str, Any], path: Path) -> None:
        if item["scope"] not in set(ApiScope):
            self.reader.fail((*path, "scope"), f"must be one of {', '.join(ApiScope)}")
        try:
            origins = list(_origins(item["allowed_origins"]))
        except AccountInvalid as exc:
            self.reader.fail((*path, "allowed_origins"), str(exc))
        else:
            if origins and item["scope"] != ApiScope.BROWSER:
                self.reader.fail((*path, "allowed_origins"), "apply to browser keys only")
            item["allowed_origins"] = origins
        for field in ("rate_limit_per_minute", "points_per_minute"):
            try:
                _rate_limit(item[field], field)
            except AccountInvalid as exc:
                self.reader.fail((*path, field), str(exc).removeprefix(f"{field} "))
        held = self.known.get("api_keys", {}).get(item["name"])
        if held is not None and held["revoked"] and not item["revoked"]:
            self.reader.fail(
                (*path, "revoked"),
                "this key is revoked and stays revoked: give a new key another name",
            )

    def _channels(self, item: dict[str, Any], path: Path) -> None:
        self._ref("_users", item["owner"], (*path, "owner"))
        if not validate_url(item["url"]):
            self.reader.fail((*path, "url"), "is not an Apprise URL Apprise can use")
        if item["rate_limit_per_minute"] < 1:
            self.reader.fail((*path, "rate_limit_per_minute"), "must be at least 1")
        if not all(isinstance(t, str) for t in item["tags"]):
            self.reader.fail((*path, "tags"), "must be a list of strings")

    def _schedules(self, item: dict[str, Any], path: Path) -> None:
        layers, numbered = item["layers"], []
        for i, raw in enumerate(layers):
            if not isinstance(raw, dict):
                self.reader.fail((*path, "layers", i), "each layer must be a mapping")
                return
            members = raw.get("members")
            if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                self.reader.fail((*path, "layers", i, "members"), "must be a list of user names")
                return
            for j, name in enumerate(members):
                self._ref("_users", name, (*path, "layers", i, "members", j))
            starts = raw.get("starts_on")
            starts = starts.isoformat() if isinstance(starts, date) else starts
            numbered.append(
                {**raw, "starts_on": starts, "members": list(range(1, len(members) + 1))}
            )
        try:
            _, parsed = parse_schedule({"name": item["name"], "layers": numbered})
        except OncallInvalid as exc:
            self.reader.fail_field(path, exc.field, str(exc).split(": ", 1)[-1])
            return
        canonical = [
            layer_item(layer, dict(enumerate(raw["members"], start=1)))
            for raw, layer in zip(layers, parsed, strict=True)
        ]
        # the database lists layers highest level first (then as written): so does the state
        order = sorted(range(len(canonical)), key=lambda k: -canonical[k]["level"])
        item["layers"] = [canonical[k] for k in order]

    def _escalation_policies(self, item: dict[str, Any], path: Path) -> None:
        numbered = []
        for i, step in enumerate(item["steps"]):
            if not isinstance(step, dict):
                self.reader.fail((*path, "steps", i), "each step must be a mapping")
                return
            step_numbered = dict(step)
            for key, section in STEP_REFS:
                names = step.get(key, [])
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    self.reader.fail((*path, "steps", i, key), f"must be a list of {key} names")
                    return
                for j, name in enumerate(names):
                    self._ref(section, name, (*path, "steps", i, key, j))
                step_numbered[key] = list(range(len(names)))
            numbered.append(step_numbered)
        try:
            parse_steps(numbered)
        except ValueError as exc:
            self.reader.fail((*path, "steps"), str(exc))

    def _notification_routes(self, item: dict[str, Any], path: Path) -> None:
        raw, numbered = item["targets"], {}
        for key, section in STEP_REFS:
            names = raw.get(key, [])
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                self.reader.fail((*path, "targets", key), f"must be a list of {key} names")
                return
            for j, name in enumerate(names):
                self._ref(section, name, (*path, "targets", key, j))
            numbered[key] = list(range(1, len(names) + 1))
        unknown = {**raw, **numbered}
        try:
            parse_route({"min_severity": item["min_severity"], "targets": unknown})
        except OncallInvalid as exc:
            self.reader.fail_field(path, exc.field, str(exc).split(": ", 1)[-1])
            return
        item["targets"] = {key: list(raw.get(key, [])) for key, _ in STEP_REFS}

    def _health_checks(self, item: dict[str, Any], path: Path) -> None:
        try:
            validate_check(dict(item))
        except InvalidItems as exc:
            for error in exc.errors:
                self.reader.fail_field(path, error.field, error.message)

    def _collectors(self, item: dict[str, Any], path: Path) -> None:
        try:
            validate_collector(dict(item))
        except InvalidItems as exc:
            for error in exc.errors:
                self.reader.fail_field(path, error.field, error.message)

    def _alert_rules(self, item: dict[str, Any], path: Path) -> None:
        if item["severity_level"] not in set(Severity):
            self.reader.fail((*path, "severity_level"), f"must be one of {', '.join(Severity)}")
        if item["repeat_interval_minutes"] < 1:
            self.reader.fail((*path, "repeat_interval_minutes"), "must be at least 1")
        try:
            condition = parse_condition(item["condition_config"])
            item["metric_name"] = item["metric_name"] or condition.metric
        except RuleInvalid as exc:
            for p in exc.problems:
                self.reader.fail_field(path, p["field"], p["message"])
        else:
            config = item["condition_config"]
            for p in self.signal_problems(config) if self.signal_problems else []:
                self.reader.fail_field(path, p["field"], p["message"])
        for j, name in enumerate(item["notification_channels"]):
            self._ref("channels", name, (*path, "notification_channels", j))
        self._ref("escalation_policies", item["escalation_policy"], (*path, "escalation_policy"))
        self._ref("runbooks", item["runbook"], (*path, "runbook"))

    def _dashboards(self, item: dict[str, Any], path: Path) -> None:
        try:
            validate_panels(item["panels"])
        except DashboardInvalid as exc:
            self.reader.fail((*path, "panels"), str(exc))

    def _runbooks(self, item: dict[str, Any], path: Path) -> None:
        self._ref("alert_rules", item["alert_rule"], (*path, "alert_rule"))
        numbered = []
        for i, step in enumerate(item["steps"] if isinstance(item["steps"], list) else []):
            config = dict(step.get("config") or {}) if isinstance(step, dict) else {}
            for j, name in enumerate(config.get("channels") or []):
                self._ref("channels", name, (*path, "steps", i, "config", "channels", j))
            if "channels" in config and isinstance(config["channels"], list):
                config["channels"] = list(range(len(config["channels"])))
            if "check" in config:
                self._ref("health_checks", config["check"], (*path, "steps", i, "config", "check"))
                config["check_id"] = 0
            numbered.append({**step, "config": config} if isinstance(step, dict) else step)
        try:
            steps = validate_steps(numbered)
        except IncidentInvalid as exc:
            for p in exc.problems:
                self.reader.fail_field(path, p["field"], p["message"])
            return
        for step, original in zip(steps, item["steps"], strict=True):  # names back in
            step["config"] = dict(original.get("config") or {})
        item["steps"] = steps

    def _silences(self, item: dict[str, Any], path: Path) -> None:
        problems = validate_silence(
            item["matchers"], item["starts_at"], item["ends_at"], item["recurrence"]
        )
        for p in problems:
            self.reader.fail((*path, p["field"]), p["message"])
