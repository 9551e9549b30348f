"""CSV export of any table the BI views show (the pages' download buttons and `?format=csv`)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from datetime import date, datetime

__all__ = ["to_csv"]


def _cell(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        # Spreadsheets run cells starting with these as formulas (CSV injection, OWASP).
        return "'" + value
    return value


def to_csv(rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None) -> str:
    """Rows as CSV text with a header; the columns of the first row unless given."""
    out = io.StringIO()
    names = list(columns or (rows[0].keys() if rows else []))
    writer = csv.DictWriter(out, fieldnames=names, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in names})
    return out.getvalue()
