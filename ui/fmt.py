"""Numbers as people read them on a dashboard, and user data made safe for markdown."""

from __future__ import annotations

import math
import re

__all__ = [
    "count",
    "md_code",
    "md_escape",
    "milliseconds",
    "number",
    "per_minute",
    "percent",
    "plural",
]

# Every ASCII punctuation character may be backslash-escaped in CommonMark; escaping them all
# also covers Streamlit's own syntax (:color[...], :material/icon:, $math$).
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# GFM links bare URLs, www. names and e-mail addresses by matching the text *after* escapes
# are resolved, so those get a zero-width space (invisible) where the pattern would match.
_AUTOLINK = re.compile(r"(?i)(?<=:)(?=//)|(?<=\bwww)(?=\.)|(?<=@)")
_ZWSP = "\u200b"
_BACKTICKS = re.compile(r"`+")


def md_escape(value: object) -> str:
    """User data for an st.markdown/st.caption/label string: shown as typed, one line, never
    markup (no link, image, code span, heading, list, badge, icon or HTML)."""
    text = _AUTOLINK.sub(_ZWSP, " ".join(str(value).split()))
    return _PUNCTUATION.sub(r"\\\1", text)


def md_code(value: object) -> str:
    """User data as an inline code span: a fence longer than any backtick run inside it
    (CommonMark's rule), so the value cannot close the span early."""
    text = " ".join(str(value).split())
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    return f"{fence} {text} {fence}"


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def milliseconds(value: float | None) -> str:
    """`84 ms`, `1.25 s`; an em dash when there is no value."""
    if value is None or _missing(value):
        return "—"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def percent(share: float | None, digits: int = 2) -> str:
    """A share (0..1) as a percentage."""
    if share is None or _missing(share):
        return "—"
    return f"{share * 100:.{digits}f} %"


def per_minute(value: float | None) -> str:
    """Requests per minute."""
    if value is None or _missing(value):
        return "—"
    return f"{value:,.1f}/min" if value < 100 else f"{value:,.0f}/min"


def number(value: float | None) -> str:
    """A measured value with up to four significant digits: `1,234`, `0.25`, `inf`."""
    if value is None or _missing(value):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def count(value: int | float | None) -> str:
    """A count with thousands separators."""
    if value is None or _missing(float(value)):
        return "—"
    return f"{int(value):,}"


def plural(number: int, noun: str) -> str:
    """`1 endpoint`, `3 endpoints`."""
    return f"{number:,} {noun}" + ("" if number == 1 else "s")
