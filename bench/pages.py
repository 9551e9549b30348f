"""Click-to-idle of every page in headless Chromium, at 1 h, 24 h, 7 d and 30 d.

Usage: python -m bench.pages URL USER PASSWORD [--pages=overview,alerts] [--ranges=1h,24h]
       [--limit-ms=1000]

Signs in to a running UI (`make run` on demo data) through the DevTools protocol (the helpers
of bench/business_page.py and docs/screenshots/capture.py, Debian's `/usr/bin/chromium`). For
each page of app.py's PAGES: opens it from the sidebar and measures click → idle (the last
change of the main block before it stays unchanged for 0.8 s with no script running), then
clicks each time range in turn and measures the same (another range is clicked first, so every
measured click changes the page). The baseline measured in the same run is the first page's
open before any other (the landing page reloaded). Pages over `--limit-ms` (default 1000, the
issue's target) are listed. Last line: JSON.
"""

from __future__ import annotations

import ast
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.business_page import QUIET_MS, _click_range, capture

ROOT = Path(__file__).resolve().parent.parent
RANGES = ("1h", "24h", "7d", "30d")
PORT = 9388  # DevTools port: not capture.py's 9333 nor business_page.py's 9383


def page_titles() -> dict[str, str]:
    """name -> title of every page in app.py's PAGES (read, not imported: app.py runs)."""
    tree = ast.parse((ROOT / "app.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "PAGES":
            assert node.value is not None
            pages = ast.literal_eval(node.value)
            return {title.lower(): title for rows in pages.values() for _path, title, _ in rows}
    raise RuntimeError("no PAGES in app.py")


_LINK = "[...document.querySelectorAll('[data-testid=stSidebarNav] a')].find(a => a.innerText.trim().split('\\n').pop() === {title})"
_NAV_CLICK = """(() => {{ const a = {link}; window.__last = performance.now();
  const t = performance.now(); a.click(); window.__last = t; return t; }})()"""


def _open(ws: Any, title: str, timeout: float = 60) -> float:
    """Click the page's sidebar link; ms from the click to idle (as _click_range measures)."""
    link = _LINK.format(title=json.dumps(title))
    capture._wait_for(ws, "!!document.querySelector('[data-testid=stSidebarNav] a')")
    capture._js(  # a long navigation is folded ("View 6 more"): unfold it first
        ws,
        f"{link} || [...document.querySelectorAll("
        "'[data-testid=stSidebarNav] button')].find(b => /more/.test(b.textContent))?.click()",
    )
    capture._wait_for(ws, f"!!({link})")
    capture._js(ws, "window.__obs = undefined")  # the main block is replaced by the new page
    start = capture._js(ws, _NAV_CLICK.format(link=link))
    deadline = time.monotonic() + timeout
    observing = False
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if not observing and capture._js(ws, "!!document.querySelector('h1')"):
            capture._js(
                ws,
                "(() => { const t = window.__last; window.__obs = new MutationObserver(() =>"
                " { window.__last = performance.now(); }); window.__obs.observe(document"
                ".querySelector('[data-testid=stMain]'), {subtree: true, childList: true,"
                " attributes: true, characterData: true}); window.__last = Math.max(t,"
                " performance.now()); return true; })()",
            )
            observing = True
            continue
        state = json.loads(
            capture._js(
                ws,
                "JSON.stringify([performance.now() - window.__last,"
                " !!document.querySelector('[data-testid=\"stStatusWidget\"]'), window.__last])",
            )
        )
        if observing and state[0] > QUIET_MS and not state[1]:
            return float(state[2] - start)
    raise TimeoutError(f"{title} never settled")


def _measure_range(ws: Any, label: str) -> float:
    """Click another range, then `label`: ms to idle. A click that found no button (the
    sidebar redrawn at that moment) is tried once more."""
    for attempt in range(2):
        try:
            _click_range(ws, "24h" if label == "1h" else "1h")
            return _click_range(ws, label)
        except TypeError:  # the range button was not there to click
            if attempt:
                raise TimeoutError(f"no {label} button in the sidebar") from None
            time.sleep(1)
    raise AssertionError("unreachable")


def main(
    url: str, user: str, password: str, pages: list[str], ranges: list[str], limit_ms: float
) -> dict[str, Any]:
    titles = page_titles()
    results: dict[str, Any] = {"limit_ms": limit_ms, "pages": {}}
    with capture.signed_in(url, user, password, port=PORT, prefix="chromium-pages-") as ws:
        capture._settled(ws)
        first = titles[pages[0]]
        baseline = [round(_open(ws, first)) for _ in range(2)]
        results["baseline_open_first_page_ms"] = min(baseline)
        print(f"baseline: {pages[0]} opened again {baseline} ms", flush=True)
        for name in pages:
            row: dict[str, Any] = {}
            try:
                row["open_ms"] = round(_open(ws, titles[name]))
                for label in ranges:
                    row[label] = round(_measure_range(ws, label))
            except TimeoutError as exc:
                row["error"] = str(exc)
            results["pages"][name] = row
            print(f"{name:12} {row}", flush=True)
    slow = {
        name: {k: v for k, v in row.items() if isinstance(v, int) and v > limit_ms}
        for name, row in results["pages"].items()
    }
    results["over_limit"] = {name: over for name, over in slow.items() if over}
    results["worst"] = max(
        ((v, f"{name} {k}") for name, row in results["pages"].items()
         for k, v in row.items() if isinstance(v, int)),
        default=(0, ""),
    )  # fmt: skip
    return results


if __name__ == "__main__":
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 3:
        sys.exit(__doc__)
    options = dict(f.removeprefix("--").split("=", 1) for f in flags if "=" in f)
    chosen = options.get("pages", ",".join(page_titles())).split(",")
    out = main(
        args[0], args[1], args[2], pages=chosen,
        ranges=options.get("ranges", ",".join(RANGES)).split(","),
        limit_ms=float(options.get("limit-ms", "1000")),
    )  # fmt: skip
    print(json.dumps(out))
