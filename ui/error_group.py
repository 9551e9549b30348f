"""Drawing one error group's event like Sentry's issue page: the exception chain with its
frames (in-app frames boxed, source lines around the failing one, local variables), the
breadcrumbs, the request, the user, tags and the rest of the context as labelled values.
Every value from an event is user data: shown through `fmt.md_escape`, st.code or tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from monitoring_core.errors import event_view
from ui import fmt, widgets

__all__ = [
    "ago",
    "breadcrumbs_table",
    "exception_chain",
    "key_values",
    "request_section",
    "when",
]

_LANGUAGES = {".py": "python", ".js": "javascript", ".mjs": "javascript", ".ts": "typescript"}
_LANGUAGES |= {".tsx": "tsx", ".jsx": "jsx", ".rb": "ruby", ".go": "go", ".java": "java"}


def when(moment: datetime | None, tz: ZoneInfo, now: datetime) -> str:
    """`today 14:05`, `Tue 2 Jun 14:05` … in the business time zone (fmt.when)."""
    return fmt.when(moment, tz, now)


def ago(moment: datetime | None, now: datetime) -> str:
    """`5 min ago`, `3 h ago`, `2 days ago` (`just now` under a minute)."""
    if moment is None:
        return ""
    seconds = (now - moment).total_seconds()
    if seconds < 60:
        return "just now" if seconds > -60 else "in the future"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min ago"
    if minutes < 48 * 60:
        return f"{minutes // 60} h ago"
    return f"{minutes // (24 * 60)} days ago"


def key_values(rows: Sequence[tuple[str, str]], *, key: str = "Name") -> None:
    """A two-column table of labelled values."""
    if rows:
        widgets.small_table(pd.DataFrame(list(rows), columns=[key, "Value"]))


def _language(filename: str) -> str:
    dot = filename.rfind(".")
    return _LANGUAGES.get(filename[dot:].lower(), "text") if dot >= 0 else "text"


def _frame_title(frame: Mapping[str, Any]) -> str:
    where = str(frame.get("filename") or frame.get("abs_path") or frame.get("module") or "?")
    function = str(frame.get("function") or "?")
    line = frame.get("lineno")
    at = f" line {line}" if line is not None else ""
    return f"{fmt.md_code(function)} in {fmt.md_code(where)}{at}"


def _frame_body(frame: Mapping[str, Any], *, with_vars: bool) -> None:
    lines = event_view.frame_lines(frame)
    if lines:
        width = max((len(str(n)) for n, _, _ in lines if n is not None), default=0)
        text = "\n".join(
            f"{'→' if current else ' '} {str(n).rjust(width) if n is not None else ''}  {code}"
            for n, code, current in lines
        )
        name = str(frame.get("filename") or frame.get("abs_path") or "")
        st.code(text, language=_language(name))
    elif frame.get("context_line"):
        st.code(str(frame["context_line"]).strip(), language="text")
    variables = event_view.frame_vars(frame)
    if variables and with_vars:
        with st.expander(f"Local variables ({len(variables)})"):
            key_values(variables, key="Variable")


def _frames(frames: Sequence[Mapping[str, Any]], *, show_library: bool) -> None:
    """Newest call first; in-app frames boxed, runs of library frames folded together."""
    newest_first = list(reversed(frames))
    if not newest_first:
        st.caption("This event carries no stack frames.")
        return
    any_in_app = any(f.get("in_app") for f in newest_first)
    library: list[Mapping[str, Any]] = []

    def flush() -> None:
        if not library:
            return
        if show_library:
            with st.expander(f"{fmt.plural(len(library), 'library frame')}"):
                for frame in library:
                    st.markdown(_frame_title(frame))
                    _frame_body(frame, with_vars=False)
        else:
            st.caption(f"{fmt.plural(len(library), 'library frame')} not shown")
        library.clear()

    for frame in newest_first:
        if any_in_app and not frame.get("in_app"):
            library.append(frame)
            continue
        flush()
        with st.container(border=True):
            badge = " :blue-badge[In app]" if frame.get("in_app") else ""
            st.markdown(_frame_title(frame) + badge)
            _frame_body(frame, with_vars=True)
    flush()


def exception_chain(event: Mapping[str, Any], *, show_library: bool) -> None:
    """The raised exception first, then each one it was raised while handling."""
    chain = event_view.exception_chain(event)
    for i, exc in enumerate(chain):
        if i:
            st.markdown(
                "**While handling the exception above, this one happened first:**"
                if i == 1
                else "**…which was raised while handling:**"
            )
        st.markdown(f"##### {fmt.md_escape(exc.type)}")
        if exc.value:
            st.text(exc.value)
        _frames(exc.frames, show_library=show_library)


def breadcrumbs_table(
    crumbs: Sequence[event_view.Breadcrumb], tz: ZoneInfo, event_time: datetime
) -> None:
    """Oldest first; the time of day in the business time zone (with the day when it differs
    from the event's)."""
    if not crumbs:
        st.caption("This event carries no breadcrumbs.")
        return
    day = event_time.astimezone(tz).date()
    rows = []
    for crumb in crumbs:
        local = crumb.time.astimezone(tz) if crumb.time else None
        shown = (
            "—"
            if local is None
            else local.strftime("%H:%M:%S.") + f"{local.microsecond // 1000:03d}"
            if local.date() == day
            else f"{local:%a} {local.day} {local:%b %H:%M:%S}"
        )
        rows.append(
            {
                "Time": shown,
                "Category": crumb.category,
                "Level": crumb.level.capitalize(),
                "Message": crumb.message or crumb.data,
                "Data": crumb.data if crumb.message else "",
            }
        )
    widgets.small_table(pd.DataFrame(rows))


def request_section(context: Mapping[str, Any]) -> None:
    request = event_view.request_view(context)
    if request is None:
        st.caption("This event carries no request.")
        return
    line = " ".join(p for p in (request["method"], request["url"]) if p)
    if line:
        st.code(line, language="text")
    if isinstance(request["query"], list) and request["query"]:
        st.markdown("**Query string**")
        key_values(request["query"], key="Parameter")
    elif isinstance(request["query"], str) and request["query"]:
        st.markdown("**Query string**")
        st.code(request["query"], language="text")
    if request["headers"]:
        st.markdown("**Headers** (sensitive ones redacted when received)")
        key_values(request["headers"], key="Header")
    if request["data"]:
        st.markdown("**Body**")
        key_values(request["data"], key="Field")
