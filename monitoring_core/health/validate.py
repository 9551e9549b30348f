"""Validation of health check bodies (docs/API.md `health_checks` fields); pure.

Errors are collected per field and raised together as `InvalidItems` (the API's 422 body).
"""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import available_timezones

from monitoring_core.collectors.readonly import database_url_error
from monitoring_core.health.custom import CUSTOM_CHECKS
from monitoring_core.health.rules import cron_error
from monitoring_core.ingest.validate import InvalidItems, ItemError
from monitoring_core.outbound import METADATA_HEADERS, literal_refusal

__all__ = ["CHECK_FIELDS", "CHECK_TYPES", "CONFIG_EXAMPLES", "validate_check"]

CHECK_TYPES = ("http", "tcp", "database", "heartbeat", "custom")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "OPTIONS")
CHECK_FIELDS = frozenset(
    {
        "check_name",
        "check_type",
        "check_config",
        "service_name",
        "check_frequency_seconds",
        "timeout_seconds",
        "retries",
        "is_enabled",
        "wedding_critical",
    }
)
CONFIG_EXAMPLES: dict[str, dict[str, Any]] = {  # shown as starting points in forms
    "http": {
        "url": "https://example.com/health",
        "expected_status": 200,
        "keyword": "ok",
        "max_response_time_ms": 2000,
    },
    "tcp": {"host": "localhost", "port": 5432},
    "database": {"url": "postgresql+psycopg://user:password@host/db", "query": "SELECT 1"},
    "heartbeat": {"period_seconds": 600, "grace_seconds": 120},
    "custom": {"callable": "disk_free", "path": "/", "min_free_percent": 10},
}
_NUMBERS: dict[str, tuple[type, float, float]] = {
    "check_frequency_seconds": (int, 5, 86_400),
    "timeout_seconds": (float, 0.1, 120),
    "retries": (int, 0, 20),
}


class _Errors:
    def __init__(self) -> None:
        self.items: list[ItemError] = []

    def add(self, field: str, message: str) -> None:
        self.items.append(ItemError(None, field, message))


