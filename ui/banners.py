"""Banners the app shows above every page when the watcher itself cannot be trusted.

- The worker has not been seen for WORKER_DOWN_AFTER (2 min): nothing is evaluated, checked
  or sent, however calm the pages look.
- No notification channel is enabled: every page to a person is skipped, nobody is told.

Warnings, not errors: the page under them still shows true data. A database failure shows
no banner (the page itself says the database is not answering).
"""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from monitoring_core import clock
from monitoring_core.health import watch
from ui import data, fmt

__all__ = ["watcher_banners"]


def watcher_banners(now: datetime | None = None) -> None:
    """The worker-down and no-reachable-channel banners, each shown only when it applies."""
    moment = now or clock.now()
    try:
        last_seen = data.read(watch.worker_last_seen)
        channels = data.read(watch.enabled_channel_count)
    except data.DatabaseProblem:
        return
    if watch.worker_down(last_seen, moment):
        st.warning(_worker_text(last_seen, moment), icon=":material/engineering:")
    if channels == 0:
        st.warning(
            "**No notification channel is enabled**: every alert and incident page is skipped "
            "and nobody is told. An admin can add or enable one in Settings.",
            icon=":material/notifications_off:",
        )


def _worker_text(last_seen: datetime | None, now: datetime) -> str:
    stopped = "alerts are not evaluated, checks do not run and no notification is sent"
    if last_seen is None:
        return f"**No worker has reported yet**: {stopped}."
    minutes = int((now - last_seen).total_seconds() // 60)
    return f"**The worker was last seen {fmt.count(minutes)} min ago**: {stopped}."
