"""Click-to-idle of every page in headless Chromium, at 1 h, 24 h, 7 d, 30 d and 90 d.

Usage: python -m bench.pages URL USER PASSWORD [--pages=overview,alerts] [--ranges=1h,24h]
       [--limit-ms=1000] [--phone] [--ui-pid=PID]

Signs in to a running UI (`make run` on demo data) through the DevTools protocol (the helpers
of bench/business_page.py and docs/screenshots/capture.py, Debian's `/usr/bin/chromium`). For
each page of app.py's PAGES: opens it from the sidebar and measures click → idle (the last
change of the main block before it stays unchanged for 0.8 s with no script running), then
clicks each time range in turn and measures the same (another range is clicked first, so every
measured click changes the page). The baseline measured in the same run is the first page's
open before any other (the landing page reloaded). Pages over `--limit-ms` (default 1000, the
issue's target) are listed. `--phone`: a 390-pixel-wide mobile viewport. Beside each wall
time, the CPU it took, which load on the machine inflates far less: the browser's (Chromium's
`TaskDuration` of the page, from the DevTools Performance domain) and, with `--ui-pid`, the
Streamlit server's (user + system time of that process from /proc). Last line: JSON.
"""

from __future__ import annotations

import ast
import json
import os
import time
from pathlib import Path
from typing import Any

from bench.business_page import QUIET_MS, _click_range, capture, command_line

ROOT = Path(__file__).resolve().parent.parent
RANGES = ("1h", "24h", "7d", "30d", "90d")
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


class Cpu:
    """CPU ms spent since `mark()`: the page's renderer (DevTools `TaskDuration`) and the UI
    server process (/proc/PID/stat utime + stime; 0 without a pid)."""

    def __init__(self, ws: Any, ui_pid: int | None) -> None:
        self.ws, self.ui_pid = ws, ui_pid
        capture._call(ws, "Performance.enable")
        self.mark()

    def _now(self) -> tuple[float, float]:
        metrics = capture._call(self.ws, "Performance.getMetrics")["metrics"]
        browser = next(m["value"] for m in metrics if m["name"] == "TaskDuration") * 1000
        server = 0.0
        if self.ui_pid:
            fields = Path(f"/proc/{self.ui_pid}/stat").read_text().rsplit(")", 1)[1].split()
            server = (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")
        return browser, server

    def mark(self) -> None:
        self.start = self._now()

    def spent(self) -> list[int]:
        now = self._now()
        return [round(now[0] - self.start[0]), round(now[1] - self.start[1])]


def _measure_range(ws: Any, label: str, cpu: Cpu) -> float:
    """Click another range, then `label`: ms to idle. A click that found no button (the
    sidebar redrawn at that moment) is tried once more."""
    for attempt in range(2):
        try:
            _click_range(ws, "24h" if label == "1h" else "1h")
            cpu.mark()
            return _click_range(ws, label)
        except TypeError:  # the range button was not there to click
            if attempt:
                raise TimeoutError(f"no {label} button in the sidebar") from None
            time.sleep(1)
    raise AssertionError("unreachable")


def main(
    url: str,
    user: str,
    password: str,
    pages: list[str],
    ranges: list[str],
    limit_ms: float,
    ui_pid: int | None = None,
) -> dict[str, Any]:
    titles = page_titles()
    results: dict[str, Any] = {"limit_ms": limit_ms, "width": capture.WIDTH, "pages": {}}
    results["cpu_ms"] = {}  # page -> measurement -> [browser CPU ms, UI server CPU ms]
    with capture.signed_in(url, user, password, port=PORT, prefix="chromium-pages-") as ws:
        capture._settled(ws)
        cpu = Cpu(ws, ui_pid)
        first = titles[pages[0]]
        baseline = [round(_open(ws, first)) for _ in range(2)]
        results["cpu_ms"]["baseline"] = cpu.spent()
        results["baseline_open_first_page_ms"] = min(baseline)
        print(f"baseline: {pages[0]} opened again {baseline} ms", flush=True)
        for name in pages:
            row: dict[str, Any] = {}
            spent: dict[str, list[int]] = {}
            try:
                cpu.mark()
                row["open_ms"] = round(_open(ws, titles[name]))
                spent["open_ms"] = cpu.spent()
                for label in ranges:
                    row[label] = round(_measure_range(ws, label, cpu))
                    spent[label] = cpu.spent()
            except TimeoutError as exc:
                row["error"] = str(exc)
            results["pages"][name] = row
            results["cpu_ms"][name] = spent
            print(f"{name:12} {row}", flush=True)
            print(f"{'':12} CPU ms [browser, server] {spent}", flush=True)
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
    args, options = command_line(__doc__)
    chosen = options.get("pages", ",".join(page_titles())).split(",")
    out = main(
        args[0], args[1], args[2], pages=chosen,
        ranges=options.get("ranges", ",".join(RANGES)).split(","),
        limit_ms=float(options.get("limit-ms", "1000")),
        ui_pid=int(options["ui-pid"]) if "ui-pid" in options else None,
    )  # fmt: skip
    print(json.dumps(out))
