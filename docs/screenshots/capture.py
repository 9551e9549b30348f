"""Sign in to a running UI in headless Chromium and save screenshots of its pages.

Usage: python docs/screenshots/capture.py URL USER PASSWORD [OUT_DIR] [--all] [--phone]
`--all` takes every page (default: overview and performance, the README's pictures), `--phone`
a 390-pixel-wide mobile viewport (files get a `-phone` suffix).
Drives Chromium (`/usr/bin/chromium`, Debian's package) over the DevTools protocol with the
`websockets` client Streamlit already depends on, so no browser automation package is needed.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

CHROMIUM = "/usr/bin/chromium"
PORT = 9333
WIDTH, HEIGHT, MAX_HEIGHT = 1400, 1000, 3200
# screenshot name -> (URL path of the page, time range to pick in the sidebar)
PAGES = {"overview": ("", "7d"), "performance": ("monitoring-performance", "24h")}
ALL_PAGES = {
    **PAGES,
    "errors": ("monitoring-errors", "24h"),
    "traces": ("monitoring-traces", "24h"),
    "logs": ("monitoring-logs", "24h"),
    "health": ("monitoring-health", "24h"),
    "resources": ("monitoring-resources", "24h"),
    "alerts": ("response-alerts", "24h"),
    "incidents": ("response-incidents", "7d"),
    "business": ("business-business", "30d"),
    "funnels": ("business-funnels", "30d"),
    "metrics": ("monitoring-metrics", "24h"),
    "dashboards": ("monitoring-dashboards", "7d"),
    "reports": ("business-reports", "30d"),
    "admin": ("administration-admin", "24h"),
    "settings": ("administration-settings", "24h"),
}
MOBILE = False
_ids = count(1)


def _call(ws: ClientConnection, method: str, **params: Any) -> dict[str, Any]:
    message_id = next(_ids)
    ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
    while True:
        reply = json.loads(ws.recv())
        if reply.get("id") == message_id:
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return dict(reply.get("result", {}))


def _js(ws: ClientConnection, expression: str) -> Any:
    result = _call(ws, "Runtime.evaluate", expression=expression, awaitPromise=True)
    return result.get("result", {}).get("value")


# What evaluating says while a navigation or reload replaces the document: try again.
_GOING_AWAY = ("navigated or closed", "context was destroyed", "Cannot find context")


def _wait_for(ws: ClientConnection, expression: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if _js(ws, expression):
                return
        except RuntimeError as exc:
            if not any(words in str(exc) for words in _GOING_AWAY):
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(expression)
        time.sleep(0.3)


def _go(ws: ClientConnection, method: str = "Page.navigate", **params: Any) -> None:
    """`Page.navigate` (url=...) or `Page.reload`, returning once the new document is in
    place: evaluating at once could still read the old one, or fail while it goes away."""
    _js(ws, "window.__leaving = true")
    _call(ws, method, **params)
    _wait_for(ws, "!window.__leaving && !!document.body", 60)


def _type(ws: ClientConnection, selector: str, text: str) -> None:
    # React keeps its own copy of an input's value: set it through the native setter and fire
    # `input` so Streamlit sees the change.
    _js(
        ws,
        f"""(() => {{ const el = document.querySelector({json.dumps(selector)});
        const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
        set.call(el, {json.dumps(text)}); el.dispatchEvent(new Event('input', {{bubbles: true}}));
        el.blur(); return true; }})()""",
    )


def _settled(ws: ClientConnection) -> None:
    """Wait until Streamlit has finished running and charts have drawn."""
    time.sleep(1.0)
    _wait_for(ws, "!document.querySelector('[data-testid=\"stStatusWidget\"]')", 60)
    time.sleep(3.0)


def _resize(ws: ClientConnection, height: int) -> None:
    _call(ws, "Emulation.setDeviceMetricsOverride", width=WIDTH, height=height,
          deviceScaleFactor=1, mobile=MOBILE)  # fmt: skip


def _shoot(ws: ClientConnection, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its main block, so grow the window to fit."""
    height = _js(ws, "document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    _resize(ws, min(max(int(height or HEIGHT), HEIGHT), MAX_HEIGHT))
    _settled(ws)
    data = _call(ws, "Page.captureScreenshot", format="png")["data"]
    path.write_bytes(base64.b64decode(data))
    _resize(ws, HEIGHT)
    print(f"saved {path}")


@contextmanager
def signed_in(
    url: str, user: str, password: str, *, port: int = PORT, prefix: str = "chromium-"
) -> Iterator[ClientConnection]:
    """A headless Chromium on `port`, signed in to the UI at `url`: its page's DevTools socket.

    The screenshots, bench/pages.py and bench/business_page.py all start from here."""
    profile = tempfile.mkdtemp(prefix=prefix)
    browser = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--disable-background-networking", f"--remote-debugging-port={port}",
         f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        targets: list[dict[str, Any]] = []
        for _ in range(60):
            try:
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
                break
            except OSError:
                time.sleep(0.5)
        page = next(t for t in targets if t["type"] == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
            _resize(ws, HEIGHT)
            _call(ws, "Page.navigate", url=url)
            _wait_for(ws, "!!document.querySelector('input[type=password]')")
            _type(ws, "input[aria-label=Username]", user)
            _type(ws, "input[type=password]", password)
            time.sleep(0.5)
            _js(ws, "document.querySelector('[data-testid=stFormSubmitButton] button').click()")
            _wait_for(ws, "!document.querySelector('input[type=password]')")
            yield ws
    finally:
        browser.terminate()
        browser.wait(timeout=10)


def main(url: str, user: str, password: str, out: Path, pages: dict[str, tuple[str, str]]) -> None:
    with signed_in(url, user, password) as ws:
        for name, (path, time_range) in pages.items():
            # Follow the sidebar link: loading the URL anew would start a new session.
            link = json.dumps(f'[data-testid="stSidebarNav"] a[href$="/{path}"]')
            _js(ws, f"document.querySelector({link}).click()")  # hidden on phones, still works
            _wait_for(ws, "!!document.querySelector('h1')")
            _settled(ws)
            _js(
                ws,
                "[...document.querySelectorAll('[data-testid=stSidebar] button')]"
                f".find(b => b.textContent.trim() === {json.dumps(time_range)})?.click()",
            )
            _settled(ws)
            _shoot(ws, out / f"{name}{'-phone' if MOBILE else ''}.png")


if __name__ == "__main__":
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) not in (3, 4) or flags - {"--all", "--phone"}:
        sys.exit(__doc__)
    if "--phone" in flags:
        MOBILE, WIDTH = True, 390
    chosen = ALL_PAGES if "--all" in flags else PAGES
    out_dir = Path(args[3] if len(args) == 4 else Path(__file__).parent)
    main(args[0], args[1], args[2], out_dir, chosen)
