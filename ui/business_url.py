"""Selections of the Business and Funnels pages kept in the query string, so a link opens the
same funnel, steps, mode, filter and chart choices; built on `ui.url_state` (the URL wins when
it changes from outside: a link, back/forward; values the page does not offer fall back to the
default).

`from_url(key, param, default)` runs before the widget `key` is drawn; `to_url(name=value, …)`
writes the current choices back (None or an empty list removes a parameter; `is_` stands for
`is`). Lists are comma-separated (`?steps=signup,form_created`). The time range is the
sidebar's own (`?range=`, ui.widgets).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ui import url_state

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
    """Seed `st.session_state[key]` from the URL parameter `param` (on the first draw and
    whenever the URL changed from outside)."""

    def _one(raw: str) -> Any:
        try:
            value = parse(raw)
        except ValueError:
            return None
        return value if among is None or value in among else None

    def _many(raw: str) -> list[Any] | None:
        values = [v for v in (_one(part) for part in raw.split(",") if part) if v is not None]
        return values or None

    url_state.seed(param, key, _many if many else _one, default, sticky=False)


def _raw(value: Any) -> str | None:
    if value is None or value == [] or value == ():
        return None
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def to_url(**choices: Any) -> None:
    """Write the choices to the query string (`is_` stands for `is`)."""
    for name, value in choices.items():
        url_state.put(name.rstrip("_"), _raw(value))
