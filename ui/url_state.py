"""Page selections kept in the URL's query string, so a link opens exactly what it names.

A page binds a widget to a query parameter instead of keeping its choice only in the session:

    incident = url_state.select(st.selectbox, "Incident", ids, param="incident",
                                format_func=label)           # ?incident=42
    view = url_state.tabs(["Open", "History"], param="tab")  # ?tab=History (segmented control)
    query = url_state.text("Search", param="q")              # ?q=timeout
    only_mine = url_state.toggle("Only mine", param="mine")  # ?mine=1
    eps = url_state.multi(st.multiselect, "Endpoints", names, param="ep")  # ?ep=a&ep=b

How it behaves:
- The value in the URL wins when the page opens and whenever the URL changes from outside
  (a link, the browser's back/forward buttons); a value that is not valid any more (an id not
  in the list, a misspelt tab) falls back to the default, and the URL is corrected.
- A change in the widget is written back to the URL (Streamlit pushes a history entry, so
  back/forward step through the choices). The default is left out of the URL, so the first
  visit to a page adds no history entry and links stay short.
- `sticky=True` (the time range) keeps the session's value when a page switch drops the
  query string, and writes it into the new page's URL.

`st.tabs` cannot be selected from code in a way that adds history entries, so `tabs()` draws
a segmented control; pages use `if view == "History": ...` instead of `with tab:`.
`link_params()` gives the current page's parameters for an `st.page_link` that must keep them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

__all__ = [
    "current_page",
    "get",
    "get_int",
    "link_params",
    "multi",
    "put",
    "seed",
    "select",
    "tabs",
    "text",
    "toggle",
]

T = TypeVar("T")

_SEEN = "_url_state_seen"  # param -> (page, raw value) as last read or written
_BEHIND = "_url_state_behind"  # param -> (page, raw value) the URL held before our last write
_DEFAULTS = "_url_state_defaults"  # param -> (page, the default it had on the last run)
MAX_ID = 2**63 - 1
BEHIND_S = 3.0  # how long a browser may ask for reruns with the address before our write


def get(param: str) -> str | None:
    """The parameter's value, or None when it is absent or empty."""
    value = st.query_params.get(param)
    return value or None


def get_int(param: str) -> int | None:
    """A positive id from the URL (`?incident=42`), None when absent or not a valid id."""
    raw = get(param) or ""
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) <= MAX_ID else None


def put(param: str, raw: str | None) -> None:
    """Set the parameter (None or "" removes it); unchanged values are not rewritten."""
    _wrote(param, get(param), raw or None)
    if not raw:
        if param in st.query_params:
            del st.query_params[param]
    elif st.query_params.get(param) != raw:
        st.query_params[param] = raw
    _seen()[param] = (current_page(), raw or None)


def link_params(*params: str) -> dict[str, str]:
    """The current values of `params` (those present), for a link that keeps them."""
    return {p: v for p in params if (v := get(p)) is not None}


def _seen() -> dict[str, tuple[str, str | None]]:
    seen: dict[str, tuple[str, str | None]] = st.session_state.setdefault(_SEEN, {})
    return seen


def _wrote(param: str, before: str | None, after: str | None) -> None:
    """Note what the URL said before this run changed `param` (see `seed`)."""
    if before != after:
        behind: dict[str, tuple[str, str | None, float]] = st.session_state.setdefault(_BEHIND, {})
        behind[param] = (current_page(), before, time.monotonic())


def _one_step_behind(param: str, raw: str | None, page: str) -> bool:
    """Whether this run's `raw` is the URL as it was before our last write of `param`, in a
    rerun the browser asked for before it had taken that write in (typing into a box while
    an action's rerun runs: the box's rerun carries the address the browser still shows).
    Back and forward buttons are history navigation and are honoured (`ctx`); a stale
    address would put the page back a step (an incident's detail gone, what was typed with
    it), so the widget keeps its value and the URL is written again. Only within
    BEHIND_S of the write: a link on the page naming that old value later (a tab left and
    opened again from a link) is followed."""
    ctx = get_script_run_ctx()
    if ctx is not None and ctx.is_history_navigation:
        return False
    behind: dict[str, tuple[str, str | None, float]] = st.session_state.get(_BEHIND, {})
    found = behind.get(param)
    return found is not None and found[:2] == (page, raw) and time.monotonic() - found[2] < BEHIND_S


def current_page() -> str:
    """The page being drawn (its script hash; "" outside a session)."""
    ctx = get_script_run_ctx()
    return ctx.page_script_hash if ctx is not None else ""


def seed(
    param: str,
    key: str,
    parse: Callable[[str], T | None],
    default: T,
    *,
    sticky: bool,
    raw: str | None = None,
) -> None:
    """Before the widget `key` is drawn: take the URL's value when the URL changed from outside
    (or on first draw), else keep what the widget holds. `raw`: the value as read by the
    caller (a repeated parameter's values joined), instead of `get(param)`."""
    state = st.session_state
    raw = get(param) if raw is None else raw or None
    page = current_page()
    last_page, last_raw = _seen().get(param, (None, None))
    url_changed = raw != last_raw
    if sticky and raw is None and last_page != page:
        url_changed = False  # a page switch dropped the query string: keep the session's value
    if url_changed and last_page == page and _one_step_behind(param, raw, page):
        url_changed = False
    if key in state and not url_changed:
        return
    parsed = parse(raw) if raw is not None else None
    state[key] = default if parsed is None else parsed


