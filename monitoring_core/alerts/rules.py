"""Alert rule definitions: `condition_config` parsing and validation, and rule templates.

Pure: nothing here touches the database or the clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import promql_parser

from monitoring_core.enums import Severity
from monitoring_core.errors.queries import DIMENSIONS

__all__ = [
    "AGGREGATIONS",
    "NO_DATA_MODES",
    "OPERATORS",
    "RULE_TYPES",
    "TEMPLATES",
    "WEDDING_CRITICAL_SERVICES",
    "Condition",
    "Rule",
    "RuleInvalid",
    "compare",
    "parse_condition",
    "rule_from_row",
]

# `external`: alerts received from Prometheus, Grafana or an Alertmanager webhook; the receiver
# (flows/external_alerts) drives their instances, the evaluation cycle skips them.
# `promql`: the condition is a PromQL expression (`expr`), see alerts/promql_rules.py.
RULE_TYPES = (
    "threshold",
    "anomaly",
    "absence",
    "pattern",
    "rate_of_change",
    "composite",
    "external",
    "promql",
)
AGGREGATIONS = ("avg", "min", "max", "sum", "count", "p50", "p75", "p90", "p95", "p99")
OPERATORS = {
    "greater_than": lambda a, b: a > b,
    "less_than": lambda a, b: a < b,
    "greater_than_or_equal": lambda a, b: a >= b,
    "less_than_or_equal": lambda a, b: a <= b,
    "equals": lambda a, b: a == b,
    "not_equals": lambda a, b: a != b,
}
# What no data means (Grafana's NoData, OK, Alerting, KeepLast); `keep_state` is the old
# spelling of keep_last.
NO_DATA_MODES = ("no_data", "ok", "alerting", "keep_last")
_NO_DATA_ALIASES = {"keep_state": "keep_last"}
# What `pattern` rules may filter and group error events by.
PATTERN_DIMENSIONS = frozenset(DIMENSIONS)
# Services whose failure hurts a wedding directly: their critical alerts open SEV1 incidents.
WEDDING_CRITICAL_SERVICES = frozenset({"payments", "photos", "forms", "bookings", "guests"})


class RuleInvalid(ValueError):
    """A condition_config that cannot be evaluated; `problems` lists {field, message}."""

    def __init__(self, problems: list[dict[str, str]]):
        super().__init__("; ".join(f"{p['field']}: {p['message']}" for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Condition:
    type: str
    metric: str | None = None
    aggregation: str = "avg"
    operator: str = "greater_than"
    value: float = 0.0
    duration_minutes: float = 0.0
    window_minutes: float = 5.0
    group_by: tuple[str, ...] = ()
    filters: Mapping[str, Any] = field(default_factory=dict)
    no_data: str = "no_data"
    recovery_value: float | None = None  # hysteresis: resolve only once past this value
    z_threshold: float = 3.0  # anomaly
    weeks: int = 4  # anomaly baseline depth
    min_baseline: int = 3
    direction: str = "both"  # anomaly: above|below|both
    change_mode: str = "percent"  # rate_of_change: percent|absolute
    logic: str = "and"  # composite
    rules: tuple[int, ...] = ()  # composite children
    expire_minutes: float = 60.0  # a grouped key unseen this long expires
    expr: str = ""  # promql: the expression; every series it returns is one alert
    min_count: int = 0  # windowed signals: a window with fewer events gives no value


@dataclass(frozen=True)
class Rule:
    """What the engine needs of an alert rule row."""

    id: int
    name: str
    severity: str
    condition: Condition
    weekend_escalation: bool = False
    wedding_season_adjustment: bool = False
    repeat_interval_minutes: float = 60.0
    service_name: str | None = None


def compare(operator: str, left: float, right: float) -> bool:
    """`left OPERATOR right` with the API's operator names (docs/API.md)."""
    return bool(OPERATORS[operator](left, right))


def _number(cfg: Mapping[str, Any], key: str, default: float | None, problems: list) -> Any:
    raw = cfg.get(key, default)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        problems.append({"field": f"condition_config.{key}", "message": "must be a number"})
        return default
    return float(raw)


def _choice(
    cfg: Mapping[str, Any], key: str, options: Sequence[str], default: str, problems: list
) -> str:
    raw = cfg.get(key, default)
    if raw not in options:
        problems.append(
            {"field": f"condition_config.{key}", "message": f"must be one of {', '.join(options)}"}
        )
        return default
    return str(raw)


def _strings(cfg: Mapping[str, Any], key: str, problems: list) -> tuple[str, ...]:
    raw = cfg.get(key) or []
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        problems.append({"field": f"condition_config.{key}", "message": "must be a list of names"})
        return ()
    return tuple(raw)


