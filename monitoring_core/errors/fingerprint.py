"""Grouping: one fingerprint per bug, however many ids, times and addresses its messages carry.

fingerprint = sha256(exception type, message with parameters replaced by placeholders, the
in-app frames' module + function). Line numbers are left out on purpose so a group survives
unrelated edits of the file; a client-given fingerprint wins (Sentry's `{{ default }}` expands
to the computed one).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Frame",
    "Trace",
    "culprit",
    "fingerprint_error",
    "frames_from_stack_trace",
    "grouping_frames",
    "normalize_message",
    "parse_trace",
]

Frame = dict[str, Any]  # {module?, function?, filename?, lineno?, in_app?}

# One alternation scanned once (the order is the precedence at a position); each named branch
# becomes its placeholder. Explicit [a-fA-F] classes instead of IGNORECASE, possessive
# quantifiers, and the url/email branches only when the message has "://" or "@": a message
# is scanned at every position, so these keep it to a few microseconds.
_H = "[0-9a-fA-F]"
_PLACEHOLDERS: tuple[tuple[str, str, str], ...] = (
    ("url", r"\b[a-zA-Z][a-zA-Z0-9+.-]*+://[^\s\"'<>]+", "<url>"),
    ("email", r"\b[A-Za-z0-9._%+-]++@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b", "<email>"),
    ("uuid", rf"\b{_H}{{8}}-?{_H}{{4}}-?{_H}{{4}}-?{_H}{{4}}-?{_H}{{12}}\b", "<uuid>"),
    (
        "date",
        r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
        r"|\b\d{1,2}:\d{2}:\d{2}(?:\.\d+)?\b",
        "<date>",
    ),
    ("ip4", r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b", "<ip>"),
    ("ip6", rf"\b(?:{_H}{{1,4}}:){{3,7}}{_H}{{1,4}}\b", "<ip>"),
    (
        "hex",
        rf"\b0[xX]{_H}+\b|\b(?={_H}*\d)(?={_H}*[a-fA-F]){_H}{{8,}}\b",
        "<hex>",
    ),
    ("num", r"(?<![A-Za-z<])-?\d+(?:\.\d+)?", "<num>"),
)
_PLACEHOLDER = {name: placeholder for name, _, placeholder in _PLACEHOLDERS}


def _combined(with_url: bool, with_email: bool) -> re.Pattern[str]:
    skip = ({"url"} if not with_url else set()) | ({"email"} if not with_email else set())
    return re.compile(
        "|".join(f"(?P<{name}>{rx})" for name, rx, _ in _PLACEHOLDERS if name not in skip)
    )


_HAS_PARAMETER = re.compile(r"[\d@]|://")
_NORMALIZERS = {(u, e): _combined(u, e) for u in (False, True) for e in (False, True)}
_MAX_TEMPLATE = 1000

# "File "app/pay.py", line 12, in charge" (Python) and "at charge (src/pay.js:12:5)" (JS).
_PY_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>[^\s]+)')
_JS_FRAME = re.compile(
    r"at (?:(?P<func>[^\s(]+) )?\(?(?P<file>[^\s()]+?):(?P<line>\d+)(?::\d+)?\)?\s*$",
    re.MULTILINE,
)
_LIBRARY_PATHS = ("site-packages", "dist-packages", "node_modules", "/lib/python", "<frozen")


def normalize_message(message: str) -> str:
    """The message with URLs, e-mails, UUIDs, dates, IPs, hex ids and numbers as placeholders."""
    pattern = _NORMALIZERS[("://" in message, "@" in message)]
    # Token by token: most words carry no digit and skip the regex altogether.
    tokens = [
        pattern.sub(_placeholder, token)
        if not token.isalpha() and _HAS_PARAMETER.search(token)
        else token
        for token in message.split()
    ]
    return " ".join(tokens)[:_MAX_TEMPLATE]


def _placeholder(match: re.Match[str]) -> str:
    return _PLACEHOLDER[match.lastgroup or "num"]


def frames_from_stack_trace(stack_trace: str | None) -> list[Frame]:
    """Frames parsed from a Python or JavaScript stack trace string, oldest first."""
    if not stack_trace:
        return []
    frames = [_frame(m["file"], m["func"], m["line"]) for m in _PY_FRAME.finditer(stack_trace)]
    if frames:
        return frames
    # JavaScript prints the newest frame first.
    found = [
        _frame(m["file"], m["func"] or "?", m["line"]) for m in _JS_FRAME.finditer(stack_trace)
    ]
    return list(reversed(found))


def _frame(filename: str, function: str, line: str) -> Frame:
    return {
        "filename": filename,
        "function": function,
        "lineno": int(line),
        "in_app": not any(p in filename for p in _LIBRARY_PATHS),
    }


def grouping_frames(frames: Sequence[Frame]) -> list[str]:
    """`module.function` of the in-app frames (all frames when none is marked in-app)."""
    chosen = [f for f in frames if f.get("in_app")] or list(frames)
    return [f"{_module(f)}.{f.get('function') or '?'}" for f in chosen]


def _module(frame: Frame) -> str:
    if frame.get("module"):
        return str(frame["module"])
    filename = str(frame.get("filename") or frame.get("abs_path") or "?")
    # Strip directories and extension so the same code deployed to another path groups alike.
    return filename.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]


def culprit(frames: Sequence[Frame]) -> str | None:
    """Where it broke: the newest in-app frame as `module in function`."""
    chosen = [f for f in frames if f.get("in_app")] or list(frames)
    if not chosen:
        return None
    last = chosen[-1]
    return f"{_module(last)} in {last.get('function') or '?'}"


def fingerprint_error(
    error_type: str,
    message_template: str,
    frames: Sequence[Frame],
    client_fingerprint: Sequence[str] | None = None,
    *,
    grouping: Sequence[str] | None = None,
) -> str:
    """A stable hex digest naming the group; a client fingerprint wins.

    `grouping` is `grouping_frames(frames)` when the caller has it already (see parse_trace).
    """
    if grouping is None:
        grouping = grouping_frames(frames)
    default = _digest(["type", error_type, "message", message_template, *grouping])
    if not client_fingerprint:
        return default
    parts = [
        default if p in ("{{ default }}", "{{default}}") else str(p) for p in client_fingerprint
    ]
    return _digest(["client", *parts])


@dataclass(frozen=True)
class Trace:
    """What grouping needs from a text stack trace (shared from a cache: do not mutate)."""

    frames: list[Frame]
    grouping: tuple[str, ...]
    culprit: str | None


_TRACES: dict[str, Trace] = {}
_TRACE_CACHE_SIZE = 4096


def parse_trace(stack_trace: str) -> Trace:
    """Frames, grouping key and culprit of a text stack trace; the same bug sends the same
    trace again and again, so results are cached (bounded)."""
    trace = _TRACES.get(stack_trace)
    if trace is None:
        frames = frames_from_stack_trace(stack_trace)
        trace = Trace(frames, tuple(grouping_frames(frames)), culprit(frames))
        if len(_TRACES) >= _TRACE_CACHE_SIZE:
            _TRACES.clear()
        _TRACES[stack_trace] = trace
    return trace


def _digest(parts: Sequence[str]) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