def select(
    factory: Callable[..., Any],
    label: str,
    options: Sequence[T],
    *,
    param: str,
    default: T | None = None,
    to_url: Callable[[T], str] = str,
    sticky: bool = False,
    **kwargs: Any,
) -> T | None:
    """A choice among `options` (st.selectbox, st.radio, st.segmented_control, st.pills) bound
    to `?param=`; `to_url` names an option in the URL (default `str`: ids, labels). Returns the
    chosen option, `default` (the first option when not given) when none is asked for."""
    options = list(options)
    by_raw = {to_url(o): o for o in options}
    fallback = default if default in options else (options[0] if options else None)
    key = kwargs.pop("key", f"url_{param}")
    # A value the widget holds but the options lost (a resolved incident): back to the default.
    if key in st.session_state and st.session_state[key] not in options:
        st.session_state[key] = fallback
    _follow_default(param, key, fallback)
    seed(param, key, by_raw.get, fallback, sticky=sticky)
    value = factory(label, options, key=key, **kwargs)
    chosen = value if value in options else fallback
    # The default is left out of the URL, unless the URL already names it (a link to the
    # first incident keeps saying which incident it is).
    named = by_raw.get(get(param) or "")
    put(
        param,
        None if chosen is None or (chosen == fallback and named != chosen) else to_url(chosen),
    )
    return chosen


def _follow_default(param: str, key: str, fallback: Any) -> None:
    """A URL without `param` means its default, and the default may depend on the rest of the
    URL (Incidents: the Detail tab when `?incident=` names one, else Active). When it changed
    since the last run and the widget still holds the old default (nobody picked a value),
    the widget takes the new one: back from `?incident=4&tab=Active` to `?incident=4`, or a
    link naming only the incident, opens the Detail tab rather than staying on Active."""
    defaults: dict[str, tuple[str, Any]] = st.session_state.setdefault(_DEFAULTS, {})
    page, before = current_page(), defaults.get(param)
    if (
        get(param) is None
        and before is not None
        and before[0] == page
        and before[1] != fallback
        and st.session_state.get(key, fallback) == before[1]
    ):
        st.session_state[key] = fallback
    defaults[param] = (page, fallback)


def multi(
    factory: Callable[..., Any],
    label: str,
    options: Sequence[T],
    *,
    param: str,
    default: Sequence[T] = (),
    to_url: Callable[[T], str] = str,
    **kwargs: Any,
) -> list[T]:
    """Several choices among `options` (st.multiselect, st.pills with selection_mode="multi")
    bound to a repeated `?param=a&param=b`; `default` when the URL names none. Values no longer
    among the options are dropped (from the widget and the URL)."""
    options = list(options)
    by_raw = {to_url(o): o for o in options}
    fallback = [o for o in default if o in options]
    key = kwargs.pop("key", f"url_{param}")
    if key in st.session_state:
        held = st.session_state[key]
        kept = [v for v in held if v in options] if isinstance(held, list) else fallback
        if kept != held:
            st.session_state[key] = kept
    named = [by_raw[r] for r in st.query_params.get_all(param) if r in by_raw]

    def parse(_joined: str) -> list[T] | None:
        return named or None

    seed(param, key, parse, fallback, sticky=False, raw=_joined(st.query_params.get_all(param)))
    value = factory(label, options, key=key, **kwargs)
    chosen = [v for v in (value or []) if v in options]
    raws = [to_url(v) for v in chosen]
    joined = _joined(raws) if chosen and not (chosen == fallback and named != chosen) else None
    _wrote(param, _joined(st.query_params.get_all(param)) or None, joined)
    if not chosen or (chosen == fallback and named != chosen):
        if param in st.query_params:
            del st.query_params[param]
        _seen()[param] = (current_page(), None)
    else:
        if st.query_params.get_all(param) != raws:
            st.query_params[param] = raws
        _seen()[param] = (current_page(), _joined(raws))
    return chosen


def _joined(raws: Sequence[str]) -> str:
    return "\n".join(raws)


def tabs(
    labels: Sequence[str], *, param: str = "tab", label: str = "View", default: str | None = None
) -> str:
    """A row of tabs (a segmented control) bound to `?tab=`; returns the open tab's label
    (`default`, else the first, when the URL names none)."""
    value = select(
        st.segmented_control,
        label,
        labels,
        param=param,
        default=default,
        label_visibility="collapsed",
        required=True,
    )
    return value if value is not None else labels[0]


def text(label: str, *, param: str, max_chars: int = 200, **kwargs: Any) -> str:
    """A text input bound to `?param=` (empty when absent)."""
    key = kwargs.pop("key", f"url_{param}")
    seed(param, key, lambda raw: raw[:max_chars], "", sticky=False)
    value = st.text_input(label, key=key, max_chars=max_chars, **kwargs) or ""
    put(param, value.strip() or None)
    return value.strip()


def toggle(
    label: str, *, param: str, factory: Callable[..., Any] = st.toggle, **kwargs: Any
) -> bool:
    """A toggle (or st.checkbox) bound to `?param=1`; off when absent."""
    key = kwargs.pop("key", f"url_{param}")
    seed(param, key, lambda raw: raw in ("1", "true", "yes"), False, sticky=False)
    value = bool(factory(label, key=key, **kwargs))
    put(param, "1" if value else None)
    return value
