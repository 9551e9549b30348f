"""The Health page's Storage section: what the stored history weighs (monitoring_core.storage).

Bytes per sample per table, total size per tier, compaction lag, and the size a year would
take at the current ingest rate. The same figures are in `/metrics`
(`monitoring_storage_*`)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import streamlit as st

from monitoring_core.storage import StorageFigures, storage_figures
from ui import data, fmt

__all__ = ["render", "size"]


def size(value: float | None) -> str:
    """Bytes as people read them: `812 B`, `3.4 MB`, `1.2 GB`."""
    if value is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _rate(per_second: float) -> str:
    return f"{per_second:,.0f}" if per_second >= 100 else f"{per_second:,.2f}"


def _tables(figures: StorageFigures) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "tier": t.tier,
                "table": t.table,
                "size": size(t.bytes),
                "stored": f"{fmt.count(t.samples)} {t.unit}s",
                "bytes per sample": (
                    "—" if t.bytes_per_sample is None else f"{t.bytes_per_sample:,.2f} B/{t.unit}"
                ),
            }
            for t in figures.tables
        ]
    )


def render(now: datetime) -> None:
    """The section: headline figures, size per tier, and every table's bytes per sample."""
    st.subheader("Storage")
    figures = data.read_or_stop(storage_figures, now)
    tiers = figures.tier_bytes()
    cols = st.columns(4)
    cols[0].metric("On disk", size(sum(tiers.values())))
    cols[1].metric(
        "A year at this rate",
        size(figures.year_bytes) if figures.year_bytes else "—",
        help="Every tier at its retention setting (capped at a year), the ingest rate of the "
        "last complete hour and the bytes per sample measured below.",
    )
    cols[2].metric(
        "Compaction lag",
        fmt.duration(figures.chunk_lag_s),
        help="How old the newest compacted metric point is (raw points become chunks once "
        "the rollups have passed them and they are 2 hours old).",
    )
    cols[3].metric(
        "Points per second",
        _rate(figures.metric_points_per_s),
        help=f"Metric points stored per second over the last complete hour; API timings: "
        f"{_rate(figures.api_requests_per_s)} per second.",
    )
    notes = [
        f"{figures.metric_series:,} series and "
        f"{fmt.plural(figures.api_keys, 'endpoint')} active in the last hour",
        f"API timings packed up to {fmt.duration(figures.pack_lag_s)} ago",
    ]
    if figures.unmeasured:
        notes.append(
            "not in the projection until measured: "
            + ", ".join(fmt.md_escape(name) for name in figures.unmeasured)
        )
    st.caption("; ".join(notes) + ".")
    left, right = st.columns([1, 2])
    left.dataframe(
        pd.DataFrame([{"tier": tier, "size": size(n)} for tier, n in tiers.items()]),
        hide_index=True,
        width="stretch",
    )
    right.dataframe(_tables(figures), hide_index=True, width="stretch")
