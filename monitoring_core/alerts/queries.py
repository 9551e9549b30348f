"""Read functions for the Alerts and Settings pages (each takes a Connection first)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection

from monitoring_core.alerts.store import list_alert_history, list_rules, rule_to_api

__all__ = ["history_frame", "rules_frame"]


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
