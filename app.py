"""The UI entry point (`streamlit run app.py`): sign-in, the sidebar, and the page list.

To add a page, add one `(file, title, icon)` line to its section in `PAGES`.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import streamlit as st

from ui import auth, banners, widgets

# One line per page; sections show in this order, empty ones are left out of the menu, and
# the first page is the landing page.
PAGES: dict[str, list[tuple[str, str, str]]] = {
    "Monitoring": [
        ("pages/overview.py", "Overview", ":material/dashboard:"),
        ("pages/performance.py", "Performance", ":material/speed:"),
        ("pages/errors.py", "Errors", ":material/bug_report:"),
        ("pages/traces.py", "Traces", ":material/timeline:"),
        ("pages/logs.py", "Logs", ":material/receipt_long:"),
        ("pages/health.py", "Health", ":material/monitor_heart:"),
        ("pages/resources.py", "Resources", ":material/memory:"),
        ("pages/metrics.py", "Metrics", ":material/query_stats:"),
    ],
    "Response": [
        ("pages/alerts.py", "Alerts", ":material/notifications_active:"),
        ("pages/incidents.py", "Incidents", ":material/emergency:"),
    ],
    "Business": [
        ("pages/business.py", "Business", ":material/insights:"),
        ("pages/funnels.py", "Funnels", ":material/filter_alt:"),
    ],
    "Administration": [
        ("pages/settings.py", "Settings", ":material/settings:"),
        ("pages/admin.py", "Admin", ":material/admin_panel_settings:"),
    ],
}


def _page(section: str, path: str, title: str, icon: str, *, default: bool) -> st.Page:
    # The URL is `<section>-<file>` (e.g. /monitoring-performance), never the file's bare name:
    # until a server process has run st.navigation once, Streamlit treats `pages/` as an
    # old-style pages directory and would run pages/performance.py for /performance directly,
    # skipping this script and so the sign-in. A URL it does not know runs this script.
    url_path = f"{section.lower()}-{Path(path).stem.replace('_', '-')}"
    return st.Page(path, title=title, icon=icon, url_path=url_path, default=default)


def _navigation() -> dict[str, list[st.Page]]:
    sections: dict[str, list[st.Page]] = {}
    for section, pages in PAGES.items():
        for path, title, icon in pages:
            page = _page(section, path, title, icon, default=not sections)
            sections.setdefault(section, []).append(page)
    return sections


RETURN_KEY = "auth_return_to"  # the page and query a signed-out visitor asked for


def _requested() -> tuple[str, dict[str, str]]:
    """The URL path (without slashes) and query parameters of this run's browser URL."""
    path = urlsplit(st.context.url or "").path.strip("/") if st.context.url else ""
    return path, {name: st.query_params[name] for name in st.query_params}


def _return_after_sign_in(sections: dict[str, list[st.Page]]) -> None:
    """A link opened while signed out (a notification's `/response-alerts?instance=N`) opens
    what it names once the visitor has signed in, query string included."""
    path, params = st.session_state.pop(RETURN_KEY, ("", {}))
    if not path and not params:
        return
    pages = {p.url_path: p for items in sections.values() for p in items}
    target = pages.get(path)
    if target is not None:
        st.switch_page(target, query_params=params)
    elif params:  # the landing page, with what the link asked for
        st.query_params.from_dict(params)


def main() -> None:
    st.set_page_config(page_title="Wedding platform monitoring", page_icon="💍", layout="wide")
    user = auth.refresh_user()  # re-read each run: deactivation and role changes apply
    auth.session_cookie()  # set after a sign-in, cleared after a sign-out
    if user is None:
        if RETURN_KEY not in st.session_state:  # the first signed-out run holds the real URL
            st.session_state[RETURN_KEY] = _requested()
        # A navigation holding only the sign-in page: no other page can be opened before it.
        sign_in = st.Page(auth.login_form, title="Sign in", icon=":material/login:")
        st.navigation([sign_in], position="hidden").run()
        return
    sections = _navigation()
    page = st.navigation(sections)
    _return_after_sign_in(sections)
    widgets.time_range_picker()
    widgets.auto_refresh_toggle()
    auth.logout_button()
    widgets.wedding_day_banner()
    banners.watcher_banners()
    page.run()


main()
