"""In a real browser (Debian's headless Chromium): acting on an incident keeps that incident,
its tab and its address; text typed while an action's reruns run is kept and can be added
as a note; a reload opens it again; on a phone the sidebar closes after a page is opened
from it.

Typed text was lost once after an action. What the browser shows: the box keeps what is
typed through the action's reruns (Streamlit keys a widget by its id, so the flash message
appearing above it does not re-create it). What could lose it is a rerun carrying the
address from before the page's own write (the box's rerun, asked for before the browser took
in the write), read as a link: the incident or tab jumped back and the box went with the
detail; `ui.url_state` holds such an address for a stale one (tests/test_url_state.py). The
typing here went nowhere too while Streamlit's "Page not found" dialog (from opening the
link as the first visitor after the server started) was still up: it is modal (ui/serve.py).

Uses tests/test_browser_links.py's server and browser fixtures (the real UI on the test
database, Chromium over the DevTools protocol). Skips when Chromium is missing (`.ci/run`
installs it: `apt-get install chromium`). About 60 s; part of `make test` because the issue's
browser test is this one.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from monitoring_core.accounts import add_user
from monitoring_core.enums import Role
from monitoring_core.incidents import service
from monitoring_core.incidents.queries import incident_detail
from tests.test_browser_links import CHROMIUM, _heading, _open, browser, ui_url

pytestmark = [
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="Chromium not installed: apt-get install chromium"
    ),
]
__all__ = ["browser", "ui_url"]  # fixtures used by name below

PASSWORD = "correct horse battery"
SIDEBAR = "document.querySelector('[data-testid=stSidebar]').getBoundingClientRect()"


def _click(capture: Any, ws: Any, text: str, then: str) -> None:
    """Click the enabled button reading `text`, then wait for the page to show `then`."""
    found = capture._js(
        ws,
        "(() => { const b = [...document.querySelectorAll('button')]"
        f".find(b => b.innerText.trim() === {json.dumps(text)} && !b.disabled);"
        " if (b) b.click(); return !!b; })()",
    )
    assert found, f"no enabled button {text!r}"
    main = "document.querySelector('[data-testid=stMain]').innerText"
    try:
        capture._wait_for(ws, f"{main}.includes({json.dumps(then)})", 30)
    except TimeoutError:
        raise AssertionError(f"after {text!r}: {_text(capture, ws)[:1500]}") from None
    _idle(capture, ws)


IDLE = "document.querySelector('[data-test-script-state]')?.dataset.testScriptState"


def _idle(capture: Any, ws: Any) -> None:
    """Until the app's script is not running, seen five times over a second (a click's rerun
    starts a moment after it; an action's st.rerun starts a second run)."""
    deadline, quiet = time.monotonic() + 60, 0
    while quiet < 5:
        assert time.monotonic() < deadline, "the page kept running"
        state = capture._js(ws, IDLE)
        quiet = quiet + 1 if state in ("notRunning", "initial") else 0
        time.sleep(0.2)


def _reload(capture: Any, ws: Any) -> None:
    capture._go(ws, "Page.reload")
    capture._wait_for(ws, "!!document.querySelector('h1')", 60)
    _idle(capture, ws)


MAIN = "document.querySelector('[data-testid=stMain]').innerText"
NOTE_BOX = "textarea[aria-label='Timeline note']"
NOTE = "Rolled back the gallery worker to 4.12"


def _button(text: str) -> str:
    return (
        "[...document.querySelectorAll('button')]"
        f".find(b => b.innerText.trim() === {json.dumps(text)} && !b.disabled)"
    )


def _press(capture: Any, ws: Any, text: str) -> None:
    """Click the button `text` from script (focus stays where it is) and return at once."""
    assert capture._js(
        ws, f"(() => {{ const b = {_button(text)}; if (b) b.click(); return !!b; }})()"
    )


def _keys(capture: Any, ws: Any, selector: str, text: str) -> None:
    """Click into the box and type `text` key by key (CDP Input.insertText per character),
    without leaving it: the value is the browser's until the box loses focus. (A headless
    page has no window focus: focus emulation lets its elements take focus.)"""
    capture._call(ws, "Emulation.setFocusEmulationEnabled", enabled=True)
    box = f"document.querySelector({json.dumps(selector)})"
    # The action's rerun can move the box between measuring it and the click landing (a
    # flash message appears above it): click again, as a person would, until it has focus.
    for _ in range(10):
        capture._wait_for(ws, f"!!{box}", 30)
        _mouse_at(capture, ws, box)
        if capture._js(ws, f"document.activeElement === {box}"):
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"{selector} never took focus: {_text(capture, ws)[:800]}")
    for char in text:
        capture._call(ws, "Input.insertText", text=char)
        time.sleep(0.02)


def _mouse_click(capture: Any, ws: Any, text: str) -> None:
    """A real mouse click on the button `text` (what blurs a focused box first)."""
    _mouse_at(capture, ws, _button(text))


