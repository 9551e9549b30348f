"""The error ingest's fast paths give the same results as the plain ones they replace."""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select, text
from starlette.routing import Route

from monitoring_core.accounts import ApiKey
from monitoring_core.api.body import MAX_DEPTH, too_deep
from monitoring_core.api.keys import KeyCache
from monitoring_core.api.routes_errors import LEAN_ROUTES
from monitoring_core.errors import scrub
from monitoring_core.errors.model import ErrorInput
from monitoring_core.errors.scrub import REDACTED, Scrubber
from monitoring_core.errors.store import (
    claim_event_ids,
    insert_events,
    record_members,
    store_events_and_members,
    upsert_groups,
)
from monitoring_core.flows.error_ingest import _scrub_text_lines, prepare
from monitoring_core.schema import error_events, error_groups


def _reference_too_deep(value: Any, depth: int = 0) -> bool:
    """The walk as it was: a call per child, leaves included."""
    if type(value) is dict:
        children: Any = value.values()
    elif type(value) is list:
        children = value
    else:
        return False
    return depth >= MAX_DEPTH or any(_reference_too_deep(c, depth + 1) for c in children)


def _nested(rng: random.Random, depth: int) -> Any:
    """A random value nesting up to `depth` levels: one child goes deeper, the others are
    leaves or shallow (so the value stays small)."""
    if depth == 0:
        return rng.choice([1, "x", None, 2.5, [], {}])
    children = [_nested(rng, depth - 1)] + [
        _nested(rng, min(depth - 1, 2)) for _ in range(rng.randrange(0, 3))
    ]
    rng.shuffle(children)
    if rng.random() < 0.5:
        return children
    return {f"k{i}": child for i, child in enumerate(children)}


def _chain(levels: int) -> Any:
    value: Any = "leaf"
    for i in range(levels):
        value = {"a": value} if i % 2 else [value]
    return value


@pytest.mark.parametrize("levels", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, MAX_DEPTH + 5])
def test_too_deep_agrees_with_the_reference_at_the_limit(levels: int) -> None:
    value = [1, "x", _chain(levels)]
    assert too_deep(value) == _reference_too_deep(value)
    assert too_deep(value) == (levels + 1 > MAX_DEPTH)


def test_too_deep_agrees_with_the_reference_on_random_values() -> None:
    rng = random.Random(7)
    for _ in range(300):
        value = _nested(rng, rng.randrange(1, 80))
        assert too_deep(value) == _reference_too_deep(value)


def _trace(last_line: str, context: str = "    result = handler(request)") -> str:
    frames = "\n".join(
        f'  File "/srv/app/module{k}.py", line {10 + k}, in fn_{k}\n{context}' for k in range(10)
    )
    return f"Traceback (most recent call last):\n{frames}\n{last_line}"


@pytest.mark.parametrize(
    "text",
    [
        _trace("ValueError: order 123456 failed"),
        _trace("ValueError: card 4111 1111 1111 1111 declined for anna@example.com"),
        _trace("ValueError: call +44 20 7946 0958"),
        # Rules whose matches may span a line break: the whole text is scrubbed at once.
        _trace("AuthError: header was Bearer\n    abcdefghijklmnop123"),
        _trace("KeyError: password:\n hunter2hunter2"),
        _trace("E: x", context="    token = 'sk_live_abcdefgh12345678'"),
        "short\ntext",
    ],
)
def test_a_stack_trace_scrubbed_line_by_line_equals_the_whole_text_scrubbed(text: str) -> None:
    cached = Scrubber()
    for _ in range(2):  # the second time from the scrubber's cache
        assert _scrub_text_lines(text, cached) == Scrubber().text(text)


def test_secrets_in_a_stack_trace_are_still_scrubbed() -> None:
    text = _trace("ValueError: card 4111 1111 1111 1111 declined")
    assert "4111" not in _scrub_text_lines(text, Scrubber())
    spanning = _trace("AuthError: Bearer\n    abcdefghijklmnop123")
    assert "abcdefghijklmnop123" not in _scrub_text_lines(spanning, Scrubber())
    assert REDACTED in _scrub_text_lines(spanning, Scrubber())


class _CountingKeyCache(KeyCache):
    """A KeyCache whose database read counts itself and waits until the test lets it go."""

    def __init__(self, engine: Engine, clock: list[float]) -> None:
        super().__init__(engine, ttl=5.0, clock=lambda: clock[0])
        self.reads = 0
        self.go = threading.Event()

    def _read(self, key: str) -> ApiKey | None:
        self.reads += 1
        self.go.wait(10)
        return super()._read(key)


