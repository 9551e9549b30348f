"""The error-group search: the parser (pure, table-driven) and the group search it drives,
against the real test Postgres (words, is:, type:, derived and sent tags, negation, and values
that would be SQL if they were pasted into it)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, update

from monitoring_core.errors.model import ErrorInput
from monitoring_core.errors.queries import list_groups
from monitoring_core.errors.search import GroupSearch, SearchError, TagTerm, parse_search
from monitoring_core.flows.error_ingest import ingest_errors
from monitoring_core.schema import error_groups

LONDON = ZoneInfo("Europe/London")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", GroupSearch()),
        ("   ", GroupSearch()),
        ("card declined", GroupSearch(words=("card", "declined"))),
        ('"card declined"', GroupSearch(words=("card declined",))),
        ("is:regressed", GroupSearch(statuses=("regressed",))),
        ("is:Resolved is:ignored", GroupSearch(statuses=("resolved", "ignored"))),
        ("is:unassigned", GroupSearch(assigned=False)),
        ("assigned:me", GroupSearch(assignees=("ann",))),
        ("assigned:none", GroupSearch(assignees=("",))),
        ("type:CardError", GroupSearch(fields=(TagTerm("type", "CardError"),))),
        ("error.type:Key*", GroupSearch(fields=(TagTerm("type", "Key*"),))),
        ("level:FRONTEND", GroupSearch(fields=(TagTerm("level", "frontend"),))),
        ("!service:web", GroupSearch(fields=(TagTerm("service", "web", negated=True),))),
        ("release:web@5.2.0", GroupSearch(tags=(TagTerm("release", "web@5.2.0"),))),
        ("env:staging", GroupSearch(tags=(TagTerm("environment", "staging"),))),
        ('browser:"Chrome 131"', GroupSearch(tags=(TagTerm("browser", "Chrome 131"),))),
        ("!region:uk", GroupSearch(tags=(TagTerm("region", "uk", negated=True),))),
        ("https://x.example/a", GroupSearch(words=("https://x.example/a",))),
        (":colon", GroupSearch(words=(":colon",))),
        ("src\\pay\\charge.py", GroupSearch(words=("src\\pay\\charge.py",))),
        (
            "timeout is:unresolved region:uk",
            GroupSearch(
                words=("timeout",), statuses=("unresolved",), tags=(TagTerm("region", "uk"),)
            ),
        ),
    ],
)
def test_the_parser_reads_terms(query: str, expected: GroupSearch) -> None:
    assert parse_search(query, me="ann") == expected


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ('type:"open', "not closed"),
        ("is:sleeping", "is: takes one of"),
        ("!is:resolved", "is: takes one of"),
        ("level:kernel", "level: takes one of"),
        ("severity:urgent", "severity: takes one of"),
        ("!assigned:ann", "cannot be negated"),
        ("x" * 1001, "longer than 1000"),
        ("a\x00b", "NUL"),
        (" ".join(["w"] * 21), "at most 20 terms"),
        ("region:" + "x" * 201, "longer than 200"),
    ],
)
def test_the_parser_says_what_is_wrong(query: str, says: str) -> None:
    with pytest.raises(SearchError, match=says):
        parse_search(query, me="ann")


def test_assigned_me_needs_a_user() -> None:
    with pytest.raises(SearchError, match="signed-in"):
        parse_search("assigned:me")


def _seed(engine: Engine, now: datetime) -> dict[str, int]:
    at = now - timedelta(hours=1)
    common = {"level": "api", "time": at, "environment": "production"}
    events = [
        ErrorInput(error_type="CardError", message="card 4242 declined", service_name="payments",
                   release="payments@2.3.2", tags={"region": "uk"},
                   context={"contexts": {"runtime": {"name": "CPython", "version": "3.12.1"}}},
                   **common),  # type: ignore[arg-type]
        ErrorInput(error_type="CardError", message="card 4242 declined", service_name="payments",
                   release="payments@2.3.2", tags={"region": "ie"},
                   **common),  # type: ignore[arg-type]
        ErrorInput(error_type="KeyError", message="'photo_1' missing 100%_done",
                   service_name="gallery", release="gallery@4.0.2",
                   **{**common, "environment": "staging"}),  # type: ignore[arg-type]
        ErrorInput(error_type="TypeError", message="x is undefined", service_name="web",
                   context={"browser": "Chrome 131"},
                   **{**common, "level": "frontend"}),  # type: ignore[arg-type]
    ]  # fmt: skip
    with engine.begin() as conn:
        ingest_errors(conn, events, now=now, tz=LONDON)
        rows = conn.execute(error_groups.select()).all()
    return {r.error_type: r.id for r in rows}


def _found(engine: Engine, now: datetime, query: str, me: str | None = None) -> list[str]:
    with engine.connect() as conn:
        groups = list_groups(
            conn,
            start=now - timedelta(days=1),
            end=now,
            search=parse_search(query, me=me),
        )
    return sorted(g["error_type"] for g in groups)


def test_the_search_finds_groups_by_words_fields_and_tags(engine: Engine, now: datetime) -> None:
    ids = _seed(engine, now)
    with engine.begin() as conn:
        conn.execute(
            update(error_groups)
            .where(error_groups.c.id == ids["KeyError"])
            .values(status="regressed", assigned_to="ann")
        )
    cases = {
        "": ["CardError", "KeyError", "TypeError"],
        "card": ["CardError"],
        "CARD declined": ["CardError"],
        "missing": ["KeyError"],
        "%_done": ["KeyError"],  # % and _ are literal, not LIKE wildcards
        "%": ["KeyError"],
        "_": ["KeyError"],  # only KeyError's message holds an underscore
        "is:regressed": ["KeyError"],
        "is:unresolved": ["CardError", "TypeError"],
        "is:assigned": ["KeyError"],
        "assigned:me": ["KeyError"],
        "assigned:none": ["CardError", "TypeError"],
        "type:cardError": ["CardError"],
        "type:*Error !type:Card*": ["KeyError", "TypeError"],
        "message:undefined": ["TypeError"],
        "service:gallery": ["KeyError"],
        "level:frontend": ["TypeError"],
        "region:uk": ["CardError"],  # a sent tag
        "region:fr": [],
        "!region:uk": ["CardError", "KeyError", "TypeError"],  # the ie event, and untagged ones
        "environment:staging": ["KeyError"],  # derived from the column
        "release:payments@2.3.2": ["CardError"],
        "release:payments@*": ["CardError"],
        'browser:"Chrome 131"': ["TypeError"],  # the own API's context.browser
        'runtime:"CPython 3.12.1"': ["CardError"],  # Sentry's contexts.runtime
        "region:uk environment:staging": [],  # both on one event
        "x' OR '1'='1": [],
        "region:uk'--": [],
        "'; DROP TABLE error_groups; --": [],
    }
    for query, expected in cases.items():
        assert _found(engine, now, query, me="ann") == expected, query
    assert _found(engine, now, "") == ["CardError", "KeyError", "TypeError"]  # table intact
