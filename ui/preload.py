"""Loading Streamlit's element code before a page needs it.

Streamlit's frontend loads the code of most elements (a table, a page link, a metric, a
code block, a chart, most inputs) the first time a page in that browser tab draws one: the
element shows a grey placeholder while its chunk and the chunks it depends on (2.5 MB for a
table; Plotly 4.6 MB) are fetched and compiled. Opening an error group from the Errors list
waited 0.4-0.6 s for the table, code and page-link chunks after its content had arrived
(`bench/detail_pages.py`: in-app 0.82-1.22 s, 0.50-0.62 s with the chunks loaded).

So the first run of each browser session (the sign-in form, or the page a link opens) draws
a script that imports those chunks one after another whenever the browser is idle, the way
single-page apps prefetch the routes a user is likely to open. The chunk files are named by
a content hash that changes with each Streamlit release; they are read from the installed
Streamlit's own entry bundle (`import(`./Table.<hash>.js`)`), so the URLs are exactly those
its lazy loader asks for and the browser reuses the loaded module. A Streamlit whose bundle
no longer names them loads nothing ahead (`tests/test_preload.py` notices).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import streamlit as st
from streamlit import file_util
from streamlit.delta_generator import DeltaGenerator

__all__ = ["WANTED", "chunk_files", "prefetch"]

# The lazily loaded elements the pages draw, the most used first (Plotly, the largest, last).
WANTED = (
    "Table",  # st.table (ui.widgets.small_table)
    "DataFrame",
    "PageLink",
    "Metric",
    "StreamlitSyntaxHighlighter",  # st.code
    "Button",
    "ButtonGroup",  # st.segmented_control, st.pills
    "Selectbox",
    "Checkbox",  # st.checkbox, st.toggle
    "TextInput",
    "TextArea",
    "Multiselect",
    "DownloadButton",
    "ArrowVegaLiteChart",  # st.line_chart, st.bar_chart, st.vega_lite_chart, st.metric's chart
    "PlotlyChart",
)
_IMPORT = re.compile(r"import\(`\./([A-Za-z]+)\.([A-Za-z0-9_-]+)\.js`\)")
_DONE = "_preload_done"
# Relative to Streamlit's entry bundle, as its own lazy imports are (`import.meta.url`).
_SCRIPT = """<script>
(() => {
  const entry = document.querySelector('script[type="module"][src*="/static/js/index."]');
  if (!entry || window.__monitoringPreload) return;
  window.__monitoringPreload = true;
  const idle = () => new Promise((go) => (window.requestIdleCallback || setTimeout)(go));
  (async () => {
    for (const file of FILES) {
      await idle();
      try { await import(new URL(file, entry.src).href); } catch (e) { return; }
    }
  })();
})();
</script>"""


@functools.cache
def chunk_files(static_dir: str | None = None) -> tuple[str, ...]:
    """The file names of the WANTED elements' chunks in the installed Streamlit, in WANTED's
    order (those its entry bundle names; none when it names none)."""
    folder = Path(static_dir or file_util.get_static_dir(), "static", "js")
    entries = sorted(folder.glob("index.*.js"))
    if not entries:
        return ()
    found = dict(_IMPORT.findall(entries[0].read_text(encoding="utf-8", errors="replace")))
    return tuple(f"{name}.{found[name]}.js" for name in WANTED if name in found)


def prefetch(where: DeltaGenerator | None = None) -> None:
    """Once per browser session (app.py calls this every run): draw the script that loads
    the element chunks while the browser is idle (see the module docstring)."""
    if st.session_state.get(_DONE):
        return
    st.session_state[_DONE] = True
    files = chunk_files()
    if files:
        (where or st).html(
            _SCRIPT.replace("FILES", json.dumps(list(files))), unsafe_allow_javascript=True
        )
