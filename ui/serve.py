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
"""

from __future__ import annotations

import sys

from streamlit.runtime.pages_manager import PagesManager
from streamlit.web import cli


def main(argv: list[str]) -> None:
    PagesManager.uses_pages_directory = False
    sys.argv = ["streamlit", "run", "app.py", *argv]
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main(sys.argv[1:])
