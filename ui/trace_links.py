"""Links between errors, traces and logs by trace id (Errors, Traces and Logs pages)."""

from __future__ import annotations

import re
from datetime import datetime

import streamlit as st

__all__ = ["TRACE_ID", "error_links", "logs_of_trace", "parse_trace_id", "trace_link"]

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def parse_trace_id(value: str | None) -> str | None:
    """A trace id as stored (32 lowercase hex digits; dashes dropped), or None."""
    if not value:
        return None
    cleaned = value.strip().lower().replace("-", "")
    return cleaned if TRACE_ID.match(cleaned) else None


def trace_link(trace_id: str, *, label: str = "Open this trace") -> None:
    st.page_link(
        "pages/traces.py",
        label=label,
        icon=":material/timeline:",
        query_params={"trace_id": trace_id},
    )


def logs_of_trace(trace_id: str) -> None:
    st.page_link(
        "pages/logs.py",
        label="Logs of this trace",
        icon=":material/receipt_long:",
        query_params={"trace_id": trace_id},
    )


def error_links(trace_id: str | None, moment: datetime, service: str | None) -> None:
    """Under an error event: its trace and that trace's logs (when it has a trace id), and
    the logs of its service around its time."""
    columns = st.columns(3)
    parsed = parse_trace_id(trace_id)
    if parsed:
        with columns[0]:
            trace_link(parsed)
        with columns[1]:
            logs_of_trace(parsed)
    around = {"around": moment.isoformat(), **({"service": service} if service else {})}
    with columns[2]:
        st.page_link(
            "pages/logs.py",
            label="Logs around this error",
            icon=":material/manage_search:",
            query_params=around,
        )
