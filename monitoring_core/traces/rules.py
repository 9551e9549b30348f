"""Pure decisions about spans: a trace's waterfall order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

__all__ = ["parse_attribute", "waterfall"]


def waterfall(spans: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The spans in tree order (each parent before its children, siblings by start time),
    each with `depth` and `offset_ms` from the trace's first start.

    A span whose parent is not in the trace (not received, or in another service's trace
    piece) is drawn as a root; a cycle in forged parent ids cannot loop (each span once).
    """
    if not spans:
        return []
    ids = {span["span_id"] for span in spans}
    children: dict[str | None, list[Mapping[str, Any]]] = {}
    for span in spans:
        parent = span.get("parent_span_id")
        key = parent if parent in ids and parent != span["span_id"] else None
        children.setdefault(key, []).append(span)
    for group in children.values():
        group.sort(key=lambda s: (s["time"], s["span_id"]))
    start: datetime = min(span["time"] for span in spans)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()

    def visit(span: Mapping[str, Any], depth: int) -> None:
        stack = [(span, depth)]
        while stack:
            current, level = stack.pop()
            if current["span_id"] in seen:
                continue
            seen.add(current["span_id"])
            offset = (current["time"] - start).total_seconds() * 1000
            out.append({**current, "depth": level, "offset_ms": offset})
            for child in reversed(children.get(current["span_id"], [])):
                stack.append((child, level + 1))

    for root in children.get(None, []):
        visit(root, 0)
    for span in sorted(spans, key=lambda s: (s["time"], s["span_id"])):  # cycles: leftovers
        if span["span_id"] not in seen:
            visit(span, 0)
    return out


def parse_attribute(filter_text: str) -> tuple[str, Any] | None:
    """`key=value` as an attribute filter; the value is a number or boolean when it reads as
    one (attributes keep their OTLP type: `http.response.status_code=500` is the integer),
    else the text. None when there is no `=` or no key."""
    key, sep, value = filter_text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key:
        return None
    if value in ("true", "false"):
        return key, value == "true"
    for kind in (int, float):
        try:
            number = kind(value)
        except ValueError:
            continue
        if number == number and abs(number) != float("inf"):  # nan / inf stay text
            return key, number
    return key, value
