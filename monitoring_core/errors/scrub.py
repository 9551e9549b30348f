"""Scrub secrets and personal data before anything is stored: values become `[REDACTED]`.

Two passes: values under a sensitive key (password, token, authorization, card number …) are
replaced whole; every other string is searched for bearer tokens, `key=value` secrets, known
API-key shapes, JWTs, URL credentials, card numbers (Luhn-checked, so order ids survive),
IBANs (mod-97-checked), US social security numbers (dashed), UK national insurance numbers,
e-mail addresses and phone numbers.

User ids (`Scrubber.identifier`) are kept countable: an id that holds any of these becomes
`pii-sha256:` and a short hash, so "users affected" still counts distinct people.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_SENSITIVE_KEYS", "REDACTED", "Scrubber", "iban_valid", "luhn_valid"]

REDACTED = "[REDACTED]"

# Matched against a key lower-cased with '-' and ' ' turned into '_', as substrings.
DEFAULT_SENSITIVE_KEYS: tuple[str, ...] = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "private_key",
    "authorization",
    "auth_header",
    "cookie",
    "credit_card",
    "card_number",
    "cardnumber",
    "cvv",
    "cvc",
    "iban",
    "ssn",
    "x_api_key",
    "x_sentry_auth",
    "dsn",
)

_SECRET_WORDS = r"password|passwd|pwd|secret|client_secret|token|access_token|refresh_token|api[_-]?key|apikey|auth|sig|signature"
_KEY_VALUE = re.compile(
    rf"(?i)((?:{_SECRET_WORDS})[\"']?\s*[:=]\s*[\"']?)(?!\[REDACTED\])[^\s\"'&,;}}]+"
)
_URL_CREDENTIALS = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*+://[^/\s:@]+:)[^/\s@]+@")
# (cheap lower-case substrings that must occur for the pattern to possibly match, pattern,
# replacement): most strings (function names, paths, numbers) skip every regex.
_RULES: tuple[tuple[tuple[str, ...], re.Pattern[str], str], ...] = (
    # Authorization header values: keep the scheme, drop the credential ("Basic" only when the
    # word after it looks like base64: a digit or an inner capital, so "Basic authentication
    # failed" survives).
    (("bearer",), re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9\-._~+/]{8,}=*"), rf"\1\2{REDACTED}"),
    (
        ("basic",),
        re.compile(r"(?i)\b(basic)(\s+)(?=[A-Za-z0-9+/]*(?-i:\d|[a-z][A-Z]))[A-Za-z0-9+/]{8,}=*"),
        rf"\1\2{REDACTED}",
    ),
    # key=value / key: value / "key": "value" for secret-looking keys (query strings, logs, JSON).
    (("pass", "pwd", "secret", "token", "key", "auth", "sig"), _KEY_VALUE, rf"\1{REDACTED}"),
    # Credentials in URLs: scheme://user:password@host
    (("://",), _URL_CREDENTIALS, rf"\1{REDACTED}@"),
    # JSON Web Tokens.
    (("eyj",), re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+"), REDACTED),
    # Well-known API key shapes: Stripe, our own, AWS, GitHub, Slack, Google.
    (
        ("_live_", "_test_", "mk_", "akia", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xox", "aiza"),
        re.compile(
            r"\b(?:(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{8,}|mk_[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}"
            r"|gh[pousr]_[A-Za-z0-9]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35})"
        ),
        REDACTED,
    ),
    (("@",), re.compile(r"\b[A-Za-z0-9._%+-]++@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"), REDACTED),
)
# Card and phone numbers need a run of at least 9 digits with separators.
_DIGIT_RUN = re.compile(r"\d[\d ().+-]{7,}\d")
# Strings repeat a lot (frame names, file paths, identical stack traces): remember scrubbed
# forms of strings up to this length, in a bounded table of two generations. When the newer
# one is full it becomes the older one, so strings in use survive the turnover caused by the
# unique ones (trace ids, messages with numbers) instead of all being scrubbed again.
_CACHED_LENGTH = 4096
_CACHE_SIZE = 4096  # per generation: at most ~32 MB per process
# Which rules could match: a substring test per trigger on the lower-cased text (most strings:
# none). One `in` per trigger is ~5x faster than one regex scan for them all (a lookahead
# alternation tried at every position), and overlapping triggers ("key", "eyj" in "keyj")
# are all seen.
_TRIGGERS: tuple[tuple[str, int], ...] = tuple(
    (t, i) for i, (triggers, _, _) in enumerate(_RULES) for t in triggers
)
# Any trigger at all: one scan that most short strings (ids, amounts, names) fail, skipping
# the per-trigger tests (~4x cheaper for them; past ~128 characters the substring tests are
# the cheaper scan). Exact: it matches wherever a trigger starts.
_ANY_TRIGGER = re.compile("|".join(sorted({re.escape(t) for t, _ in _TRIGGERS})))
_CARD = re.compile(r"(?<![\d\w])\d(?:[ -]?\d){12,18}(?![\d\w])")
# International numbers (+44 20 7946 0958) and separated national ones (020 7946 0958,
# (555) 123-4567, 555-123-4567); bare digit runs are left alone: they are usually ids.
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){1,4}"
    r"|\(\d{3,5}\)[ .-]?\d{3,4}[ .-]?\d{3,4}"
    r"|0\d{2,4}[ .-]\d{3,4}[ .-]?\d{3,4}"
    r"|\d{3}[.-]\d{3}[.-]\d{4})(?![\w])"
)
_DIGITS = re.compile(r"\d")
# IBAN: country, check digits, 11-30 letters/digits, printed in groups of four or run together
# (mod-97-checked, so product codes survive).
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"
)
# US SSN, dashed or spaced (a bare nine-digit run is usually an id); never 000, 666 or 9xx.
_SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\w-])")
# UK national insurance number: two prefix letters (not D, F, I, U or V; not the never-used
# pairs; O and Q are allowed although unused, so HMRC's own example QQ 12 34 56 C is caught),
# six digits, suffix A-D; "AB 12 34 56 C" or "AB123456C".
_NINO = re.compile(
    r"(?<![A-Za-z0-9])(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-TW-Z]{2}"
    r" ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])"
)
# Gates: each is the pattern after it without its look-arounds (and with its repeats cut to
# the fewest), so it matches wherever that pattern could: a string it does not match is left
# unchanged by the substitution, which is skipped. They begin with a character class, which
# the regex engine scans for quickly; the patterns begin with look-behinds, tried at every
# position (a national insurance number scan of a 30-character log line: ~5-10 µs, and most
# strings with six digits, such as ids and order numbers, went through it).
_NINO_GATE = re.compile(r"[A-CEGHJ-TW-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]")
_IBAN_GATE = re.compile(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2}")
_SSN_GATE = re.compile(r"\d{3}([- ])\d{2}\1\d{4}")
_CARD_GATE = re.compile(r"\d(?:[ -]?\d){12}")
# The key=value rule needs a ':' or '=', the URL credentials rule an '@' (as well as its
# trigger words): without them those rules' scans are skipped.
# By rule index (a pattern's own hash is computed anew at every call: not a key to look up).
_RULE_NEEDS: tuple[tuple[str, ...], ...] = tuple(
    (":", "=") if pattern is _KEY_VALUE else ("@",) if pattern is _URL_CREDENTIALS else ()
    for _, pattern, _ in _RULES
)


def iban_valid(text: str) -> bool:
    """The IBAN checksum (ISO 13616: rearranged, letters as 10-35, mod 97 == 1)."""
    compact = text.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _iban(match: re.Match[str]) -> str:
    return REDACTED if iban_valid(match.group()) else match.group()


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a digit string (card numbers pass, most order ids do not)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = "".join(_DIGITS.findall(match.group()))
    return REDACTED if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group()


def _phone(match: re.Match[str]) -> str:
    return REDACTED if 9 <= len(_DIGITS.findall(match.group())) <= 15 else match.group()


@dataclass(frozen=True)
class Scrubber:
    """Scrubs strings and nested JSON-like data; `extra_keys` adds field names to redact."""

    extra_keys: Iterable[str] = ()
    _keys: tuple[str, ...] = field(init=False, repr=False)
    _seen: dict[str, bool] = field(init=False, repr=False, compare=False)
    _texts: dict[str, str] = field(init=False, repr=False, compare=False)
    _older: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        extra = tuple(_norm_key(k) for k in self.extra_keys if k.strip())
        object.__setattr__(self, "_keys", DEFAULT_SENSITIVE_KEYS + extra)
        object.__setattr__(self, "_seen", {})
        object.__setattr__(self, "_texts", {})
        object.__setattr__(self, "_older", {})

    def is_sensitive_key(self, key: str) -> bool:
        known = self._seen.get(key)
        if known is None:
            norm = _norm_key(key)
            known = any(k in norm for k in self._keys)
            if len(self._seen) < 10_000:  # keys repeat: filename, lineno, amount …
                self._seen[key] = known
        return known

    def text(self, value: str) -> str:
        """The string with every secret-looking part replaced by [REDACTED]."""
        done = self._texts.get(value)
        if done is None:
            done = self._older.get(value)
            if done is None:
                done = self._scrub_text(value)
            if len(value) <= _CACHED_LENGTH:
                if len(self._texts) >= _CACHE_SIZE:
                    self._older.clear()
                    self._older.update(self._texts)
                    self._texts.clear()
                self._texts[value] = done
        return done

    def _scrub_text(self, value: str) -> str:
        lower = value.lower()
        if len(lower) > 128 or _ANY_TRIGGER.search(lower) is not None:
            rules = {i for t, i in _TRIGGERS if t in lower}
            for index in sorted(rules):
                needs = _RULE_NEEDS[index]
                if needs and not any(ch in value for ch in needs):
                    continue
                _, pattern, repl = _RULES[index]
                value = pattern.sub(repl, value)
        if _DIGIT_RUN.search(value):
            if _IBAN_GATE.search(value):
                value = _IBAN.sub(_iban, value)
            if _SSN_GATE.search(value):
                value = _SSN.sub(REDACTED, value)
            if _CARD_GATE.search(value):
                value = _CARD.sub(_card, value)
            value = _PHONE.sub(_phone, value)
        if _NINO_GATE.search(value):
            value = _NINO.sub(REDACTED, value)
        return value

    def identifier(self, value: str) -> str:
        """A user id as stored: unchanged, or `pii-sha256:HASH` when it holds personal data
        (an e-mail address, IBAN, SSN, NI number, phone or card number …), so distinct users
        still count apart without the data being kept."""
        if self.text(value) == value:
            return value
        return "pii-sha256:" + hashlib.sha256(value.strip().lower().encode()).hexdigest()[:16]

    def data(self, value: Any) -> Any:
        """A scrubbed copy of JSON-like data: sensitive keys redacted, strings scrubbed."""
        # Dispatch on the exact type first: Sentry frames alone hold ~80 values per event.
        kind = type(value)
        if kind is str:
            return self.text(value)
        if kind is dict:
            return self._dict(value)
        if kind is list or kind is tuple:
            return self._list(value)
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return self._dict(value)
        if isinstance(value, list | tuple):
            return [self._item(v) for v in value]
        return value

    def _dict(self, value: dict[Any, Any]) -> dict[Any, Any]:
        # _value_for inlined for the common leaves (strings, numbers, None): same rules.
        out: dict[Any, Any] = {}
        seen, texts = self._seen, self._texts
        for k, v in value.items():
            key = k if type(k) is str else str(k)
            sensitive = seen.get(key)
            if sensitive is None:
                sensitive = self.is_sensitive_key(key)
            kind = type(v)
            if kind is str:
                if sensitive and v:
                    out[k] = REDACTED
                else:
                    done = texts.get(v)
                    out[k] = done if done is not None else self.text(v)
            elif sensitive and v not in _EMPTY:
                out[k] = REDACTED
            elif v is None or kind is int or kind is float or kind is bool:
                out[k] = v
            else:
                out[k] = self.data(v)
        return out

    def _list(self, value: list[Any] | tuple[Any, ...]) -> list[Any]:
        # _item inlined for strings (source lines, breadcrumbs, tags as pairs' members): a
        # string is not a header pair, so _item would scrub it as text; same rules.
        out: list[Any] = []
        texts = self._texts
        for v in value:
            if type(v) is str:
                done = texts.get(v)
                out.append(done if done is not None else self.text(v))
            else:
                out.append(self._item(v))
        return out

    def _value_for(self, key: str, value: Any) -> Any:
        if value not in _EMPTY and self.is_sensitive_key(key):
            return REDACTED
        return self.data(value)

    def _item(self, value: Any) -> Any:
        # Header lists as Sentry sends them: [["Authorization", "Bearer …"], …]
        if isinstance(value, list | tuple) and len(value) == 2 and isinstance(value[0], str):
            return [value[0], self._value_for(value[0], value[1])]
        return self.data(value)


# Values that are not redacted even under a sensitive key (nothing to hide). Never mutated.
_EMPTY: tuple[Any, ...] = (None, "", [], {})


def _norm_key(key: str) -> str:
    return key.strip().lower().replace("-", "_").replace(" ", "_")
