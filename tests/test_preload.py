"""ui.preload: the element chunks named from Streamlit's own bundle, drawn once per session."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from streamlit.testing.v1 import AppTest

from monitoring_core.roles import Role
from tests.ui_harness import logged_in_app  # noqa: F401  (fixture)
from ui import preload


def test_the_installed_streamlit_names_every_wanted_chunk() -> None:
    """A Streamlit upgrade that renames or inlines an element's chunk shows up here, not as
    a page that is quietly slower."""
    files = preload.chunk_files()
    assert [f.split(".")[0] for f in files] == list(preload.WANTED)
    static = Path(preload.file_util.get_static_dir(), "static", "js")
    assert all((static / f).is_file() for f in files)


def test_it_reads_the_lazy_imports_of_the_entry_bundle_in_wanted_order(tmp_path: Path) -> None:
    js = tmp_path / "static" / "js"
    js.mkdir(parents=True)
    (js / "index.Ab12.js").write_text(
        "Gh=(0,U.lazy)(()=>H(()=>import(`./PlotlyChart.D9Z0_fxz.js`),__vite__mapDeps([0])))"
        ";Kh=(0,U.lazy)(()=>H(()=>import(`./Table.-x1.js`),__vite__mapDeps([1])))"
        ";import(`./Balloons.C2.js`)"
    )
    assert preload.chunk_files(str(tmp_path)) == ("Table.-x1.js", "PlotlyChart.D9Z0_fxz.js")
    empty = tmp_path / "none"
    (empty / "static" / "js").mkdir(parents=True)
    assert preload.chunk_files(str(empty)) == ()


def _scripts(at: AppTest) -> list[str]:
    """The bodies of the st.html elements drawn (AppTest keeps them as unknown elements)."""
    found = []
    for node in [*at.main, *at.sidebar]:
        body = getattr(getattr(node, "proto", None), "body", "")
        if isinstance(body, str) and "<script>" in body:
            found.append(body)
    return found


def _loaded(script: str) -> list[str]:
    match = re.search(r"for \(const file of (\[.*?\])\)", script)
    assert match, script
    return list(json.loads(match.group(1)))


def test_the_sign_in_form_draws_the_preload_once_per_session(
    logged_in_app: Callable[[Role | None], AppTest],  # noqa: F811
) -> None:
    at = logged_in_app(None)
    at.run()
    assert not at.exception, at.exception
    first = [s for s in _scripts(at) if "__monitoringPreload" in s]
    assert len(first) == 1
    assert _loaded(first[0]) == list(preload.chunk_files())
    at.run()  # the same session: the browser has them already
    assert not [s for s in _scripts(at) if "__monitoringPreload" in s]


def test_a_session_that_begins_signed_in_draws_it_in_the_sidebar(
    logged_in_app: Callable[[Role | None], AppTest],  # noqa: F811
) -> None:
    at = logged_in_app(Role.VIEWER)
    at.run()
    assert not at.exception, at.exception
    bodies = [
        getattr(getattr(n, "proto", None), "body", "")
        for n in at.sidebar
        if "__monitoringPreload" in str(getattr(getattr(n, "proto", None), "body", ""))
    ]
    assert len(bodies) == 1 and "Table." in bodies[0]
    at.run()
    assert not [s for s in _scripts(at) if "__monitoringPreload" in s]
