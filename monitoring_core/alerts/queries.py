"""Read functions for the Alerts and Settings pages (each takes a Connection first)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection

from monitoring_core.alerts.store import list_alert_history, list_rules, rule_to_api

__all__ = ["ACTIVE_GROUPS", "active_counts", "history_frame", "rules_frame", "split_active"]

# How the pages group active alerts: no data is listed apart and never counted as firing or
# pending (it says the data stopped, not that the condition holds).
ACTIVE_GROUPS = ("firing", "pending", "acknowledged", "suppressed", "no_data")


def split_active(alerts: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Active alerts by status, in ACTIVE_GROUPS order, each keeping the given order."""
    groups: dict[str, list[Mapping[str, Any]]] = {g: [] for g in ACTIVE_GROUPS}
    for alert in alerts:
        groups.setdefault(str(alert["status"]), []).append(alert)
    return groups


def active_counts(alerts: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many active alerts of each status, plus `critical_firing`."""
    counts = {group: len(rows) for group, rows in split_active(alerts).items()}
    counts["critical_firing"] = sum(
        a["status"] == "firing" and a["severity"] == "critical" for a in alerts
    )
    return counts


def rules_frame(conn: Connection) -> list[dict[str, Any]]:
    """Every rule (system rules included) in API form."""
    return [rule_to_api(r) for r in list_rules(conn)]


def history_frame(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    status: str | None = None,
    severity: str | None = None,
) -> pd.DataFrame:
    """Alert events in the range, newest first, as a table for the page."""
    rows = list_alert_history(conn, start=start, end=end, status=status, severity=severity)
    columns = [
        "time",
        "alert_name",
        "alert_key",
        "severity_level",
        "from_status",
        "to_status",
        "value",
        "actor",
        "message",
    ]
    return pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
