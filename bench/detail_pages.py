"""Time to idle of the detail pages a link opens (one alert, incident, error group, check
and trace) in headless Chromium, two ways.

Usage: python -m bench.detail_pages URL USER PASSWORD [--rounds=3] [--phone] [--limit-ms=1000]

- **In the app** (`link_ms`): from the list page, the address changes to the item's and
  the app follows it, as `st.page_link`, back and forward do (history.pushState and a
  popstate event: a rerun in the same session). Measured from that moment to idle: the last
  change of the page before it stays unchanged for 0.8 s with no script running
  (bench/pages.py's idle). This is the issue's click-to-idle.
- **By address** (`address_ms`): what a notification or a shared link does. The browser
  loads the address (a new document and Streamlit session, signed in by the session
  cookie), measured from the navigation's start (`performance.timeOrigin`) to idle. The
  baseline measured in the same run is each list page loaded by address the same way
  (`list_address_ms`): the part every page pays to boot Streamlit's frontend.

The items are the demo data's busiest: the newest firing alert, the second newest open incident
(the newest is the one the list shows already),
the error group with the most events, the check with the most results and the trace with
the most spans in the last day, read from the database the UI runs on (DATABASE_URL, else
the embedded cluster under MONITORING_DATA_DIR, as `make run` starts it). Each is measured
`--rounds` times; the figures are medians. Last line: JSON.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from sqlalchemy import text

from bench.business_page import QUIET_MS, capture, command_line
from monitoring_core.config import load_settings
from monitoring_core.db import embedded_url, make_engine

PORT = 9391  # DevTools port of its own (pages.py 9388, business_page.py 9383)

# name -> (page address, query parameter, SQL for the item's id)
DETAILS: dict[str, tuple[str, str, str]] = {
    "alert": (
        "response-alert",
        "instance",
        "SELECT id FROM alert_instances "
        "ORDER BY (status = 'firing') DESC, last_triggered_at DESC NULLS LAST LIMIT 1",
    ),
    "incident": (
        "response-incidents",
        "incident",
        # not the newest (the list shows it already: following the link would change nothing)
        "SELECT id FROM incidents ORDER BY (status <> 'resolved') DESC, detected_at DESC "
        "OFFSET 1 LIMIT 1",
    ),
    "error_group": (
        "monitoring-errors",
        "group",
        "SELECT id FROM error_groups ORDER BY event_count DESC LIMIT 1",
    ),
    "check": (
        "monitoring-health",
        "check",
        "SELECT check_id FROM health_check_results GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
    ),
    "trace": (
        "monitoring-traces",
        "trace_id",
        "SELECT trace_id FROM spans WHERE time > now() - interval '1 day' "
        "GROUP BY trace_id ORDER BY count(*) DESC LIMIT 1",
    ),
}


def item_ids() -> dict[str, str]:
    settings = load_settings()
    url = settings.database_url or embedded_url(settings.data_dir)
    engine = make_engine(url)
    found: dict[str, str] = {}
    with engine.connect() as conn:
        for name, (_path, _param, sql) in DETAILS.items():
            value = conn.execute(text(sql)).scalar()
            if value is not None:
                found[name] = str(value)
    engine.dispose()
    return found


_OBSERVE = (
    "(() => { window.__last = performance.now(); window.__obs = new MutationObserver(() =>"
    " { window.__last = performance.now(); }); window.__obs.observe(document"
    ".querySelector('[data-testid=stMain]'), {subtree: true, childList: true,"
    " attributes: true, characterData: true}); return true; })()"
)
_STATE = (
    "JSON.stringify([performance.now() - window.__last,"
    " !!document.querySelector('[data-testid=\"stStatusWidget\"]'), window.__last,"
    " !!document.querySelector('[data-testid=stException]')])"
)


def load_ms(ws: Any, address: str, timeout: float = 60) -> float:
    """ms from the navigation's start to idle (see the module docstring)."""
    capture._go(ws, url=address)
    capture._wait_for(ws, "!!document.querySelector('[data-testid=stMain] h1')", timeout)
    capture._js(ws, _OBSERVE)  # changes before this are covered by the page's first h1
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        quiet, running, last, failed = json.loads(capture._js(ws, _STATE))
        if failed:
            raise RuntimeError(f"{address} shows an exception")
        if quiet > QUIET_MS and not running:
            return float(last)
    raise TimeoutError(f"{address} never settled")


_FOLLOW = """(() => {{ window.__obs?.disconnect(); const t = performance.now();
  window.__obs = new MutationObserver(() => {{ window.__last = performance.now(); }});
  window.__obs.observe(document.body, {{subtree: true, childList: true, attributes: true,
  characterData: true}});
  history.pushState({{}}, '', {path}); window.dispatchEvent(new PopStateEvent('popstate',
  {{state: {{}}}})); window.__last = t; return t; }})()"""


def link_ms(ws: Any, path: str, timeout: float = 60) -> float:
    """ms from the address changing to `path` in the app to idle (the module docstring)."""
    start = capture._js(ws, _FOLLOW.format(path=json.dumps(path)))
    deadline, state = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        time.sleep(0.1)
        state = quiet, running, last, failed = json.loads(capture._js(ws, _STATE))
        if failed:
            raise RuntimeError(f"{path} shows an exception")
        if quiet > QUIET_MS and not running and last > start:
            return float(last - start)
    raise TimeoutError(f"{path} never settled (started {start}; quiet, running, last: {state})")


def main(url: str, user: str, password: str, rounds: int, limit_ms: float) -> dict[str, Any]:
    ids = item_ids()
    results: dict[str, Any] = {"limit_ms": limit_ms, "width": capture.WIDTH, "rounds": rounds}
    results["items"] = ids
    for figure in ("link_ms", "address_ms", "list_address_ms"):
        results[figure] = {}
    with capture.signed_in(url, user, password, port=PORT, prefix="chromium-details-") as ws:
        capture._settled(ws)
        for name, (path, param, _sql) in DETAILS.items():
            if name not in ids:
                print(f"{name:12} no item in the database: skipped", flush=True)
                continue
            item = f"/{path}?{param}={ids[name]}"
            lists, links, addresses = [], [], []
            for _ in range(rounds):
                lists.append(round(load_ms(ws, f"{url}/{path}")))
                links.append(round(link_ms(ws, item)))
                addresses.append(round(load_ms(ws, f"{url}{item}")))
            for figure, values in (("link_ms", links), ("address_ms", addresses),
                                   ("list_address_ms", lists)):  # fmt: skip
                results[figure][name] = statistics.median(values)
            print(f"{name:12} {param}={ids[name][:12]}: in the app {links} ms, by address "
                  f"{addresses} ms (its list by address {lists} ms)", flush=True)  # fmt: skip
    results["over_limit"] = {k: v for k, v in results["link_ms"].items() if v > limit_ms}
    results["worst_link_ms"] = max(results["link_ms"].values(), default=0)
    return results


if __name__ == "__main__":
    args, options = command_line(__doc__)
    out = main(
        args[0].rstrip("/"), args[1], args[2],
        rounds=int(options.get("rounds", "3")),
        limit_ms=float(options.get("limit-ms", "1000")),
    )  # fmt: skip
    print(json.dumps(out))
