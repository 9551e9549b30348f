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
from typing import Any

__all__ = [
    "Frame",
    "culprit",
    "fingerprint_error",
    "frames_from_stack_trace",
    "grouping_frames",
    "normalize_message",
]

Frame = dict[str, Any]  # {module?, function?, filename?, lineno?, in_app?}

_PLACEHOLDERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s\"'<>]+"), "<url>"),
    (re.compile(r"(?i)\b[A-Z0-9._%+-]+@[A-Z0-9.-]+\.[A-Z]{2,}\b"), "<email>"),
    (
        re.compile(r"(?i)\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b"),
        "<uuid>",
    ),
    (
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
            r"|\b\d{1,2}:\d{2}:\d{2}(?:\.\d+)?\b"
        ),
        "<date>",
    ),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"(?i)\b(?:[0-9a-f]{1,4}:){3,7}[0-9a-f]{1,4}\b"), "<ip>"),
    (re.compile(r"(?i)\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b"), "<hex>"),
    (re.compile(r"(?<![A-Za-z<])-?\d+(?:\.\d+)?"), "<num>"),
)
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
    for pattern, placeholder in _PLACEHOLDERS:
        message = pattern.sub(placeholder, message)
    return " ".join(message.split())[:_MAX_TEMPLATE]


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
) -> str:
    """A stable hex digest naming the group; a client fingerprint wins."""
    default = _digest(["type", error_type, "message", message_template, *grouping_frames(frames)])
    if not client_fingerprint:
        return default
    parts = [
        default if p in ("{{ default }}", "{{default}}") else str(p) for p in client_fingerprint
    ]
    return _digest(["client", *parts])


def _digest(parts: Sequence[str]) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
