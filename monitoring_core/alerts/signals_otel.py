"""The OpenTelemetry families of the signal catalogue, read by `signals_read` like the others.

- `spans`: `spans.latency_ms`, `spans.error_rate`, `spans.count` from stored spans (OTLP and
  Sentry transactions), per `service`, `operation` (the span name), `kind` (server, client,
  internal, producer, consumer, unspecified) and `status` (unset, ok, error);
- `logs`: `logs.lines`, the count of log records, per `service` and `severity` (the OTLP range:
  TRACE, DEBUG, INFO, WARN, ERROR, FATAL) and `body_contains`, a substring a rule filters on
  (case-insensitive, as on the Logs page; found through the block trigram index).

A rule's `body_contains` filter makes its own read (the substring is part of the SQL); rules
with the same substring share it. Pure SQL text and row mapping; no engine logic here.
"""

# SQL here is assembled from this module's constants and signals_read's; every value is a
# bound parameter.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection

from monitoring_core.logs.queries import candidate_blocks

__all__ = [
    "LOG_DIMENSIONS",
    "SPAN_DIMENSIONS",
    "log_params",
    "log_sql",
    "otel_labels",
    "otel_selector",
    "span_sql",
]

SPAN_DIMENSIONS = ("service", "operation", "kind", "status")
LOG_DIMENSIONS = ("service", "severity", "body_contains")
KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
STATUSES = {0: "unset", 1: "ok", 2: "error"}
_SEVERITY = (
    "CASE WHEN x.severity_number >= 21 THEN 'FATAL' WHEN x.severity_number >= 17 THEN 'ERROR'"
    " WHEN x.severity_number >= 13 THEN 'WARN' WHEN x.severity_number >= 9 THEN 'INFO'"
    " WHEN x.severity_number >= 5 THEN 'DEBUG' ELSE 'TRACE' END"
)


def span_sql(ranges: str, in_ranges: str, epoch: str) -> str:
    return f"""
        SELECT x.service, x.name, x.kind, x.status_code, array_agg({epoch}),
               array_agg(x.duration_ms)
        FROM spans x JOIN {ranges} ON {in_ranges}
        GROUP BY 1, 2, 3, 4"""


def log_sql(ranges: str, in_ranges: str, epoch: str, contains: str) -> str:
    """Log records per service and severity range; with a substring, only matching ones
    (the blocks that can hold it first, when it has a trigram)."""
    match = ""
    if contains:
        match = (
            " AND strpos(lower(x.body), lower(%(pat)s)) > 0"
            " AND (%(blocks)s::bigint[] IS NULL OR x.block = ANY(%(blocks)s::bigint[]))"
        )
    return f"""
        SELECT x.service, {_SEVERITY}, array_agg({epoch})
        FROM log_records x JOIN {ranges} ON {in_ranges}{match}
        GROUP BY 1, 2"""


def log_params(
    conn: Connection, contains: str, earliest: datetime, latest: datetime
) -> dict[str, Any]:
    """The substring and the blocks that can hold it (read first: no self-join on a
    distributed table, docs/SCALING.md); None blocks: the needle has no code."""
    if not contains:
        return {}
    blocks = candidate_blocks(conn, contains, start=earliest, end=latest)
    return {"pat": contains, "blocks": blocks}


def otel_labels(family: str, row: Sequence[Any], contains: str) -> tuple[dict[str, str], Any, Any]:
    if family == "spans":
        service, name, kind, status, ts, vs = row
        labels = {
            "service": service,
            "operation": name,
            "kind": KINDS.get(int(kind), str(kind)),
            "status": STATUSES.get(int(status), str(status)),
        }
        return labels, ts, vs
    service, severity, ts = row
    labels = {"service": service, "severity": severity, "body_contains": contains}
    return labels, ts, np.ones(len(ts))


def otel_selector(name: str) -> Any:
    """(labels, values) -> the values the signal aggregates, as `signals_read._selector`."""
    if name == "spans.error_rate":
        return lambda labels, vs: np.full(len(vs), float(labels["status"] == "error"))
    return lambda labels, vs: vs
