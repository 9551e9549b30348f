"""Pages and users limited to organisations (monitoring_core.org_scope) in the UI.

A limited user's navigation (app.py `ORGANISATION_PAGES`) holds only the pages whose every read
goes through `ui.data.read`, which runs their reads as the `monitoring_scoped` role under
row-level security. `require_limited_user` opens a page meant only for them (their business
figures); `refuse_limited_user` guards the reads that go around `ui.data.read` to platform-wide
aggregates (the Business page's rollup), so no page can show those to them even if it runs.
"""

from __future__ import annotations

import streamlit as st

from monitoring_core.accounts import User
from monitoring_core.enums import Role
from ui import auth, fmt

__all__ = ["limited_to", "refuse_limited_user", "require_limited_user"]


def limited_to() -> tuple[str, ...] | None:
    """The signed-in user's organisations, or None for a user who sees every organisation."""
    user = auth.current_user()
    return None if user is None else user.organization_ids


def require_limited_user(role: Role) -> User:
    """`auth.require_role(role)` for a page that shows only a limited user's organisations;
    any other user is sent to the platform-wide page and the page stops."""
    user = auth.require_role(role, organisations=True)
    if user.organization_ids is None:
        st.info(
            "This page shows the business figures of a user limited to organisations. "
            "Every organisation's figures are on the Business page.",
            icon=":material/info:",
        )
        st.page_link("pages/business.py", label="Open Business", icon=":material/insights:")
        st.stop()
    return user


def refuse_limited_user(what: str) -> None:
    """Stop the page with a refusal when the signed-in user is limited to organisations:
    `what` reads every organisation's data at once, which row-level security cannot narrow."""
    orgs = limited_to()
    if orgs is None:
        return
    st.error(
        f"{what} shows every organisation; your account sees only "
        f"{fmt.md_escape(', '.join(orgs))}. Use the pages in the menu.",
        icon=":material/lock:",
    )
    st.stop()
