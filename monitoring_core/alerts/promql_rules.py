"""Alert rules whose condition is a PromQL expression (`{"type": "promql", "expr": …}`), as
Prometheus' alerting rules are: at each evaluation every series the expression returns is
one alert (its key: the series' labels less `__name__`, sorted), firing once it has been
returned for `duration_minutes` (Prometheus' `for:`); a series no longer returned resolves.
`sum(rate(x[5m])) > 10` alerts on the sum; `up == 0` on every target that is down.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Connection

from monitoring_core.alerts.engine import (
    AlertState,
    Check,
    Decision,
    effective_severity,
    transition,
)
from monitoring_core.alerts.rules import Rule
from monitoring_core.alerts.store import state_of
from monitoring_core.prometheus.promql.engine import evaluate as evaluate_promql
from monitoring_core.prometheus.promql.model import NAME, QueryError, Scalar, Vector

__all__ = ["alert_key", "promql_decisions", "promql_series"]


def alert_key(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels) if k != NAME)


def promql_series(
    conn: Connection, expr: str, steps: list[datetime]
) -> dict[str, tuple[dict[str, str], np.ndarray, np.ndarray]]:
    """Per alert key: (labels, value per step, returned per step) of the expression."""
    steps_ms = np.array([round(at.timestamp() * 1000) for at in steps], dtype=np.int64)
    _tree, value = evaluate_promql(conn, expr, steps_ms)
    if isinstance(value, Scalar):
        raise QueryError("an alert rule's expression must return an instant vector, not a scalar")
    if not isinstance(value, Vector):
        raise QueryError("an alert rule's expression must return an instant vector")
    out = {}
    for series in value.merged().series:
        labels = {k: v for k, v in series.labels if k != NAME}
        out[alert_key(labels)] = (labels, series.values, series.present)
    return out


def _check(expr: str, value: float, returned: bool) -> Check:
    if returned:
        return Check(True, value, None, f"{expr} returned {value:g}")
    return Check(False, None, None, f"{expr} no longer returns this series")


def promql_decisions(
    conn: Connection,
    rule: Rule,
    existing: Mapping[str, Mapping[str, Any]],
    now: datetime,
    *,
    tz: ZoneInfo,
) -> Iterator[tuple[str, dict[str, str], Decision, Mapping[str, Any] | None]]:
    """(key, labels, decision, instance row) for every returned series and every instance
    whose series is no longer returned."""
    found = promql_series(conn, rule.condition.expr, [now])
    severity = effective_severity(rule, now, tz)
    for key, (labels, values, present) in found.items():
        if not present[0]:
            continue
        row = existing.get(key)
        check = _check(rule.condition.expr, float(values[0]), True)
        yield key, labels, transition(rule, state_of(row), check, now, severity=severity), row
    for key, row in existing.items():
        if key in found and found[key][2][0]:
            continue
        state: AlertState = state_of(row)
        check = _check(rule.condition.expr, 0.0, False)
        dims = dict(row.get("trigger_dimensions") or {})
        yield key, dims, transition(rule, state, check, now, severity=severity), row
