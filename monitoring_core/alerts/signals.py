"""The catalogue of alertable signals: names, units, dimensions and aggregations (CONTRACT §5).

A rule's `condition_config.metric` names a signal. Families and where they are read from:
- `api`: `api.latency_ms`, `api.error_rate`, `api.requests` from API timings (dimensions
  service — the path's first segment after /api —, endpoint, method, status_class);
- `vitals`: `web_vitals.<NAME>` (the value; p75 as Google reports it) and
  `web_vitals.<NAME>.poor_share` (0–1) from Web Vitals (page_route, device_type);
- `errors`: `errors.events`, `errors.new_groups`, `errors.regressions` from error events and
  the groups' history (group_id, service, level, severity, …);
- `spans`: `spans.latency_ms`, `spans.error_rate`, `spans.count` from stored spans (service,
  operation, kind, status); `logs`: `logs.lines`, matching log records (service, severity,
  body_contains) — see `signals_otel`;
- `regression`: `api.p95_regression`, an endpoint's p95 over the last hour divided by the
  same hour of past weeks (the Performance page's flag, `performance.queries.regression_flags`);
- `metric`: health checks (`health.up`, `health.uptime`, `health.response_time_ms`, read from
  the points every check run writes), business KPIs (`business.<kpi>`, written by the
  business rollup) and every stored metric name, as before.

Event families (`api`, `vitals`, `errors`, `spans`, `logs`) and `regression` are *windowed*: the reader computes
the rule's aggregation over its whole window (exact percentiles and request-weighted rates)
and stamps it with the window's end, so the engine looks at the newest value only. Pure, but
`known_names` and `problems` read the stored metric names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, union

from monitoring_core.business.kpi_metrics import ALERTABLE_KPIS, KPI_METRIC_PREFIX
from monitoring_core.errors.queries import DIMENSIONS as ERROR_DIMENSIONS
from monitoring_core.schema import metric_catalog, metric_series

__all__ = [
    "BUILT_IN",
    "METRIC_AGGREGATIONS",
    "VITALS",
    "Signal",
    "catalogue",
    "counts_zero",
    "is_windowed",
    "known_names",
    "problems",
    "service_of",
    "signal",
    "status_class",
]

METRIC_AGGREGATIONS = ("avg", "min", "max", "sum", "count", "p50", "p95", "p99")
_LATENCY_AGGS = ("p50", "p75", "p90", "p95", "p99", "avg", "min", "max")
API_DIMENSIONS = ("service", "endpoint", "method", "status_class")
VITAL_DIMENSIONS = ("page_route", "device_type")
HEALTH_DIMENSIONS = ("check", "service", "check_type", "wedding_critical")
VITALS = {"LCP": "ms", "INP": "ms", "CLS": "score", "FCP": "ms", "TTFB": "ms"}
WINDOWED_FAMILIES = frozenset({"api", "vitals", "errors", "regression", "spans", "logs"})
SPAN_DIMENSIONS = ("service", "operation", "kind", "status")  # signals_otel.SPAN_DIMENSIONS
LOG_DIMENSIONS = ("service", "severity", "body_contains")
SHOWN_IN_422 = 60  # names listed in the refusal of an unknown signal


@dataclass(frozen=True)
class Signal:
    name: str
    family: str  # api | vitals | errors | regression | spans | logs | metric
    unit: str
    dimensions: tuple[str, ...]  # () for a stored metric: its own labels, not known up front
    aggregations: tuple[str, ...]
    description: str
    metric: str | None = None  # family metric: the stored metric name it reads

    @property
    def windowed(self) -> bool:
        return self.family in WINDOWED_FAMILIES


def _s(
    name: str,
    family: str,
    unit: str,
    dims: Sequence[str],
    aggs: Sequence[str],
    desc: str,
    metric: str | None = None,
) -> Signal:
    return Signal(name, family, unit, tuple(dims), tuple(aggs), desc, metric)


_ERROR_DIMS = tuple(ERROR_DIMENSIONS)
_GROUP_DIMS = ("service", "level", "severity", "error_type")


def _built_in() -> dict[str, Signal]:
    out = [
        _s(
            "api.latency_ms",
            "api",
            "ms",
            API_DIMENSIONS,
            _LATENCY_AGGS,
            "API response time over the window",
        ),
        _s(
            "api.error_rate",
            "api",
            "ratio 0–1",
            API_DIMENSIONS,
            ("avg",),
            "Share of API responses with status >= 500 over the window",
        ),
        _s(
            "api.requests",
            "api",
            "requests",
            API_DIMENSIONS,
            ("count",),
            "API requests in the window",
        ),
        _s(
            "api.p95_regression",
            "regression",
            "ratio",
            ("service", "endpoint", "method"),
            ("max",),
            "An endpoint's p95 over the last hour / the same hour of past weeks "
            "(the Performance page's regression flag; needs 20 requests on both sides)",
        ),
        _s(
            "errors.events",
            "errors",
            "events",
            _ERROR_DIMS,
            ("count",),
            "Error events in the window",
        ),
        _s(
            "errors.new_groups",
            "errors",
            "groups",
            _GROUP_DIMS,
            ("count",),
            "Error groups seen for the first time in the window",
        ),
        _s(
            "errors.regressions",
            "errors",
            "groups",
            _GROUP_DIMS,
            ("count",),
            "Resolved error groups that came back in the window",
        ),
        _s(
            "health.up",
            "metric",
            "1 up / 0 down",
            HEALTH_DIMENSIONS,
            ("avg", "min", "max"),
            "A check's state after its retries (0 when critical)",
            "health_check_up",
        ),
        _s(
            "health.uptime",
            "metric",
            "ratio 0–1",
            HEALTH_DIMENSIONS,
            ("avg", "min"),
            "Share of a check's runs that succeeded",
            "health_check_success",
        ),
        _s(
            "health.response_time_ms",
            "metric",
            "ms",
            HEALTH_DIMENSIONS,
            ("avg", "max", "p50", "p95", "p99"),
            "A check's response time",
            "health_check_response_time_ms",
        ),
    ]
    out += [
        _s(
            "spans.latency_ms",
            "spans",
            "ms",
            SPAN_DIMENSIONS,
            _LATENCY_AGGS,
            "Span duration over the window (OTLP spans and Sentry transactions)",
        ),
        _s(
            "spans.error_rate",
            "spans",
            "ratio 0–1",
            SPAN_DIMENSIONS,
            ("avg",),
            "Share of spans with error status over the window",
        ),
        _s("spans.count", "spans", "spans", SPAN_DIMENSIONS, ("count",), "Spans in the window"),
        _s(
            "logs.lines",
            "logs",
            "records",
            LOG_DIMENSIONS,
            ("count",),
            "Log records in the window; filter body_contains=TEXT counts the records whose "
            "body holds TEXT (case-insensitive), severity=ERROR one severity range",
        ),
    ]
    for vital, unit in VITALS.items():
        out.append(
            _s(
                f"web_vitals.{vital}",
                "vitals",
                unit,
                VITAL_DIMENSIONS,
                _LATENCY_AGGS,
                f"{vital} as browsers report it (p75 is Google's measure)",
            )
        )
        out.append(
            _s(
                f"web_vitals.{vital}.poor_share",
                "vitals",
                "ratio 0–1",
                VITAL_DIMENSIONS,
                ("avg",),
                f"Share of {vital} reports rated poor",
            )
        )
    for kpi in ALERTABLE_KPIS:
        name = KPI_METRIC_PREFIX + kpi
        out.append(
            _s(
                name,
                "metric",
                "",
                (),
                METRIC_AGGREGATIONS,
                f"Business KPI {kpi}, today so far (written by the business rollup)",
                name,
            )
        )
    return {s.name: s for s in out}


BUILT_IN: dict[str, Signal] = _built_in()


def signal(name: str | None) -> Signal | None:
    """The built-in signal of that name (None for a stored metric or no name)."""
    return BUILT_IN.get(name or "")


def is_windowed(name: str | None) -> bool:
    found = signal(name)
    return found is not None and found.windowed


def counts_zero(name: str | None) -> bool:
    """Counting signals read an empty window as 0, not as missing data."""
    found = signal(name)
    return found is not None and found.windowed and found.aggregations == ("count",)


def service_of(endpoint: str) -> str:
    """`/api/payments/charge` -> `payments`: the first path segment after `api` and a version."""
    parts = [p for p in endpoint.split("/") if p]
    while parts and (parts[0] == "api" or (parts[0][:1] == "v" and parts[0][1:].isdigit())):
        parts = parts[1:]
    return parts[0] if parts else ""


def status_class(status: int) -> str:
    return f"{status // 100}xx"


def stored_metric_names(conn: Connection) -> list[str]:
    """Every metric name in the catalog or with a stored series."""
    query = union(select(metric_catalog.c.name), select(metric_series.c.name).distinct())
    return sorted(conn.execute(query).scalars())


def known_names(conn: Connection) -> list[str]:
    """What a rule may name: the built-in signals, then the stored metrics."""
    stored = [n for n in stored_metric_names(conn) if n not in BUILT_IN]
    return [*BUILT_IN, *stored]


def _problem(field: str, message: str) -> dict[str, str]:
    return {"field": f"condition_config.{field}", "message": message}


def _unknown(name: str, known: list[str]) -> dict[str, str]:
    shown = ", ".join(known[:SHOWN_IN_422]) + (" …" if len(known) > SHOWN_IN_422 else "")
    return _problem("metric", f"unknown signal {name!r}; known signals: {shown}")


def problems(conn: Connection, cfg: Mapping[str, Any]) -> list[dict[str, str]]:
    """What is wrong with the signal a condition names (empty when it is fine): an unknown
    name (listing the known ones), or an aggregation or dimension the signal does not have."""
    name = cfg.get("metric")
    if (
        cfg.get("type") in ("pattern", "composite", "external")
        or not isinstance(name, str)
        or not name
    ):
        return []
    found = signal(name)
    if found is None:
        known = known_names(conn)
        if name not in known:
            return [_unknown(name, known)]
        if cfg.get("aggregation", "avg") not in METRIC_AGGREGATIONS:
            return [
                _problem("aggregation", f"a stored metric offers {', '.join(METRIC_AGGREGATIONS)}")
            ]
        return []
    out = []
    aggregation = cfg.get("aggregation", "avg")
    if cfg.get("type", "threshold") in ("threshold", "rate_of_change", "anomaly") and (
        aggregation not in found.aggregations
    ):
        out.append(_problem("aggregation", f"{name} offers {', '.join(found.aggregations)}"))
    if found.dimensions:
        asked = set(cfg.get("group_by") or []) | set(cfg.get("filters") or cfg.get("filter") or {})
        if unknown := sorted(str(d) for d in asked - set(found.dimensions)):
            out.append(
                _problem(
                    "group_by",
                    f"{name} has no dimension {', '.join(unknown)}; "
                    f"it has {', '.join(found.dimensions)}",
                )
            )
    return out


def catalogue(conn: Connection) -> list[dict[str, Any]]:
    """Every signal for the rule editor and the API: name, family, unit, dimensions, aggs."""
    rows = [
        {
            "name": s.name,
            "family": s.family,
            "unit": s.unit,
            "dimensions": list(s.dimensions),
            "aggregations": list(s.aggregations),
            "description": s.description,
        }
        for s in BUILT_IN.values()
    ]
    stored = [n for n in stored_metric_names(conn) if n not in BUILT_IN]
    dims = _metric_dimensions(conn, stored)
    rows += [
        {
            "name": n,
            "family": "metric",
            "unit": "",
            "dimensions": dims.get(n, []),
            "aggregations": list(METRIC_AGGREGATIONS),
            "description": "stored metric",
        }
        for n in stored
    ]
    return rows


def _metric_dimensions(conn: Connection, names: list[str]) -> dict[str, list[str]]:
    """The label names each stored metric's series carry."""
    keys = func.jsonb_object_keys(metric_series.c.dimensions).label("k")
    query = (
        select(metric_series.c.name, keys)
        .where(metric_series.c.name.in_(names))
        .distinct()
        .order_by(metric_series.c.name, "k")
    )
    out: dict[str, list[str]] = {}
    for name, key in conn.execute(query):
        out.setdefault(name, []).append(key)
    return out
