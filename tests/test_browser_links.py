"""In a real browser (Debian's headless Chromium): a notification's link opened in a fresh
browser lands on the alert after sign-in; a reload and a new address stay signed in; signing
out ends it.

Runs the real UI (`streamlit run app.py`) on the test database and drives Chromium over the
DevTools protocol (docs/screenshots/capture.py's helpers). Skips when Chromium is missing
(`.ci/run` installs it: `apt-get install chromium`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from monitoring_core.accounts import add_user
from monitoring_core.enums import Role

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium not installed: apt-get install chromium"
)


def _capture() -> Any:
    spec = importlib.util.spec_from_file_location("capture", ROOT / "docs/screenshots/capture.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"nothing listening on {port}")


@pytest.fixture
def ui_url(database_url: str, engine: Engine) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "DEMO": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui.serve", "--server.port", str(port),
         "--server.headless", "true", "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false",
         # Others edit the tree while tests run: a "file changed" prompt would stay up.
         "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.fixture
def browser() -> Iterator[Any]:
    from websockets.sync.client import connect

    capture = _capture()
    port = _free_port()
    profile = tempfile.mkdtemp(prefix="chromium-test-")
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--remote-debugging-port={port}",
         f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        targets: list[dict[str, Any]] = []
        for _ in range(120):
            try:
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
                break
            except OSError:
                time.sleep(0.5)
        page = next(t for t in targets if t["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
            capture._call(ws, "Emulation.setDeviceMetricsOverride", width=1280, height=900,
                          deviceScaleFactor=1, mobile=False)  # fmt: skip
            yield capture, ws
    finally:
        proc.terminate()
        proc.wait(15)


def _heading(capture: Any, ws: Any, text: str) -> None:
    """Wait for the page's title to read `text`; on a timeout, say what the page shows."""
    try:
        capture._wait_for(
            ws, f"document.querySelector('h1')?.textContent === {json.dumps(text)}", 60
        )
    except TimeoutError:
        shown = capture._js(ws, "document.body.innerText.slice(0, 600)")
        raise AssertionError(f"expected the {text!r} page; it shows: {shown!r}") from None


def _open(capture: Any, ws: Any, url: str) -> None:
    capture._go(ws, url=url)
    capture._wait_for(ws, "!!document.querySelector('h1')", 60)
    capture._settled(ws)


def test_a_link_lands_on_its_alert_after_sign_in_and_the_session_survives_reloads(
    ui_url: str, browser: Any, session_engine: Engine, now: datetime
) -> None:
    capture, ws = browser
    with session_engine.begin() as conn:
        add_user(conn, username="oncall", password="correct horse battery", role=Role.RESPONDER,
                 actor="system:test", now=now)  # fmt: skip
    _open(capture, ws, f"{ui_url}/response-alert?instance=42")
    assert capture._js(ws, "!!document.querySelector('input[type=password]')")  # signed out
    assert capture._js(ws, "location.pathname + location.search") == "/response-alert?instance=42"
    # The first visitor after the server started: no "Page not found" over the form (ui/serve.py)
    assert not capture._js(ws, "!!document.querySelector('[data-testid=stDialog]')")
    capture._type(ws, "input[aria-label=Username]", "oncall")
    capture._type(ws, "input[type=password]", "correct horse battery")
    time.sleep(0.5)
    capture._js(ws, "document.querySelector('[data-testid=stFormSubmitButton] button').click()")
    capture._wait_for(ws, "!document.querySelector('input[type=password]')", 60)
    _heading(capture, ws, "Alert")
    assert capture._js(ws, "location.pathname + location.search") == "/response-alert?instance=42"
    # set by a component after the signed-in run draws (an iframe's script): a moment later
    capture._wait_for(ws, "document.cookie.includes('monitoring_session=')", 15)

    capture._go(ws, "Page.reload")  # a new Streamlit session: the cookie signs it in
    capture._wait_for(ws, "!!document.querySelector('h1')", 60)
    _heading(capture, ws, "Alert")
    assert not capture._js(ws, "!!document.querySelector('input[type=password]')")

    _open(capture, ws, f"{ui_url}/response-incidents")  # another address, still signed in
    _heading(capture, ws, "Incidents")

    capture._js(
        ws,
        "[...document.querySelectorAll('[data-testid=stSidebar] button')]"
        ".find(b => b.textContent.includes('Sign out')).click()",
    )
    capture._wait_for(ws, "!!document.querySelector('input[type=password]')", 60)
    capture._settled(ws)
    _open(capture, ws, f"{ui_url}/monitoring-health")  # signed out everywhere
    assert capture._js(ws, "!!document.querySelector('input[type=password]')")
