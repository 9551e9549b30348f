"""The import rule of docs/ARCHITECTURE.md: every import points down the layer order.

Reads every `import` and `from … import` (also those inside functions) of the product code and
fails on an import that runs back up the order, on two packages that import each other, and on
a module of monitoring_core that nobody placed in the order.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# monitoring_core's packages and top-level modules, lowest first (docs/ARCHITECTURE.md):
# a unit may import only units before it in this list.
ORDER = [
    # foundation: configuration, vocabulary, database, time, people
    "config",
    "enums",
    "clock",
    "histogram",
    "wavelet",  # order statistics of many runs at once (the backtest's percentiles)
    "timerange",
    "schema",
    "db",
    "replica",
    "wedding_calendar",
    "live_settings",  # the calendar and key limits an admin changes live
    "roles",
    "audit",
    "outbound",
    "accounts",
    "sessions",
    "org_scope",
    "partitions",
    "migrate",
    # shared storage: the one raw points reader, rollups and their reads, retention
    "chunks",
    "points_reader",
    "rollups",
    "rollup_read",
    "metrics_query",
    "retention",
    "sharding",
    "compaction",
    "storage",
    # shared writers and shared configuration
    "performance",
    "ingest",
    "policies",
    "notify",
    "oncall",
    "dashboards",
    # domains
    "prometheus",
    "collectors",
    "health",
    "errors",
    "business",
    "logs",  # before alerts: the logs.lines signal finds blocks through logs.trigrams
    "alerts",
    "incidents",
    "traces",
    "otlp",
    # stories that cross domains
    "flows",
    # entry points inside the library
    "demo",
    "backup",
    "config_io",
    "api",
    "__main__",
]
# Outside the library: the worker, the UI and its pages sit above every monitoring_core unit.
OUTSIDE = {"jobs": {"jobs"}, "ui": {"ui"}, "pages": {"ui", "pages"}, "app.py": {"ui"}}


def _unit(path: Path) -> str:
    """The ORDER name of a monitoring_core file: its package, or its own stem at top level."""
    parts = path.relative_to(ROOT / "monitoring_core").parts
    return parts[0] if len(parts) > 1 else path.stem


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def _library_files() -> list[Path]:
    """Every product module of monitoring_core (migrations are generated history, not code)."""
    return [
        p for p in sorted((ROOT / "monitoring_core").rglob("*.py")) if "migrations" not in p.parts
    ]


def _edges() -> dict[tuple[str, str], list[str]]:
    """(from unit, to unit) -> where, for every import between two monitoring_core units."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in _library_files():
        source = _unit(path)
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] != "monitoring_core" or len(parts) < 2:
                continue
            target = parts[1]
            if target != source:
                edges.setdefault((source, target), []).append(
                    f"{path.relative_to(ROOT)}:{line} imports {module}"
                )
    return edges


def test_it_places_every_library_unit_in_the_order() -> None:
    units = {_unit(p) for p in _library_files()}
    units.discard("__init__")
    assert sorted(units - set(ORDER)) == []


def test_it_finds_no_import_running_up_the_layers() -> None:
    rank = {name: i for i, name in enumerate(ORDER)}
    upward = [
        where
        for (source, target), places in _edges().items()
        if rank.get(target, len(ORDER)) >= rank.get(source, -1)
        for where in places
    ]
    assert upward == []


def test_it_finds_no_two_packages_importing_each_other() -> None:
    edges = _edges()
    mutual = sorted({tuple(sorted(pair)) for pair in edges if (pair[1], pair[0]) in edges})
    assert mutual == []


@pytest.mark.parametrize("outside", sorted(OUTSIDE))
def test_it_keeps_the_worker_and_the_ui_out_of_the_library(outside: str) -> None:
    """monitoring_core never imports jobs/ui/pages; jobs, ui and pages only what sits below."""
    library = [
        f"{p.relative_to(ROOT)}:{line} imports {module}"
        for p in _library_files()
        for line, module in _imports(p)
        if module.split(".")[0] == outside.removesuffix(".py")
    ]
    assert library == []
    paths = [ROOT / outside] if outside.endswith(".py") else sorted((ROOT / outside).glob("*.py"))
    allowed = OUTSIDE[outside] | {"monitoring_core"}
    stray = [
        f"{p.relative_to(ROOT)}:{line} imports {module}"
        for p in paths
        for line, module in _imports(p)
        if module.split(".")[0] in {"jobs", "ui", "pages", "monitoring_core"}
        and module.split(".")[0] not in allowed
    ]
    assert stray == []


def test_it_would_catch_an_upward_import(tmp_path: Path) -> None:
    """The reader itself sees imports inside functions, where lazy upward imports hide."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from monitoring_core.flows import alert_cycle\n")
    assert _imports(module) == [(2, "monitoring_core.flows")]
