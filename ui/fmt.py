"""Numbers as people read them on a dashboard, and user data made safe for markdown."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from monitoring_core.audit import actor_name

__all__ = [
    "actor",
    "aggregation",
    "count",
    "duration",
    "label",
    "pairs",
    "md_code",
    "md_escape",
    "measured",
    "milliseconds",
    "number",
    "per_minute",
    "percent",
    "plural",
    "precise_ms",
    "size",
    "value",
    "when",
    "when_exact",
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


def when(moment: datetime | None, tz: ZoneInfo, now: datetime | None = None) -> str:
    """A moment in the business time zone as people say it: `today 14:05`, `yesterday 09:12`,
    `Mon 8 Jun 14:05` within the year, `8 Jun 2025 14:05` otherwise; an em dash for None."""
    if moment is None:
        return "—"
    local = moment.astimezone(tz)
    if now is not None:
        today = now.astimezone(tz).date()
        if local.date() == today:
            return f"today {local:%H:%M}"
        if local.date() == today - timedelta(days=1):
            return f"yesterday {local:%H:%M}"
        if local.year == today.year:
            return f"{local:%a} {local.day} {local:%b %H:%M}"
    return f"{local.day} {local:%b %Y %H:%M}"


def duration(value: timedelta | float | None) -> str:
    """A span (a timedelta or seconds) in the two largest units: `45 s`, `12 min`,
    `3 h 5 min`, `2 d 4 h`; an em dash for None."""
    if value is None:
        return "—"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if math.isnan(seconds):
        return "—"
    sign, seconds = ("−", -seconds) if seconds < 0 else ("", seconds)
    whole = int(round(seconds))
    if whole < 60:
        return f"{sign}{whole} s"
    minutes = whole // 60
    if minutes < 60:
        return f"{sign}{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{sign}{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(hours, 24)
    return f"{sign}{days} d" + (f" {hours} h" if hours else "")


_ACRONYMS = {"id", "url", "api", "http", "sla", "mtta", "mttr", "p95", "p99", "cpu", "ui", "sql",
             "tcp", "dns", "tls", "pid"}  # fmt: skip


def label(name: object) -> str:
    """A snake_case or kebab-case identifier as a person's label: `incident_created` →
    `Incident created`, `http_check` → `HTTP check`; other text unchanged; an em dash for
    nothing (None, "", a missing value in a frame)."""
    if not isinstance(name, str) or not name:
        return "—"
    if not re.fullmatch(r"[a-z0-9]+([_-][a-z0-9]+)*", name):
        return name
    words = [w.upper() if w in _ACRONYMS else w for w in re.split(r"[_-]", name)]
    first = words[0]
    return " ".join([first[:1].upper() + first[1:], *words[1:]])


def when_exact(moment: datetime | None, tz: ZoneInfo, now: datetime | None = None) -> str:
    """`when` to the second, for things minutes apart (traces, log records):
    `today 14:05:09`, `Mon 8 Jun 14:05:09`; an em dash for None."""
    if moment is None:
        return "—"
    return f"{when(moment, tz, now)}:{moment.astimezone(tz):%S}"


def precise_ms(value: float | None) -> str:
    """A span's duration as tracing tools show it, sub-millisecond ones too: `0.42 ms`,
    `8.5 ms`, `84 ms`, `1.25 s`, `1 min 35 s`, then `duration`'s units; an em dash for None."""
    if value is None or _missing(value):
        return "—"
    if value < 1:
        return f"{value:.2g} ms"
    if value < 10:
        return f"{value:.1f} ms"
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 60_000:
        return f"{value / 1000:.2f} s"
    if value < 3_600_000:
        minutes, seconds = divmod(round(value / 1000), 60)
        return f"{minutes} min" + (f" {seconds} s" if seconds else "")
    return duration(value / 1000)


def size(value: float | None) -> str:
    """Bytes as people read them: `812 B`, `3.4 MB`, `1.2 GB` (powers of 1,000)."""
    if value is None or _missing(value):
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1000:
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    return f"{value:,.1f} TB"


def value(item: object) -> str:
    """A stored attribute value (str, int, float, bool, list, dict, as OTLP and JSON give
    them) as one line of text: `true`, `502`, `0.25`, `a, b`, `attempt: 2, provider: stripe`
    (a list or dict inside another in brackets); ids and codes keep their digits (no
    separators); an em dash for None."""
    return _value(item, nested=False)


def _value(item: object, *, nested: bool) -> str:
    if item is None:
        return "—"
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, float):
        if math.isnan(item) or math.isinf(item):
            return number(item)
        if item.is_integer() and abs(item) < 1e15:
            return str(int(item))
        return f"{item:.0f}" if abs(item) >= 1e6 else f"{item:.6g}"
    if isinstance(item, Mapping):
        text = ", ".join(f"{k}: {_value(v, nested=True)}" for k, v in sorted(item.items()))
        return f"{{{text}}}" if nested else text or "—"
    if isinstance(item, list | tuple):
        text = ", ".join(_value(part, nested=True) for part in item)
        return f"[{text}]" if nested else text or "—"
    if isinstance(item, bytes):
        return item.hex()
    return str(item)


def pairs(mapping: Mapping[str, object] | None, *, labels: bool = False) -> str:
    """A small dict as one line, in key order: `attempt: 2, provider: stripe`; with
    `labels`, keys that are identifiers read as words (`old_status` → `Old status`)."""
    if not mapping:
        return ""
    return ", ".join(
        f"{label(key) if labels else key}: {_value(item, nested=True)}"
        for key, item in sorted(mapping.items())
    )


_BYTES = {"bytes", "byte", "b"}
_SECONDS = {"seconds", "second", "s"}
_MILLISECONDS = {"milliseconds", "ms"}


def measured(item: float | None, unit: str | None) -> str:
    """A metric's value with its catalog unit: `1.2 MB` (bytes), `3.4 KB/s` (B/s), `1.25 s`
    (ms), `45 s` (seconds), `38.8 %`, `892.7 users`, `0.25` (no unit); an em dash for None."""
    if item is None or _missing(item):
        return "—"
    name = (unit or "").strip()
    if name.lower() in _BYTES:
        return size(item)
    if name.lower() in ("b/s", "bytes/s"):
        return f"{size(item)}/s"
    if name.lower() in _MILLISECONDS:
        return milliseconds(item)
    if name.lower() in _SECONDS:
        return f"{number(item)} s"
    if name.lower() in ("percent", "%"):
        return f"{number(item)} %"
    return f"{number(item)} {name}" if name else number(item)


_AGGREGATIONS = {"avg": "Average", "min": "Minimum", "max": "Maximum", "sum": "Sum",
                 "count": "Count", "last": "Last value"}  # fmt: skip


def aggregation(name: str) -> str:
    """A metrics query's aggregation as a word: `avg` → `Average`; percentiles stay `p95`."""
    return _AGGREGATIONS.get(name, name)


def actor(who: str | None, missing: str = "—") -> str:
    """Who acted, stored as `KIND:NAME` (monitoring_core.audit), in words: `user:sam` → `sam`,
    `system:escalation` → `escalation (system)`, `apikey:ci` → `ci (API key)`; other text as
    it is; `missing` when nobody is named (None, "", a missing value in a frame)."""
    if not isinstance(who, str) or not who:
        return missing
    return actor_name(who)
