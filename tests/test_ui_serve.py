"""ui/serve.py, the UI's launcher: it imports ahead what the pages import from outside `ui/`
and Streamlit, and nothing whose import needs Streamlit's runtime. (That it tells Streamlit
app.py declares its pages is shown in a browser: tests/test_browser_links.py.)"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from ui.serve import imported_names, page_scripts

ROOT = Path(__file__).resolve().parent.parent


def test_it_names_the_pages_imports_outside_ui_and_streamlit(tmp_path: Path) -> None:
    page = tmp_path / "page.py"
    page.write_text(
        "import pandas as pd\nimport streamlit as st\nfrom streamlit_autorefresh import x\n"
        "from ui import fmt\nfrom monitoring_core.errors import queries\nfrom . import local\n"
        "from monitoring_core.incidents.service import create_incident\n"
    )
    assert imported_names([page]) == {
        "pandas",
        "monitoring_core.errors",
        "monitoring_core.errors.queries",
        "monitoring_core.incidents.service",
        "monitoring_core.incidents.service.create_incident",  # not a module: skipped on import
    }


def test_warming_imports_what_the_pages_use_and_no_ui_module() -> None:
    script = (
        "import json, sys; from ui.serve import warm_imports; done = warm_imports();"
        "print(json.dumps([done, sorted(m for m in sys.modules if m.split('.')[0] == 'ui')]))"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    done, ui_modules = json.loads(run.stdout.splitlines()[-1])
    assert {"pandas", "plotly.graph_objects", "monitoring_core.errors.queries", "altair"} <= set(
        done
    )
    assert ui_modules == ["ui", "ui.serve"]
    assert "ScriptRunContext" not in run.stderr and "No runtime found" not in run.stderr


def test_the_server_compiles_every_page_ahead() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = subprocess.Popen(
        [sys.executable, "-m", "ui.serve", "--server.port", str(port), "--server.headless",
         "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline, said = time.monotonic() + 90, ""
        assert server.stderr is not None
        while time.monotonic() < deadline and "compiled ahead" not in said:
            said = server.stderr.readline() or said
        assert f"ui.serve: {len(page_scripts())} page scripts compiled ahead" in said
    finally:
        server.terminate()
        server.wait(15)
