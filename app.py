"""The UI entry point (`python -m ui.serve`, which is `streamlit run app.py`): sign-in, the
sidebar, and the page list.

To add a page, add one `(file, title, icon)` line to its section in `PAGES`.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui import auth, banners, preload, widgets

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
        ("pages/dashboards.py", "Dashboards", ":material/dashboard:"),
    ],
    "Response": [
        ("pages/alerts.py", "Alerts", ":material/notifications_active:"),
        ("pages/alert.py", "Alert", ":material/notification_important:"),
        ("pages/incidents.py", "Incidents", ":material/emergency:"),
    ],
    "Business": [
        ("pages/business.py", "Business", ":material/insights:"),
        ("pages/funnels.py", "Funnels", ":material/filter_alt:"),
        ("pages/reports.py", "Reports", ":material/summarize:"),
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


# All a user limited to organisations may open: the pages whose every read goes through the
# database's row-level security for their organisations (monitoring_core.org_scope, ui.data).
# Their business figures are computed from their own events (the Business page's rollup adds
# up every organisation and refuses them, ui.organisations).
ORGANISATION_PAGES: dict[str, list[tuple[str, str, str]]] = {
    "Monitoring": [("pages/errors.py", "Errors", ":material/bug_report:")],
    "Response": [("pages/incidents.py", "Incidents", ":material/emergency:")],
    "Business": [("pages/organisation.py", "Business", ":material/insights:")],
}


def _navigation(
    listed: dict[str, list[tuple[str, str, str]]] = PAGES,
) -> dict[str, list[st.Page]]:
    sections: dict[str, list[st.Page]] = {}
    for section, pages in listed.items():
        for path, title, icon in pages:
            page = _page(section, path, title, icon, default=not sections)
            sections.setdefault(section, []).append(page)
    return sections


def _signed_out_navigation(sections: dict[str, list[st.Page]]) -> list[st.Page]:
    """Only the sign-in form, under every page's URL too: a link opened while signed out (a
    notification's `/response-alert?instance=N`) keeps its address and query string while the
    form is shown, and opens what it names once the visitor has signed in (Streamlit knows a
    page by its URL path, so the real page takes over on the next run)."""
    sign_in = st.Page(auth.login_form, title="Sign in", icon=":material/login:", default=True)
    stand_ins = [
        st.Page(auth.login_form, title="Sign in", url_path=page.url_path, visibility="hidden")
        for pages in sections.values()
        for page in pages
        if page.url_path  # the landing page ("") is the sign-in page's own address
    ]
    return [sign_in, *stand_ins]


def main() -> None:
    st.set_page_config(page_title="Wedding platform monitoring", page_icon="💍", layout="wide")
    user = auth.refresh_user()  # re-read each run: deactivation and role changes apply
    auth.session_cookie()  # set after a sign-in, cleared after a sign-out
    if user is None:
        # Only the sign-in form, whatever the address: no page can be opened before it.
        st.navigation(_signed_out_navigation(_navigation()), position="hidden").run()
        preload.prefetch()  # while the visitor types: the chunks the pages will need
        return
    if user.organization_ids is not None:  # limited to organisations: their pages only
        page = st.navigation(_navigation(ORGANISATION_PAGES))
        widgets.time_range_picker()
        auth.logout_button()
        st.sidebar.caption("Showing " + ", ".join(user.organization_ids))
        preload.prefetch(st.sidebar)
        page.run()
        return
    # Every page listed: collapsed ("View 7 more") the Business and Administration pages hid.
    page = st.navigation(_navigation(), expanded=True)
    widgets.close_sidebar_after_navigation(page.url_path)
    widgets.time_range_picker()
    widgets.auto_refresh_toggle()
    auth.logout_button()
    widgets.wedding_day_banner()
    banners.watcher_banners()
    preload.prefetch(st.sidebar)  # a session that began signed in (a link, a reload)
    page.run()


main()