def _type_specific(kind: str, cfg: Mapping[str, Any], out: dict[str, Any], problems: list) -> None:
    if kind in ("threshold", "anomaly", "absence", "rate_of_change") and not cfg.get("metric"):
        problems.append({"field": "condition_config.metric", "message": "is required"})
    if kind in ("threshold", "pattern", "rate_of_change") and "value" not in cfg:
        problems.append({"field": "condition_config.value", "message": "is required"})
    if kind == "pattern":
        wanted = cfg.get("filter", cfg.get("filters", {}))
        if not isinstance(wanted, dict):
            problems.append({"field": "condition_config.filter", "message": "must be an object"})
        elif unknown := sorted((set(wanted) | set(cfg.get("group_by") or [])) - PATTERN_DIMENSIONS):
            problems.append(
                {
                    "field": "condition_config.filter",
                    "message": f"unknown error dimensions {unknown}; use {sorted(PATTERN_DIMENSIONS)}",
                }
            )
    if kind == "promql":
        out["expr"] = _promql_expr(cfg.get("expr"), problems)
    if kind == "composite":
        children = cfg.get("rules")
        if (
            not isinstance(children, list)
            or not children
            or not all(isinstance(c, int) and not isinstance(c, bool) for c in children)
        ):
            problems.append(
                {"field": "condition_config.rules", "message": "must be a list of rule ids"}
            )
        else:
            out["rules"] = tuple(children)
        logic = str(cfg.get("logic", cfg.get("operator", "and"))).lower()
        if logic not in ("and", "or"):
            problems.append({"field": "condition_config.logic", "message": "must be and or or"})
        out["logic"] = logic


def _promql_expr(raw: Any, problems: list) -> str:
    """The expression of a `promql` rule, parsed here so that a typo is a 422, not a cycle error."""
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 5000 or "\x00" in raw:
        problems.append(
            {"field": "condition_config.expr", "message": "a PromQL expression is required"}
        )
        return ""
    try:
        promql_parser.parse(raw)
    except ValueError as exc:
        problems.append({"field": "condition_config.expr", "message": f"parse error: {exc}"})
    return raw


def _no_data_mode(cfg: Mapping[str, Any], problems: list) -> str:
    """`no_data_state` (Grafana's name), or the older `no_data`; default `no_data`."""
    key = "no_data_state" if "no_data_state" in cfg else "no_data"
    raw = cfg.get(key, "no_data")
    mode = _NO_DATA_ALIASES.get(raw, raw) if isinstance(raw, str) else raw
    return _choice({key: mode}, key, NO_DATA_MODES, "no_data", problems)


def parse_condition(cfg: Any) -> Condition:
    """A validated Condition, or RuleInvalid listing every problem at once."""
    if not isinstance(cfg, Mapping):
        raise RuleInvalid([{"field": "condition_config", "message": "must be an object"}])
    p: list[dict[str, str]] = []
    kind = _choice(cfg, "type", RULE_TYPES, "threshold", p)
    out: dict[str, Any] = {"type": kind, "metric": cfg.get("metric") or None}
    if kind != "composite":
        out["aggregation"] = _choice(cfg, "aggregation", AGGREGATIONS, "avg", p)
        out["operator"] = _choice(cfg, "operator", tuple(OPERATORS), "greater_than", p)
    _type_specific(kind, cfg, out, p)
    for key, default in (
        ("value", 0.0),
        ("duration_minutes", 0.0),
        ("window_minutes", 5.0),
        ("z_threshold", 3.0),
        ("expire_minutes", 60.0),
    ):
        out[key] = _number(cfg, key, default, p)
    out["recovery_value"] = _number(cfg, "recovery_value", None, p)
    out["weeks"] = int(_number(cfg, "weeks", 4, p) or 4)
    out["min_baseline"] = int(_number(cfg, "min_baseline", 3, p) or 3)
    out["min_count"] = max(0, int(_number(cfg, "min_count", 0, p) or 0))
    if out["duration_minutes"] < 0 or out["window_minutes"] <= 0:
        p.append({"field": "condition_config.window_minutes", "message": "must be positive"})
    out["group_by"] = _strings(cfg, "group_by", p)
    out["filters"] = dict(cfg.get("filter") or cfg.get("filters") or {}) if not p else {}
    out["no_data"] = _no_data_mode(cfg, p)
    out["direction"] = _choice(cfg, "direction", ("above", "below", "both"), "both", p)
    out["change_mode"] = _choice(cfg, "change_mode", ("percent", "absolute"), "percent", p)
    if p:
        raise RuleInvalid(p)
    return Condition(**out)


