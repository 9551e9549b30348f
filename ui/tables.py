"""A table with its CSV download button (every BI table exports; viewers included)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import streamlit as st

from monitoring_core.business.export import to_csv
from ui import widgets

__all__ = ["table_with_csv"]


def table_with_csv(
    rows: Sequence[Mapping[str, Any]],
    name: str,
    *,
    columns: Sequence[str] | None = None,
    column_config: Mapping[str, Any] | None = None,
) -> None:
    """`rows` as a dataframe, and a button downloading exactly those rows as `<name>.csv`."""
    frame = pd.DataFrame(list(rows), columns=list(columns) if columns else None)
    st.dataframe(
        frame,
        hide_index=True,
        height=widgets.table_height(len(frame), max_rows=15),
        column_config=dict(column_config or {}),
    )
    st.download_button(
        "Download CSV",
        to_csv(rows, columns),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=f"csv_{name}",
        icon=":material/download:",
    )