def test_concurrent_requests_read_an_expired_key_from_the_database_once(
    engine: Engine, ingest_key: str
) -> None:
    clock = [1000.0]
    cache = _CountingKeyCache(engine, clock)
    cache.go.set()
    first = cache.lookup(ingest_key)
    assert first is not None and cache.reads == 1
    clock[0] += 5.1  # the entry expired: every request in flight misses at once
    cache.go.clear()
    found: list[ApiKey | None] = []
    threads = [
        threading.Thread(target=lambda: found.append(cache.lookup(ingest_key))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    time.sleep(0.2)  # let them all reach the lookup (one reads, seven wait for it)
    cache.go.set()
    for t in threads:
        t.join(10)
    assert cache.reads == 2
    assert found == [first] * 8
    assert cache.lookup("not-a-key") is None and cache.reads == 3  # unknown keys are cached too


def test_the_sentry_routes_are_matched_before_every_included_router(api_app: Any) -> None:
    routes = api_app.router.routes
    assert routes[: len(LEAN_ROUTES)] == LEAN_ROUTES
    assert {r.path for r in LEAN_ROUTES if isinstance(r, Route)} == {
        "/api/{project_id}/envelope/",
        "/api/{project_id}/envelope",
        "/api/{project_id}/store/",
        "/api/{project_id}/store",
    }


# ---------------------------------------------------------------- scrubbing nested data
_EMPTY: tuple[Any, ...] = (None, "", [], {})
_STRINGS = [
    "plain words",
    "Bearer abcdefghijklmnop123",
    "card 4111 1111 1111 1111",
    "anna@example.com",
    "    step_1 = prepare_1(request, order)",
    "'sk_live_abcdef0123456789'",
    "token=abc123&x=1",
    "",
    "GET /api/v1/orders/123456 -> 200",
]
_KEYS = ["filename", "Authorization", "password", "vars", "amount", "X-Api-Key", "note"]


def _reference_data(scrubber: Scrubber, value: Any) -> Any:
    """Scrubber.data written plainly (as it was before its fast paths)."""
    if isinstance(value, str):
        return scrubber.text(value)
    if isinstance(value, dict):
        return {
            k: REDACTED
            if v not in _EMPTY and scrubber.is_sensitive_key(str(k))
            else _reference_data(scrubber, v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_reference_item(scrubber, v) for v in value]
    return value


def _reference_item(scrubber: Scrubber, value: Any) -> Any:
    if isinstance(value, list | tuple) and len(value) == 2 and isinstance(value[0], str):
        if value[1] not in _EMPTY and scrubber.is_sensitive_key(value[0]):
            return [value[0], REDACTED]
        return [value[0], _reference_data(scrubber, value[1])]
    return _reference_data(scrubber, value)


def _random_data(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth == 0 or roll < 0.3:
        return rng.choice([*_STRINGS, 0, 7, None, 2.5, True, [], {}])
    if roll < 0.45:  # a header pair, as Sentry sends request headers
        return [rng.choice(_KEYS), _random_data(rng, depth - 1)]
    children = [_random_data(rng, depth - 1) for _ in range(rng.randrange(0, 5))]
    if roll < 0.6:
        return children
    if roll < 0.7:
        return tuple(children)
    return {rng.choice(_KEYS): child for child in children}


def test_scrubbing_nested_data_equals_the_plain_walk() -> None:
    rng = random.Random(11)
    scrubber = Scrubber()
    for _ in range(3000):
        value = _random_data(rng, rng.randrange(1, 6))
        assert scrubber.data(value) == _reference_data(Scrubber(), value)


# ---------------------------------------------------------------- gated text rules
def _reference_scrub_text(value: str) -> str:
    """Scrubber._scrub_text as it was before its per-pattern gates: every substitution whose
    trigger word occurs runs, and all four digit patterns run whenever a digit run does."""
    lower = value.lower()
    if len(lower) > 128 or scrub._ANY_TRIGGER.search(lower) is not None:
        for index in sorted({i for t, i in scrub._TRIGGERS if t in lower}):
            _, pattern, repl = scrub._RULES[index]
            value = pattern.sub(repl, value)
    if scrub._DIGIT_RUN.search(value):
        value = scrub._IBAN.sub(scrub._iban, value)
        value = scrub._SSN.sub(REDACTED, value)
        value = scrub._CARD.sub(scrub._card, value)
        value = scrub._PHONE.sub(scrub._phone, value)
    if re.search(r"\d\d ?\d\d ?\d\d", value):
        value = scrub._NINO.sub(REDACTED, value)
    return value


# Pieces that each pattern, gate or near miss is made of; strings are random runs of them.
_PIECES = [
    "GB82 WEST 1234 5698 7654 32",
    "GB82WEST12345698765432",
    "DE89 3704 0044 0532 0130 00",
    "GB00 WEST 1234 5698 7654 32",
    "QQ 12 34 56 C",
    "AB123456C",
    "ab123456c",
    "BG 12 34 56 A",
    "123-45-6789",
    "123 45 6789",
    "000-12-3456",
    "4111 1111 1111 1111",
    "4111-1111-1111-1112",
    "4111111111111111",
    "+44 20 7946 0958",
    "(555) 123-4567",
    "020 7946 0958",
    "555.123.4567",
    "https://user:pw@host.example/x",
    "https://shop.example.com/api/v1/orders/46993",
    "postgres://db:5432/x",
    "mail me@x.org",
    "token=abc123",
    "password: hunter2",
    "api_key",
    "key",
    "sig",
    "=",
    ":",
    "@",
    "Bearer abcdefghijk",
    "eyJhbGciOi.eyJzdWIiOi.sig",
    "sk_live_abcdef0123456789",
    "order 833820 failed",
    "'ord_12345678'",
    "2026-12-03T03:31:55.123456+00:00",
    "9e53e64a06254ee2bf5bec5f34bfc693",
    "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669",
    "12 34 56",
    "AB",
    "C",
    "-",
    " ",
    "\n",
    "x",
    "7",
]


def test_gated_text_rules_equal_the_ungated_ones() -> None:
    rng = random.Random(13)
    scrubber = Scrubber()
    for _ in range(20_000):
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randrange(1, 6)))
        assert scrubber._scrub_text(text) == _reference_scrub_text(text), text


# ---------------------------------------------------------------- small batches in one statement
def _rows(engine: Engine) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with engine.connect() as conn:
        events = [
            dict(r._mapping)
            for r in conn.execute(select(error_events).order_by(error_events.c.event_id))
        ]
        groups = [
            dict(r._mapping)
            for r in conn.execute(
                select(
                    error_groups.c.fingerprint,
                    error_groups.c.user_count,
                    error_groups.c.organization_count,
                ).order_by(error_groups.c.fingerprint)
            )
        ]
    for e in events:  # a sequence and the insert's clock: differ between the two runs
        e.pop("group_id")
        e.pop("ingested_at", None)
    return events, groups


def test_a_small_batch_in_one_statement_stores_what_members_and_copy_stored(
    engine: Engine, now: datetime
) -> None:
    at = now - timedelta(minutes=3)
    events = [
        ErrorInput(
            error_type="KeyError",
            message=f"guest {i} not found: ünïcode ✓ \\ \" '",
            service_name="guests",
            level="api",
            time=at + timedelta(microseconds=i),
            event_id=uuid.UUID(int=i + 1),
            dedup=True,
            stack_trace=None if i % 2 else 'Traceback:\n  File "a.py", line 1, in f\nKeyError: x',
            frames=[{"filename": "a.py", "lineno": i, "vars": {"x": 1.5, "y": None}}],
            user_id=f"u{i % 2}" if i % 3 else None,
            organization_id="o1" if i % 2 else None,
            tags={"region": "uk", "n": str(i)},
            context={"source": "sentry", "nested": {"list": [1, 2.25, True, None, "s"]}},
            release="1.0" if i % 2 else None,
        )
        for i in range(6)
    ]
    stored = []
    for small in (True, False):
        with engine.begin() as conn:
            prepared = [prepare(e, scrubber=Scrubber(), tz=ZoneInfo("UTC")) for e in events]
            kept = claim_event_ids(conn, prepared)
            upsert_groups(conn, kept)
            if small:
                assert store_events_and_members(conn, kept) == 6
            else:
                record_members(conn, kept)
                assert insert_events(conn, kept) == 6
        stored.append(_rows(engine))
        with engine.begin() as conn:
            conn.execute(
                text(
                    "TRUNCATE error_events, error_event_ids, error_group_members, error_groups CASCADE"
                )
            )
    assert stored[0] == stored[1]
    assert len(stored[0][0]) == 6 and stored[0][1][0]["user_count"] == 2
