"""Start the UI: `python -m ui.serve [options]` is `streamlit run app.py [options]` with one
difference. A Streamlit server that has not yet run an `st.navigation` call treats a
`pages/` folder next to the script as an old-style pages directory: the first run after a
start resolves the address against the files in `pages/` (`/incidents`, `/alert`) before
app.py declares its own (`/response-incidents`). A link opened by the first visitor after a
restart (a notification's `/response-alert?instance=N`) was not among them, and Streamlit put
up its modal "Page not found" dialog over the sign-in form, where it stayed after signing in.

app.py declares every page with `st.navigation`, so the server is told so before it starts
(`PagesManager.uses_pages_directory`, the flag Streamlit itself clears at the first
`st.navigation` call). `streamlit run app.py` still works; only that first link misses.

The first page opened after a start also paid for what every later open reuses, about
450 ms on the Errors page: the modules it imports, Altair (which Streamlit imports at the
first `st.bar_chart`, 270 ms) and compiling the page script (Streamlit parses it, adds its
"magic" and compiles it once per process, 100-250 ms for the larger pages). So, before
serving, this imports the modules the pages and `ui/` import from outside `ui/` and
Streamlit (pandas, plotly, `monitoring_core.*`) and Altair; and once the server's runtime
exists, a background thread compiles app.py and every page into its script cache. `ui/`
modules are left to the first run: imported before Streamlit's runtime exists, their
`st.cache_data` functions would keep a cache store that `st.cache_data.clear()` does not
clear.
"""

from __future__ import annotations

import ast
import importlib
import logging
import sys
import threading
import time
from pathlib import Path

from streamlit.runtime.pages_manager import PagesManager
from streamlit.web import cli

ROOT = Path(__file__).resolve().parent.parent
LEFT_TO_THE_FIRST_RUN = ("ui", "app", "pages")  # and streamlit and its components
ALSO = ("altair",)  # imported by Streamlit itself at a page's first chart
log = logging.getLogger(__name__)


def imported_names(sources: list[Path]) -> set[str]:
    """Every module `sources` import (and, for `from a import b`, `a.b`, a module or not)."""
    names: set[str] = set()
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {
        n
        for n in names
        if n.split(".")[0] not in LEFT_TO_THE_FIRST_RUN and not n.startswith("streamlit")
    }


def warm_imports(root: Path = ROOT) -> list[str]:
    """Import what the pages will (see the module docstring); the modules imported."""
    sources = [*page_scripts(root), *sorted((root / "ui").glob("*.py"))]
    done = []
    for name in [*sorted(imported_names(sources)), *ALSO]:
        try:
            importlib.import_module(name)
        except ImportError:  # `from a import b` where b is a function or a class
            continue
        done.append(name)
    return done


def page_scripts(root: Path = ROOT) -> list[Path]:
    return [root / "app.py", *sorted((root / "pages").glob("*.py"))]


def compile_pages(timeout_s: float = 60.0) -> int:
    """Once the runtime exists, compile every page into its script cache; how many."""
    from streamlit.runtime import Runtime

    deadline = time.monotonic() + timeout_s
    while not Runtime.exists():
        if time.monotonic() > deadline:
            return 0
        time.sleep(0.05)
    started, scripts = time.perf_counter(), page_scripts()
    try:
        cache = Runtime.instance()._script_cache  # the cache every session's runs read
        for path in scripts:
            cache.get_bytecode(str(path))
    except Exception:  # a Streamlit without this cache: pages compile at first open, as before
        log.warning("could not compile the pages ahead", exc_info=True)
        return 0
    done = len(scripts)
    print(f"ui.serve: {done} page scripts compiled ahead in {time.perf_counter() - started:.2f} s",
          file=sys.stderr, flush=True)  # fmt: skip
    return done


def main(argv: list[str]) -> None:
    PagesManager.uses_pages_directory = False
    warm_imports()
    threading.Thread(target=compile_pages, name="compile-pages", daemon=True).start()
    sys.argv = ["streamlit", "run", "app.py", *argv]
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main(sys.argv[1:])
