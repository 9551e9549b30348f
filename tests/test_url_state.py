"""ui.url_state and the shared time range: the URL opens what it names, a change is written
back, a URL changed from outside (a link, back/forward) wins, and invalid values fall back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from streamlit.testing.v1 import AppTest

from monitoring_core.enums import Role

AppFactory = Callable[[Role | None], AppTest]


def _chooser() -> None:
    import streamlit as st

    from ui import url_state

    item = url_state.select(st.selectbox, "Item", [3, 5, 8], param="item", format_func=str)
    tab = url_state.tabs(["Open", "History"])
    query = url_state.text("Search", param="q")
    mine = url_state.toggle("Only mine", param="mine")
    st.write(f"item={item} tab={tab} q={query} mine={mine}")


def _shown(at: AppTest) -> str:
    return str(at.markdown[-1].value)


def test_a_link_opens_what_it_names_and_changes_go_back_to_the_url() -> None:
    at = AppTest.from_function(_chooser, default_timeout=30)
    at.query_params.update({"item": "5", "tab": "History", "q": "timeout", "mine": "1"})
    at.run()
    assert _shown(at) == "item=5 tab=History q=timeout mine=True"

    at.selectbox(key="url_item").set_value(8).run()
    at.button_group(key="url_tab").set_value("Open").run()
    assert _shown(at) == "item=8 tab=Open q=timeout mine=True"
    assert at.query_params["item"] == ["8"] or at.query_params["item"] == "8"
    assert "tab" not in at.query_params  # the default tab is left out of the URL


def test_the_url_changed_from_outside_wins_and_invalid_values_fall_back() -> None:
    at = AppTest.from_function(_chooser, default_timeout=30)
    at.run()
    assert _shown(at) == "item=3 tab=Open q= mine=False"
    assert not dict(at.query_params)  # defaults only: nothing written, no history entry

    at.selectbox(key="url_item").set_value(5).run()
    at.query_params["item"] = "3"  # the browser's back button: the URL names item 3 again
    at.run()
    assert _shown(at) == "item=3 tab=Open q= mine=False"

    at.query_params.update({"item": "999", "tab": "Nope"})  # not in the list
    at.run()
    assert _shown(at) == "item=3 tab=Open q= mine=False"
    assert "item" not in at.query_params and "tab" not in at.query_params


def _detail_when_named() -> None:
    """Incidents' rule: the Detail tab when the URL names an incident, else Active."""
    import streamlit as st

    from ui import url_state

    asked = url_state.get_int("incident")
    tab = url_state.tabs(["Active", "Detail"], default="Active" if asked is None else "Detail")
    st.write(f"incident={asked} tab={tab}")


def test_a_url_without_the_parameter_opens_its_default_as_it_stands_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The list first, then the address names an incident (a link, or back from
    `?incident=4&tab=Active`): the Detail tab, its default now, not Active kept from before."""
    at = AppTest.from_function(_detail_when_named, default_timeout=30)
    at.run()
    assert _shown(at) == "incident=None tab=Active"
    at.query_params["incident"] = "4"
    at.run()
    assert _shown(at) == "incident=4 tab=Detail"
    assert "tab" not in at.query_params  # still the default: nothing written

    at.button_group(key="url_tab").set_value("Active").run()  # a tab picked stays picked
    assert _shown(at) == "incident=4 tab=Active" and at.query_params["tab"] in (
        "Active",
        ["Active"],
    )
    from ui import url_state

    # back (history navigation in a browser; here later than a browser lags behind a write)
    monkeypatch.setattr(url_state, "BEHIND_S", 0.0)
    del at.query_params["tab"]  # the address before the tab was picked
    at.run()
    assert _shown(at) == "incident=4 tab=Detail"
    del at.query_params["incident"]  # back to the list
    at.run()
    assert _shown(at) == "incident=None tab=Active"


@pytest.mark.clock
def test_a_rerun_asked_before_the_browser_took_in_our_write_keeps_the_choice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Typing into a box right after a choice (or an action that pins an item) sends the box's
    rerun with the address the browser still shows, one step behind the server's write: that
    is not a link or the back button (those are history navigation), so the choice stays
    (it used to jump back: the incident detail went, and a note typed for one incident was
    shown, and could be added, under the one before)."""
    at = AppTest.from_function(_chooser, default_timeout=30)
    at.query_params["item"] = "5"
    at.run()
    at.selectbox(key="url_item").set_value(8).run()
    assert at.query_params["item"] in ("8", ["8"])
    at.query_params["item"] = "5"  # the browser had not taken in item=8 yet
    at.text_input(key="url_q").set_value("timeout").run()
    assert _shown(at) == "item=8 tab=Open q=timeout mine=False"
    assert at.query_params["item"] in ("8", ["8"])  # written again

    at.query_params["item"] = "3"  # a link elsewhere in the app naming another item: it wins
    at.run()
    assert _shown(at) == "item=3 tab=Open q=timeout mine=False"

    from ui import url_state

    at.selectbox(key="url_item").set_value(5).run()
    monkeypatch.setattr(url_state, "BEHIND_S", 0.0)  # later than a browser lags
    at.query_params["item"] = "3"  # a link naming the item before: followed
    at.run()
    assert _shown(at) == "item=3 tab=Open q=timeout mine=False"


