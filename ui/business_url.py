"""Selections of the Business and Funnels pages kept in the query string (`st.query_params`),
so a link opens the same funnel, steps, mode, filter and chart choices.

`from_url(key, param, default)` runs before the widget `key` is drawn: on the first run of the
page it seeds the widget's value from the URL (values the page does not offer are dropped, the
default taken instead); `to_url(name=value, …)` writes the current choices back (an empty
choice removes its parameter). The time range is the sidebar's own (ui.widgets).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

__all__ = ["from_url", "to_url"]


def from_url(
    key: str,
    param: str,
    default: Any,
    *,
    parse: Callable[[str], Any] = str,
    many: bool = False,
    among: Sequence[Any] | None = None,
) -> None:
    """Seed `st.session_state[key]` from the URL parameter `param` (once per visit)."""
    if key in st.session_state:
        return
    raw = st.query_params.get(param)
    value = default
    if raw is not None:
        try:
            if many:
                parsed = [parse(v) for v in raw.split(",") if v]
                value = [v for v in parsed if among is None or v in among]
            else:
                one = parse(raw)
                value = one if among is None or one in among else default
        except ValueError:
            value = default
    st.session_state[key] = value


def to_url(**choices: Any) -> None:
    """Write the choices to the query string (`is_` stands for `is`); None or [] removes one."""
    for name, value in choices.items():
        param = name.rstrip("_")
        if value is None or value == [] or value == ():
            if param in st.query_params:
                del st.query_params[param]
            continue
        text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        if st.query_params.get(param) != text:
            st.query_params[param] = text
