"""Page actions: one transaction per button, and a message that survives the rerun."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st
from sqlalchemy import Connection, Engine
from streamlit.delta_generator import DeltaGenerator

from ui import data
from ui.fmt import md_escape

__all__ = ["confirmed", "run", "run_flow", "show_flash"]


def run(
    flash: str,
    work: Callable[[Connection], Any],
    *,
    done: str | Callable[[Any], str],
    refused: tuple[type[Exception], ...],
    failed: str = "",
) -> None:
    """Run `work` in one transaction, leave what happened under `flash` (the first line of a
    refusal, after `failed`; else `done`, or `done(result)`), clear cached reads and rerun."""

    def in_one_transaction(engine: Engine) -> Any:
        with engine.begin() as conn:
            return work(conn)

    run_flow(flash, in_one_transaction, done=done, refused=refused, failed=failed)


def run_flow(
    flash: str,
    flow: Callable[[Engine], Any],
    *,
    done: str | Callable[[Any], str],
    refused: tuple[type[Exception], ...],
    failed: str = "",
) -> None:
    """Like `run`, for a flow that owns its transactions (it calls out over the network, which
    never happens inside one): `flow` gets the engine."""
    try:
        result = flow(data.get_engine())
    except refused as exc:
        # The refusal's text may quote what a user typed: shown, never rendered as markdown.
        reason = md_escape((str(exc).splitlines() or [""])[0])
        st.session_state[flash] = ("error", f"{failed}{reason}")
    else:
        st.session_state[flash] = ("success", done(result) if callable(done) else done)
    st.cache_data.clear()
    st.rerun()


def show_flash(flash: str) -> None:
    """The message an action left before the rerun, once."""
    if message := st.session_state.pop(flash, None):
        getattr(st, message[0])(message[1])


def confirmed(
    label: str,
    question: str,
    *,
    key: str,
    confirm: str | None = None,
    where: DeltaGenerator | None = None,
    icon: str | None = None,
) -> bool:
    """A destructive or outward action behind a second click: `label` opens a small panel
    asking `question` (markdown the caller made safe), and only its `confirm` button (default:
    `label`) answers True. Deleting, revoking and running a runbook step go through this."""
    with (where or st).popover(label, icon=icon):
        st.markdown(question)
        return st.button(confirm or label, key=key, type="primary")