def test_the_time_range_lives_in_the_url(logged_in_app: AppFactory) -> None:
    at = logged_in_app(Role.VIEWER)
    at.query_params["range"] = "7d"
    at.run()
    assert at.session_state["time_range"] == "7d"

    at.button_group(key="time_range").set_value("30d").run()
    assert _param(at, "range") == "30d"
    at.button_group(key="time_range").set_value("24h").run()
    assert _param(at, "range") == "24h"  # named once another range was in the address

    del at.query_params["range"]  # a page switch drops the query string: the range stays
    at.session_state["time_range"] = "7d"
    at.run()
    assert at.session_state["time_range"] == "7d" and _param(at, "range") == "7d"

    at.query_params["range"] = "bogus"  # not a range: ignored, the address corrected
    at.run()
    assert at.session_state["time_range"] == "7d" and _param(at, "range") == "7d"


@pytest.mark.clock
def test_an_absolute_range_opens_as_custom_in_the_business_time_zone(
    logged_in_app: AppFactory,
) -> None:
    at = logged_in_app(Role.VIEWER)
    at.query_params.update({"from": "2026-06-01T09:00+01:00", "to": "2026-06-01T17:30+01:00"})
    at.run()
    assert at.session_state["time_range"] == "Custom"
    assert at.session_state["time_from"] == datetime(2026, 6, 1, 9, 0)  # London wall time
    assert at.session_state["time_to"] == datetime(2026, 6, 1, 17, 30)
    assert _param(at, "from") == "2026-06-01T09:00+01:00"

    at.query_params.update({"from": "2026-06-01T17:30+01:00", "to": "2026-06-01T09:00+01:00"})
    at.run()  # 'to' before 'from': not a range; the chosen one is kept and the URL corrected
    assert at.session_state["time_range"] == "Custom"
    assert _param(at, "from") == "2026-06-01T09:00+01:00"


def _param(at: AppTest, name: str) -> str:
    value = at.query_params[name]
    return value[0] if isinstance(value, list) else str(value)


def _several() -> None:
    import streamlit as st

    from ui import url_state

    names = ["/a", "/b", "/c"]
    picked = url_state.multi(st.multiselect, "Endpoints", names, param="ep", default=["/a"])
    st.write("picked=" + ",".join(picked))


def test_several_choices_live_in_a_repeated_parameter() -> None:
    at = AppTest.from_function(_several, default_timeout=30)
    at.run()
    assert _shown(at) == "picked=/a" and "ep" not in at.query_params  # the default: no entry

    at.multiselect(key="url_ep").select("/c").run()
    assert _shown(at) == "picked=/a,/c"
    assert _all(at, "ep") == ["/a", "/c"]

    at.query_params["ep"] = ["/b", "/gone"]  # a link (or back): what it names that exists
    at.run()
    assert _shown(at) == "picked=/b"
    assert _all(at, "ep") == ["/b"]


def _all(at: AppTest, name: str) -> list[str]:
    value = at.query_params[name]
    return list(value) if isinstance(value, list) else [str(value)]