def rule_from_row(row: Mapping[str, Any]) -> Rule:
    """A Rule from an `alert_rules` row (RuleInvalid when its condition is broken)."""
    return Rule(
        id=int(row["id"]),
        name=str(row["alert_name"]),
        severity=Severity(row["severity_level"]).value,
        condition=parse_condition(row["condition_config"]),
        weekend_escalation=bool(row.get("weekend_escalation")),
        wedding_season_adjustment=bool(row.get("wedding_season_adjustment")),
        repeat_interval_minutes=float(row.get("repeat_interval_minutes") or 60),
        service_name=row.get("service_name"),
    )


def _template(name: str, desc: str, severity: str, cfg: dict[str, Any], **flags: Any) -> dict:
    return {
        "alert_name": name,
        "description": desc,
        "metric_name": cfg.get("metric"),
        "condition_config": cfg,
        "severity_level": severity,
        **flags,
    }


# The spec's classic templates (error rate, response time, availability, heartbeat) plus the
# wedding-critical ones and the Performance page's regression flag, all on catalogue signals
# (`alerts/signals.py`). `min_count` keeps a window of two requests from deciding a rate.
TEMPLATES: dict[str, dict[str, Any]] = {
    "high_error_rate": _template(
        "High Error Rate",
        "More than 5 % of a service's API requests fail (5xx) over 30 minutes (at least 10 "
        "requests), for 5 minutes.",
        "high",
        {
            "type": "threshold",
            "metric": "api.error_rate",
            "aggregation": "avg",
            "operator": "greater_than",
            "value": 0.05,
            "window_minutes": 30,
            "duration_minutes": 5,
            "min_count": 10,
            "group_by": ["service"],
        },
        weekend_escalation=True,
    ),
    "slow_response_time": _template(
        "Slow Response Time",
        "API p95 response time above 2 s over 10 minutes, for 10 minutes.",
        "medium",
        {
            "type": "threshold",
            "metric": "api.latency_ms",
            "aggregation": "p95",
            "operator": "greater_than",
            "value": 2000,
            "window_minutes": 10,
            "duration_minutes": 10,
            "min_count": 20,
        },
        wedding_season_adjustment=True,
    ),
    "service_unavailable": _template(
        "Service Unavailable",
        "A health check is down (critical after its retries) for 2 minutes.",
        "critical",
        {
            "type": "threshold",
            "metric": "health.up",
            "aggregation": "avg",
            "operator": "less_than",
            "value": 0.5,
            "duration_minutes": 2,
            "group_by": ["check"],
        },
        weekend_escalation=True,
    ),
    "heartbeat_missing": _template(
        "Heartbeat Missing",
        "A heartbeat check's pings stopped (past its period and grace).",
        "high",
        {
            "type": "threshold",
            "metric": "health.up",
            "aggregation": "min",
            "operator": "less_than",
            "value": 1,
            "window_minutes": 10,
            "filters": {"check_type": "heartbeat"},
            "group_by": ["check"],
        },
    ),
    "payment_failures": _template(
        "Payment Failures",
        "More than 10 % of payment requests fail (5xx) over 15 minutes.",
        "critical",
        {
            "type": "threshold",
            "metric": "api.error_rate",
            "aggregation": "avg",
            "operator": "greater_than",
            "value": 0.10,
            "window_minutes": 15,
            "min_count": 3,
            "filters": {"service": "payments"},
        },
        weekend_escalation=True,
        service_name="payments",
    ),
    "photo_upload_latency": _template(
        "Photo Upload Latency",
        "Photo upload p95 above 5 s over 10 minutes, for 5 minutes.",
        "high",
        {
            "type": "threshold",
            "metric": "api.latency_ms",
            "aggregation": "p95",
            "operator": "greater_than",
            "value": 5000,
            "window_minutes": 10,
            "duration_minutes": 5,
            "min_count": 5,
            "filters": {"service": "photos"},
        },
        weekend_escalation=True,
        wedding_season_adjustment=True,
        service_name="photos",
    ),
    "form_submission_success": _template(
        "Form Submission Success",
        "Form submission success below 99 % (more than 1 % fail with 5xx) for 10 minutes.",
        "high",
        {
            "type": "threshold",
            "metric": "api.error_rate",
            "aggregation": "avg",
            "operator": "greater_than",
            "value": 0.01,
            "window_minutes": 15,
            "duration_minutes": 10,
            "min_count": 5,
            "filters": {"service": "forms"},
        },
        weekend_escalation=True,
        service_name="forms",
    ),
    "performance_regression": _template(
        "Performance Regression",
        "An endpoint's p95 over the last hour is 1.5x the same hour of past weeks, for 10 "
        "minutes (the Performance page's regression flag).",
        "medium",
        {
            "type": "threshold",
            "metric": "api.p95_regression",
            "aggregation": "max",
            "operator": "greater_than_or_equal",
            "value": 1.5,
            "duration_minutes": 10,
            "group_by": ["endpoint"],
        },
    ),
}
