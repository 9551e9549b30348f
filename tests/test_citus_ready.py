"""The schema stays ready for Citus (docs/SCALING.md): checked from the metadata and the SQL.

Citus needs, for a hash-distributed table: every primary key and unique constraint includes
the distribution column; a foreign key between two distributed tables joins their
distribution columns (a distributed table may point at a reference table, never the other way
round); a join of two distributed tables equates their distribution columns. And a row may not
hold NULL in the distribution column.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from sqlalchemy import UniqueConstraint

from monitoring_core.schema import (
    DISTRIBUTED_TABLES,
    NULLABLE_DISTRIBUTION,
    PARTITIONED_TABLES,
    REFERENCE_TABLES,
    metadata,
)

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "SCALING.md"


def test_every_raw_table_has_a_distribution_column() -> None:
    assert set(PARTITIONED_TABLES) <= set(DISTRIBUTED_TABLES)
    for table, column in DISTRIBUTED_TABLES.items():
        assert column in metadata.tables[table].columns, f"{table}.{column}"
    assert not set(REFERENCE_TABLES) & set(DISTRIBUTED_TABLES)
    assert set(REFERENCE_TABLES) <= set(metadata.tables)


@pytest.mark.parametrize("table", sorted(DISTRIBUTED_TABLES))
def test_keys_include_the_distribution_column(table: str) -> None:
    t, column = metadata.tables[table], DISTRIBUTED_TABLES[table]
    keys = [[c.name for c in t.primary_key.columns]] if t.primary_key.columns else []
    keys += [[c.name for c in k.columns] for k in t.constraints if isinstance(k, UniqueConstraint)]
    keys += [[c.name for c in i.columns] for i in t.indexes if i.unique]
    for key in keys:
        assert column in key, f"{table}: key {key} lacks the distribution column {column}"


@pytest.mark.parametrize("table", sorted(metadata.tables))
def test_foreign_keys_suit_citus(table: str) -> None:
    for fk in metadata.tables[table].foreign_keys:
        target = fk.column.table.name
        if table in DISTRIBUTED_TABLES and target in DISTRIBUTED_TABLES:
            assert fk.parent.name == DISTRIBUTED_TABLES[table], f"{table}.{fk.parent.name}"
            assert fk.column.name == DISTRIBUTED_TABLES[target], f"-> {target}.{fk.column.name}"
        if table not in DISTRIBUTED_TABLES:
            assert target not in DISTRIBUTED_TABLES, f"{table} points at distributed {target}"


def test_distribution_columns_are_not_null_or_the_gap_is_documented() -> None:
    doc = DOC.read_text()
    for table, column in DISTRIBUTED_TABLES.items():
        nullable = metadata.tables[table].columns[column].nullable
        if table in NULLABLE_DISTRIBUTION:
            assert nullable, f"{table}.{column} is NOT NULL now: drop it from NULLABLE_DISTRIBUTION"
            assert f"`{table}.{column}`" in doc, f"docs/SCALING.md must say what to do: {table}"
        else:
            assert not nullable, f"{table}.{column} may be NULL: Citus refuses such rows"


def _sql_strings() -> list[tuple[str, str]]:
    """Every string constant (implicit concatenations joined) in monitoring_core's code."""
    found = []
    for path in sorted((ROOT / "monitoring_core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if "JOIN" in node.value.upper():
                    found.append((f"{path.relative_to(ROOT)}:{node.lineno}", node.value))
    return found


_JOIN = re.compile(
    r"\bJOIN\s+(?:LATERAL\s+)?(\w+)\s+(?:AS\s+)?(\w+)?\s*(?:ON\s+(.*?))?"
    r"(?=\bJOIN\b|\bWHERE\b|\bGROUP\s+BY\b|\bORDER\s+BY\b|\bLEFT\b|\bRIGHT\b|\bINNER\b|\)|$)",
    re.IGNORECASE | re.DOTALL,
)
_FROM = re.compile(r"\bFROM\s+(\w+)\s+(?:AS\s+)?(\w+)?", re.IGNORECASE)


def test_sql_joins_distributed_tables_only_on_their_distribution_columns() -> None:
    checked, problems = 0, []
    for where, sql in _sql_strings():
        froms = {m.group(1).lower() for m in _FROM.finditer(sql)}
        for m in _JOIN.finditer(sql):
            table, alias, on = m.group(1).lower(), (m.group(2) or m.group(1)), m.group(3) or ""
            if table not in DISTRIBUTED_TABLES or not froms & set(DISTRIBUTED_TABLES):
                continue
            checked += 1
            column = DISTRIBUTED_TABLES[table]
            equated = re.search(rf"\b{alias}\.{column}\s*=|=\s*{alias}\.{column}\b", on)
            using = re.search(rf"USING\s*\(\s*{column}\s*\)", sql[m.start() : m.end() + 40], re.I)
            if not (equated or using):
                problems.append(f"{where}: JOIN {table} {alias} ON {on.strip()[:80]}")
    assert not problems, "joins of distributed tables off their distribution column:\n" + "\n".join(
        problems
    )


def test_the_scaling_doc_names_every_table() -> None:
    doc = DOC.read_text()
    for table, column in DISTRIBUTED_TABLES.items():
        assert f"create_distributed_table('{table}', '{column}'" in doc, table
    for table in REFERENCE_TABLES:
        assert f"create_reference_table('{table}')" in doc, table