def _number(value: Any, kind: type, low: float, high: float) -> str | None:
    """An error message, or None when `value` is a number of `kind` within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number"
    if kind is int and not float(value).is_integer():
        return "must be a whole number"
    if not low <= value <= high:
        return f"must be between {low:g} and {high:g}"
    return None


def _check_http(config: dict[str, Any], errors: _Errors) -> None:
    url = config.get("url")
    if (
        not isinstance(url, str)
        or urlsplit(url).scheme not in ("http", "https")
        or not urlsplit(url).netloc
    ):
        errors.add("check_config.url", "must be an http:// or https:// URL")
    elif reason := literal_refusal(urlsplit(url).hostname or ""):
        errors.add("check_config.url", f"not an allowed target: {reason}")
    if not isinstance(config.get("follow_redirects", False), bool):
        errors.add("check_config.follow_redirects", "must be true or false")
    method = config.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        errors.add("check_config.method", f"must be one of {', '.join(HTTP_METHODS)}")
    if "expected_status" in config and (
        message := _number(config["expected_status"], int, 100, 599)
    ):
        errors.add("check_config.expected_status", message)
    if "keyword" in config and not isinstance(config["keyword"], str):
        errors.add("check_config.keyword", "must be a string")
    headers = config.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        errors.add("check_config.headers", "must be an object of strings")
    elif refused := sorted(h for h in headers if str(h).lower() in METADATA_HEADERS):
        errors.add("check_config.headers", f"{refused[0]} is for cloud metadata services")
    limit = config.get("max_response_time_ms")
    if limit is not None and (message := _number(limit, float, 1, 600_000)):
        errors.add("check_config.max_response_time_ms", message)


def _check_tcp(config: dict[str, Any], errors: _Errors) -> None:
    if not isinstance(config.get("host"), str) or not config["host"]:
        errors.add("check_config.host", "must be a host name or address")
    elif reason := literal_refusal(config["host"]):
        errors.add("check_config.host", f"not an allowed target: {reason}")
    if message := _number(config.get("port"), int, 1, 65_535):
        errors.add("check_config.port", message)


def _check_database(config: dict[str, Any], errors: _Errors) -> None:
    if message := database_url_error(config.get("url")):
        errors.add("check_config.url", message)
    if "query" in config and not isinstance(config["query"], str):
        errors.add("check_config.query", "must be a string")


def _check_heartbeat(config: dict[str, Any], errors: _Errors) -> None:
    """A simple `period_seconds`, or a cron `schedule` read in `tz` (default UTC); `grace_seconds`."""
    if "schedule" in config and "period_seconds" in config:
        errors.add("check_config.schedule", "give either a schedule or a period_seconds, not both")
    elif "schedule" in config:
        if message := cron_error(config["schedule"]):
            errors.add("check_config.schedule", message)
        if "tz" in config and config["tz"] not in _zones():
            errors.add("check_config.tz", "must be an IANA time zone such as Europe/London")
    elif message := _number(config.get("period_seconds"), float, 1, 31 * 86_400):
        errors.add("check_config.period_seconds", message)
    if "grace_seconds" in config and (
        message := _number(config["grace_seconds"], float, 0, 31 * 86_400)
    ):
        errors.add("check_config.grace_seconds", message)


def _check_custom(config: dict[str, Any], errors: _Errors) -> None:
    if config.get("callable") not in CUSTOM_CHECKS:
        known = ", ".join(sorted(CUSTOM_CHECKS)) or "none"
        errors.add("check_config.callable", f"must name a registered custom check ({known})")


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())  # ~50 ms to list: once per process


_CONFIG_RULES = {
    "http": _check_http,
    "tcp": _check_tcp,
    "database": _check_database,
    "heartbeat": _check_heartbeat,
    "custom": _check_custom,
}


def _scalars(body: dict[str, Any], errors: _Errors) -> None:
    for key in body:
        if key not in CHECK_FIELDS:
            errors.add(key, f"unknown field; allowed: {', '.join(sorted(CHECK_FIELDS))}")
    name = body.get("check_name")
    if "check_name" in body and (not isinstance(name, str) or not 1 <= len(name.strip()) <= 200):
        errors.add("check_name", "must be a string of 1 to 200 characters")
    service = body.get("service_name")
    if service is not None and (not isinstance(service, str) or len(service) > 200):
        errors.add("service_name", "must be a string of at most 200 characters")
    for field, (kind, low, high) in _NUMBERS.items():
        if field in body and (message := _number(body[field], kind, low, high)):
            errors.add(field, message)
    for field in ("is_enabled", "wedding_critical"):
        if field in body and not isinstance(body[field], bool):
            errors.add(field, "must be true or false")


def validate_check(body: Any, *, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """Clean column values for an insert (`current` None) or a partial update of `current`."""
    errors = _Errors()
    if not isinstance(body, dict):
        raise InvalidItems([ItemError(None, "", "body must be a JSON object")])
    _scalars(body, errors)
    merged = {**(current or {}), **body}
    if current is None:
        for field in ("check_name", "check_type"):
            if field not in body:
                errors.add(field, "is required")
    check_type = merged.get("check_type")
    config = merged.get("check_config", {})
    if "check_type" in merged and check_type not in CHECK_TYPES:
        errors.add("check_type", f"must be one of {', '.join(CHECK_TYPES)}")
    elif not isinstance(config, dict):
        errors.add("check_config", "must be an object")
    elif check_type in _CONFIG_RULES and ("check_config" in body or "check_type" in body):
        _CONFIG_RULES[check_type](config, errors)
    if errors.items:
        raise InvalidItems(errors.items)
    clean = {k: v for k, v in body.items() if k in CHECK_FIELDS}
    if isinstance(clean.get("check_name"), str):
        clean["check_name"] = clean["check_name"].strip()
    if "check_config" in body or current is None:
        clean["check_config"] = config
    return clean
