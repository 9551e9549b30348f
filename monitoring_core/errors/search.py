"""The error-group search box: `free text`, `is:regressed`, `type:KeyError`, `release:web@5.2.0`,
`browser:"Chrome 131"`, `!environment:staging` — parsed into a GroupSearch (pure, no I/O).

Grammar (Sentry's, trimmed): whitespace-separated terms, double quotes group words. A term
`key:value` (key of letters, digits, `_ . -`) is a filter; `!key:value` its negation; any other
term is a word that must occur in the group's type, message template (numbers in it are
`<num>`) or culprit, case-insensitive. Keys:

- `is:` a status (unresolved, resolved, ignored, regressed) or `assigned` / `unassigned`;
- `type:`, `message:` the group's error type (`*` a wildcard) and message template (substring);
- `service:`, `level:`, `severity:` the group's columns;
- `assigned:` a username, `me`, or `none`;
- anything else is a tag of the group's events in the range: the tags the event was sent with,
  and the ones every event has (TAG_COLUMNS: environment, release, service, user, …).

The result holds values only; queries.py turns it into bound parameters.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from monitoring_core.enums import ErrorGroupStatus, ErrorLevel, Severity

__all__ = ["GROUP_FIELDS", "GroupSearch", "SearchError", "TagTerm", "parse_search"]

MAX_QUERY = 1000
MAX_TERMS = 20
MAX_VALUE = 200
_KEY = re.compile(r"^(!?)([A-Za-z][A-Za-z0-9_.\-]{0,63}):(.+)$", re.DOTALL)
# Search keys that name a group column, with the values they accept (None: any text).
GROUP_FIELDS: dict[str, frozenset[str] | None] = {
    "type": None,
    "message": None,
    "service": None,
    "level": frozenset(ErrorLevel),
    "severity": frozenset(Severity),
}
_ALIASES = {"error.type": "type", "error_type": "type", "env": "environment", "org": "organization"}
_IS = frozenset(ErrorGroupStatus) | {"assigned", "unassigned"}


class SearchError(ValueError):
    """The search text cannot be read; the message says what to change."""


@dataclass(frozen=True)
class TagTerm:
    key: str
    value: str
    negated: bool = False


@dataclass(frozen=True)
class GroupSearch:
    """What a search asks for. Empty fields ask for nothing."""

    words: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()  # any of these
    assigned: bool | None = None  # is:assigned / is:unassigned
    assignees: tuple[str, ...] = ()  # assigned: usernames ("" for none)
    fields: tuple[TagTerm, ...] = ()  # group columns (GROUP_FIELDS)
    tags: tuple[TagTerm, ...] = ()  # event tags
    terms: tuple[str, ...] = field(default=(), compare=False)  # as typed, for display

    @property
    def empty(self) -> bool:
        return not (
            self.words
            or self.statuses
            or self.assigned is not None
            or self.assignees
            or self.fields
            or self.tags
        )


def _tokens(query: str) -> list[str]:
    if "\x00" in query:
        raise SearchError("the search contains a NUL character")
    if len(query) > MAX_QUERY:
        raise SearchError(f"the search is longer than {MAX_QUERY} characters")
    lexer = shlex.shlex(query, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    lexer.escape = ""  # a backslash is an ordinary character (Windows paths, regex-ish text)
    lexer.quotes = '"'
    try:
        tokens = [t for t in lexer if t.strip()]
    except ValueError:
        raise SearchError("a double quote is not closed") from None
    if len(tokens) > MAX_TERMS:
        raise SearchError(f"at most {MAX_TERMS} terms, got {len(tokens)}")
    return tokens


def parse_search(query: str | None, *, me: str | None = None) -> GroupSearch:
    """The GroupSearch a search box's text asks for; SearchError naming what is wrong.

    `me` is the signed-in user's name, for `assigned:me`.
    """
    words: list[str] = []
    statuses: list[str] = []
    assignees: list[str] = []
    fields: list[TagTerm] = []
    tags: list[TagTerm] = []
    assigned: bool | None = None
    tokens = _tokens(query or "")
    for token in tokens:
        match = _KEY.match(token)
        if match is None or "://" in token:  # a URL is text, not `https:` = `//…`
            words.append(token[:MAX_VALUE])
            continue
        negated, key, value = match.group(1) == "!", match.group(2).lower(), match.group(3)
        key = _ALIASES.get(key, key)
        if len(value) > MAX_VALUE:
            raise SearchError(f"the value of {key}: is longer than {MAX_VALUE} characters")
        if key == "is":
            status = value.lower()
            if status not in _IS or negated:
                raise SearchError(f"is: takes one of {', '.join(sorted(_IS))}, got {value!r}")
            if status in ("assigned", "unassigned"):
                assigned = status == "assigned"
            else:
                statuses.append(status)
        elif key == "assigned":
            if negated:
                raise SearchError("assigned: cannot be negated; use is:unassigned")
            name = value.strip()
            if name.lower() == "me":
                if not me:
                    raise SearchError("assigned:me needs a signed-in user")
                name = me
            assignees.append("" if name.lower() == "none" else name)
        elif key in GROUP_FIELDS:
            allowed = GROUP_FIELDS[key]
            if allowed is not None and value.lower() not in allowed:
                raise SearchError(f"{key}: takes one of {', '.join(sorted(allowed))}")
            fields.append(TagTerm(key, value.lower() if allowed else value, negated))
        else:
            tags.append(TagTerm(key, value, negated))
    return GroupSearch(
        words=tuple(words),
        statuses=tuple(dict.fromkeys(statuses)),
        assigned=assigned,
        assignees=tuple(dict.fromkeys(assignees)),
        fields=tuple(fields),
        tags=tuple(tags),
        terms=tuple(tokens),
    )
