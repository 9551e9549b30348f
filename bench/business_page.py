"""Click-to-idle of the Business and Funnels pages in headless Chromium, at every time range.

Usage: python bench/business_page.py URL USER PASSWORD [--phone] [--pages business,funnels]
       [--rounds N]

Signs in to a running UI (e.g. `make run` on demo data) through the DevTools protocol (the
helpers of docs/screenshots/capture.py, Debian's `/usr/bin/chromium`), opens each page from the
sidebar, then clicks each time range in turn and measures click → idle: the time from the click
to the last change of the main block before it stays unchanged for 0.8 s with no script running
(Streamlit's status widget gone, charts drawn). Each range is clicked `rounds` times (default 2;
another range is clicked before each, so every measured click changes the page). The baseline
measured in the same run is the same click on the Overview page, the app's landing page. Last line: JSON.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("capture", ROOT / "docs/screenshots/capture.py")
assert _spec and _spec.loader
capture: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(capture)
capture.PORT = 9383  # not capture.py's 9333: screenshots may be taken at the same time

RANGES = ("1h", "24h", "7d", "30d", "90d")
PAGES = {"business": "business-business", "funnels": "business-funnels"}
QUIET_MS = 800
_OBSERVE = """(() => { window.__last = performance.now();
  if (!window.__obs) { window.__obs = new MutationObserver(() => { window.__last = performance.now(); });
    window.__obs.observe(document.querySelector('[data-testid=stMain]'), {subtree: true, childList: true, attributes: true,
                                         characterData: true}); }
  return true; })()"""


def _click_range(ws: Any, label: str, timeout: float = 60) -> float:
    """Click a time range; ms from the click to the last change before QUIET_MS of quiet."""
    capture._js(ws, _OBSERVE)
    start = capture._js(
        ws,
        "(() => { const b = [...document.querySelectorAll('[data-testid=stSidebar] button')]"
        f".find(b => b.textContent.trim() === {json.dumps(label)}); const t = performance.now();"
        " b.click(); window.__last = t; return t; })()",
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        state = json.loads(
            capture._js(
                ws,
                "JSON.stringify([performance.now() - window.__last,"
                " !!document.querySelector('[data-testid=\"stStatusWidget\"]'), window.__last])",
            )
        )
        if state[0] > QUIET_MS and not state[1]:
            return float(state[2] - start)
    raise TimeoutError(f"the page never settled after clicking {label}")


def _open(ws: Any, path: str) -> None:
    link = json.dumps(f'[data-testid="stSidebarNav"] a[href$="/{path}"]')
    capture._wait_for(ws, "!!document.querySelector('[data-testid=stSidebarNav] a')")
    # A long navigation is folded ("View 6 more"): unfold it first.
    capture._js(
        ws,
        f"document.querySelector({link}) || [...document.querySelectorAll("
        "'[data-testid=stSidebarNav] button')].find(b => /more/.test(b.textContent))?.click()",
    )
    capture._wait_for(ws, f"!!document.querySelector({link})")
    capture._js(ws, f"document.querySelector({link}).click()")
    capture._wait_for(ws, "!!document.querySelector('h1')")
    capture._settled(ws)


def command_line(doc: str | None) -> tuple[list[str], dict[str, str]]:
    """URL USER PASSWORD and the `--name=value` options of a page benchmark; `--phone` makes
    the browser a 390-pixel phone. Exits with `doc` unless the three are given."""
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 3:
        sys.exit(doc)
    if "--phone" in flags:
        capture.MOBILE, capture.WIDTH = True, 390
    return args, dict(f.removeprefix("--").split("=", 1) for f in flags if "=" in f)


def main(url: str, user: str, password: str, pages: list[str], rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {"width": capture.WIDTH}
    with capture.signed_in(url, user, password, port=capture.PORT) as ws:
        capture._settled(ws)
        try:  # the Overview may never sit still (live panels): then no baseline
            baseline = [_click_range(ws, r, 15) for r in ("24h", "7d", "24h", "7d")]
            results["baseline_overview_ms"] = round(statistics.median(baseline))
        except TimeoutError:
            results["baseline_overview_ms"] = None
        print(f"baseline (Overview) {results['baseline_overview_ms']} ms", flush=True)
        for name in pages:
            _open(ws, PAGES[name])
            per_range: dict[str, list[int]] = {}
            for label in RANGES:
                per_range[label] = []
                for _ in range(rounds):
                    # another range first, so that the measured click changes something
                    _click_range(ws, "1h" if label != "1h" else "24h")
                    per_range[label].append(round(_click_range(ws, label)))
                print(f"{name:9} {label:4} {per_range[label]} ms", flush=True)
            results[name] = per_range
            results[f"{name}_worst_ms"] = max(max(v) for v in per_range.values())
    return results


if __name__ == "__main__":
    args, options = command_line(__doc__)
    chosen = options.get("pages", "business,funnels").split(",")
    out = main(args[0], args[1], args[2], pages=chosen, rounds=int(options.get("rounds", "2")))
    print(json.dumps(out))
