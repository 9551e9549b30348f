"""The configuration file's schema (version 1): its sections, their fields and their secrets.

Sections added later in version 1 (users, on-call overrides, API keys) are optional, so every
earlier file still reads the same.

Pure: no I/O. Items are keyed by a name (`key` field); references to other items are by name,
never by database id, so a file moves between installations. Secret values (channel URLs,
database URLs, HTTP check header values, URL passwords) are written as `${ENV_VAR}` references
and read back from the environment on apply; they never appear in an exported file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from monitoring_core.collectors.readonly import SELF_URL

__all__ = [
    "FORMAT_VERSION",
    "REQUIRED",
    "SECTIONS",
    "UNMANAGED_SETTINGS",
    "WHOLE_ITEM_SECTIONS",
    "Field",
    "Section",
    "env_name",
    "env_reference",
    "secret_paths",
]

FORMAT_VERSION = 1
REQUIRED: Any = object()  # a field's default when the field must be given
# Installation secrets and state kept in `settings` (the demo feed's progress,
# `demo.feed.FED`): never exported, never applied.
UNMANAGED_SETTINGS = frozenset({"ack_link_secret", "demo_feed"})
# Sections whose items have no name: the whole item is the identity (created, never updated).
WHOLE_ITEM_SECTIONS = frozenset({"silences", "oncall_overrides"})
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Field:
    name: str
    # str (non-empty) | string | text (str or null) | bool | int | int? (int or null) | num | list
    # | dict | json | ref | refs | time | time? (time or null)
    kind: str
    default: Any = REQUIRED


@dataclass(frozen=True)
class Section:
    name: str
    key: str  # the field naming an item (unique within the section)
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


def _fields(*specs: tuple[Any, ...]) -> tuple[Field, ...]:
    return tuple(Field(*spec) for spec in specs)


SECTIONS: tuple[Section, ...] = (
    Section(
        # People (never their password hashes). Apply creates a missing user without a password
        # (`user reset-password NAME` sets one) and never deletes one: `is_active: false` stops it.
        "users",
        "username",
        _fields(
            ("username", "str"),
            ("role", "str"),
            ("is_active", "bool", True),
            ("organizations", "json", None),  # null: every organisation; else the only ones seen
            ("time_zone", "text", None),
        ),
    ),
    Section(
        "channels",
        "name",
        _fields(
            ("name", "str"),
            ("url", "str"),
            ("tags", "list", []),
            ("is_enabled", "bool", True),
            ("rate_limit_per_minute", "int", 30),
            ("owner", "ref", None),  # a person's contact method: their user name
        ),
    ),
    Section(
        "schedules",
        "name",
        _fields(
            ("name", "str"),
            ("description", "string", ""),
            # [{name, level, rotation, handoff_time "HH:MM", handoff_weekday, starts_on
            #   "YYYY-MM-DD", members: [user names], active_days}]
            ("layers", "list"),
        ),
    ),
    Section(
        "oncall_overrides",
        "key",  # no name of their own: the whole item is its identity (like silences)
        _fields(
            ("schedule", "ref"),  # a schedule name
            ("user", "ref"),  # who is on call instead: a user name
            ("starts_at", "time"),
            ("ends_at", "time"),
            ("reason", "string", ""),
        ),
    ),
    Section(
        "escalation_policies",
        "name",
        _fields(
            ("name", "str"),
            # [{after_minutes, channels, users?, schedules?}]: channel, user and schedule names
            ("steps", "list", []),
            ("repeat", "bool", False),
            ("is_wedding_day", "bool", False),
        ),
    ),
    Section(
        "notification_routes",
        "min_severity",  # alerts without channels of their own, this severity and above
        _fields(
            ("min_severity", "str"),
            ("targets", "dict"),  # {channels, users, schedules}: names
        ),
    ),
    Section(
        "health_checks",
        "check_name",
        _fields(
            ("check_name", "str"),
            ("check_type", "str"),
            ("check_config", "dict", {}),
            ("service_name", "text", None),
            ("check_frequency_seconds", "int", 60),
            ("timeout_seconds", "num", 10.0),
            ("retries", "int", 2),
            ("is_enabled", "bool", True),
            ("wedding_critical", "bool", False),
        ),
    ),
    Section(
        "collectors",
        "name",
        _fields(
            ("name", "str"),
            ("kind", "str", "sql"),
            ("url", "str"),
            ("query", "text", None),
            ("metric_name", "text", None),
            ("interval_seconds", "int", 60),
            ("is_enabled", "bool", True),
        ),
    ),
    Section(
        "alert_rules",
        "alert_name",
        _fields(
            ("alert_name", "str"),
            ("description", "string", ""),
            ("metric_name", "text", None),  # null: the condition's metric
            ("condition_config", "dict"),
            ("severity_level", "str"),
            ("notification_channels", "refs", []),  # channel names
            ("escalation_policy", "ref", None),  # a policy name
            ("suppression_rules", "dict", {}),
            ("is_enabled", "bool", True),
            ("weekend_escalation", "bool", False),
            ("wedding_season_adjustment", "bool", False),
            ("repeat_interval_minutes", "int", 60),
            ("runbook", "ref", None),  # a runbook title
            ("service_name", "text", None),
        ),
    ),
    Section(
        "runbooks",
        "title",
        _fields(
            ("title", "str"),
            ("description", "string", ""),
            ("service_name", "text", None),
            ("alert_rule", "ref", None),  # an alert rule name
            ("requires_approval", "bool", False),
            ("wedding_day_approved", "bool", False),
            # [{title, kind, config, wedding_day_safe}]; notify steps name channels
            # (`config.channels`), health_check steps name a check (`config.check`)
            ("steps", "list"),
        ),
    ),
    Section(
        "dashboards",
        "name",
        _fields(
            ("name", "str"),
            ("team", "string", ""),
            # [{title, metric, aggregation, group_by, filters, chart}] (monitoring_core.dashboards)
            ("panels", "list", []),
        ),
    ),
    Section(
        "silences",
        "key",  # no name of their own: the whole item is its identity
        _fields(
            ("matchers", "list"),
            ("starts_at", "time"),
            ("ends_at", "time"),
            ("recurrence", "json", None),
            ("reason", "string", ""),
        ),
    ),
    Section(
        # Keys by name, never their secret or its hash. Apply creates a missing key and prints
        # its new secret once (as `apikey add` does); a revoked key stays revoked.
        "api_keys",
        "name",
        _fields(
            ("name", "str"),
            ("scope", "str"),
            ("allowed_origins", "list", []),
            ("rate_limit_per_minute", "int?", None),  # null: the default, 0: unlimited
            ("points_per_minute", "int?", None),
            ("expires_at", "time?", None),
            ("revoked", "bool", False),
        ),
    ),
)


def env_name(section: str, key: str, path: tuple[str, ...]) -> str:
    """The environment variable an exported secret is read from, e.g.
    MONITORING_SECRET_CHANNELS_OPS_SLACK_URL."""
    raw = "_".join(("MONITORING_SECRET", section, key, *path))
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9]", "_", raw)).strip("_").upper()


def env_reference(value: Any) -> str | None:
    """The variable name when `value` is exactly `${NAME}`, else None."""
    if isinstance(value, str) and (found := ENV_REFERENCE.fullmatch(value.strip())):
        return found.group(1)
    return None


def _has_password(url: Any) -> bool:
    try:
        return isinstance(url, str) and bool(urlsplit(url).password)
    except ValueError:
        return False


def secret_paths(section: str, item: Mapping[str, Any]) -> Iterator[tuple[str, ...]]:
    """The paths inside an item whose values are secrets (exported as `${ENV}`)."""
    if section == "channels":
        yield ("url",)
    elif (
        section == "collectors" and item.get("kind", "sql") == "sql" and item.get("url") != SELF_URL
    ):
        yield ("url",)
    elif section == "health_checks":
        config = item.get("check_config") or {}
        if not isinstance(config, Mapping):
            return
        if item.get("check_type") == "database" or _has_password(config.get("url")):
            yield ("check_config", "url")
        headers = config.get("headers")
        if isinstance(headers, Mapping):
            for header in sorted(headers):
                yield ("check_config", "headers", str(header))