def _mouse_at(capture: Any, ws: Any, element: str) -> None:
    """A real mouse click in the middle of `element` (a JS expression)."""
    capture._js(ws, f"{element}.scrollIntoView({{block: 'center', behavior: 'instant'}})")
    time.sleep(0.2)
    box = capture._js(
        ws,
        f"(() => {{ const r = {element}.getBoundingClientRect();"
        " return JSON.stringify([r.x + r.width / 2, r.y + r.height / 2]); })()",
    )
    x, y = (float(c) for c in json.loads(box))
    for kind in ("mousePressed", "mouseReleased"):
        capture._call(
            ws, "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
        )


def _text(capture: Any, ws: Any) -> str:
    return str(capture._js(ws, "document.querySelector('[data-testid=stMain]').innerText"))


def _address(capture: Any, ws: Any) -> str:
    return str(capture._js(ws, "location.pathname + location.search"))


def test_acting_on_an_incident_stays_on_it_and_the_phone_sidebar_closes(
    ui_url: str, browser: Any, engine: Engine, now: datetime
) -> None:
    capture, ws = browser
    with engine.begin() as conn:
        add_user(conn, username="oncall", password=PASSWORD, role=Role.RESPONDER,
                 actor="system:test", now=now)  # fmt: skip
        ids = [
            service.create_incident(
                conn, body={"title": title, "severity": "SEV2", "affected_services": ["web"]},
                actor="alice", role="responder", now=now - timedelta(minutes=5),
            )["id"]
            for title in ("Checkout failing", "Gallery uploads stuck")
        ]  # fmt: skip
    second = ids[1]  # not the first in the list: a reset would show another incident
    _open(capture, ws, f"{ui_url}/response-incidents?incident={second}")
    capture._type(ws, "input[aria-label=Username]", "oncall")
    capture._type(ws, "input[type=password]", PASSWORD)
    time.sleep(0.5)
    capture._js(ws, "document.querySelector('[data-testid=stFormSubmitButton] button').click()")
    capture._wait_for(ws, "!document.querySelector('input[type=password]')", 60)
    _heading(capture, ws, "Incidents")
    _idle(capture, ws)
    assert "Gallery uploads stuck" in _text(capture, ws)
    # No "Page not found" dialog from the link opened before signing in (a modal: clicks and
    # typing went nowhere while it was up; ui/serve.py)
    assert not capture._js(ws, "!!document.querySelector('[data-testid=stDialog]')")

    _click(capture, ws, "Acknowledge", then="Acknowledge done")
    assert "Gallery uploads stuck" in _text(capture, ws)
    assert f"incident={second}" in _address(capture, ws)

    # Two lifecycle steps with the status choice as it stands: it must already offer the
    # next step (it lagged one step), and the detail must stay on this incident.
    # Typing while an action's reruns are under way: start the next step, and type a note at
    # once, as a person does (keystrokes into the focused box, not committed yet). The text
    # must still be there when the page settles, and "Add note" (a real mouse click, which
    # commits the box) must add it.
    _press(capture, ws, "Change status")
    _keys(capture, ws, NOTE_BOX, NOTE)
    capture._wait_for(ws, f"{MAIN}.includes('Status done')", 30)
    _idle(capture, ws)
    assert capture._js(ws, f"document.querySelector({json.dumps(NOTE_BOX)}).value") == NOTE
    shown = _text(capture, ws)
    assert "Investigating" in shown and "Gallery uploads stuck" in shown, shown[:800]
    _mouse_click(capture, ws, "Add note")
    capture._wait_for(ws, f"{MAIN}.includes('Note done')", 30)
    _idle(capture, ws)
    with engine.connect() as conn:  # the timeline is a canvas table: read what was added
        detail = incident_detail(conn, incident_id=second, now=now)
    assert detail is not None
    assert NOTE in [e.get("message") for e in detail["timeline"]], detail["timeline"]
    _click(capture, ws, "Change status", then="Status done")
    shown = _text(capture, ws)
    assert "Mitigating" in shown and "Gallery uploads stuck" in shown, shown[:800]
    assert f"incident={second}" in _address(capture, ws)

    _reload(capture, ws)  # the address opens the same incident again
    assert "Gallery uploads stuck" in _text(capture, ws) and "Mitigating" in _text(capture, ws)

    capture._call(ws, "Emulation.setDeviceMetricsOverride", width=390, height=800,
                  deviceScaleFactor=1, mobile=True)  # fmt: skip
    _reload(capture, ws)  # Streamlit collapses the sidebar on a phone at load
    assert capture._js(ws, f"{SIDEBAR}.right <= 0")
    capture._js(ws, "document.querySelector('[data-testid=stExpandSidebarButton]').click()")
    capture._wait_for(ws, f"{SIDEBAR}.right > 0", 10)
    capture._js(ws, "document.querySelector('[data-testid=stSidebarNav] a[href$=\"/response-alerts\"]').click()")  # fmt: skip
    _heading(capture, ws, "Alerts")
    capture._wait_for(ws, f"{SIDEBAR}.right <= 0", 15)  # closed after the page opened
