"""Reads of the error-group page against the real test Postgres (tags derived and sent, the
zero-filled trend, first/last release, event neighbours with equal timestamps, status counts),
and the pure event view (exception chain from a text trace, breadcrumbs, request, labels)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select, update

from monitoring_core.errors import event_view
from monitoring_core.errors.group_reads import (
    group_event,
    group_events,
    group_header,
    group_status_counts,
    group_tags,
)
from monitoring_core.errors.model import ErrorInput
from monitoring_core.flows.error_ingest import ingest_errors
from monitoring_core.schema import error_groups

LONDON = ZoneInfo("Europe/London")
pytestmark = pytest.mark.clock  # runs at every instant of tests/clock_proof.py


def _ingest(engine: Engine, now: datetime, events: list[ErrorInput]) -> int:
    with engine.begin() as conn:
        ingest_errors(conn, events, now=now, tz=LONDON)
        return int(conn.execute(select(error_groups.c.id)).scalars().first() or 0)


def _event(at: datetime, **fields: object) -> ErrorInput:
    base: dict[str, object] = {
        "error_type": "CardError",
        "message": "card declined",
        "service_name": "payments",
        "level": "api",
        "time": at,
    }
    return ErrorInput(**(base | fields))  # type: ignore[arg-type]


def test_tags_are_derived_and_sent_ones_win(engine: Engine, now: datetime) -> None:
    start = now - timedelta(hours=6)
    group = _ingest(
        engine,
        now,
        [
            _event(now - timedelta(hours=1), environment="production", release="p@1",
                   user_id="u1", tags={"region": "uk"},
                   context={"contexts": {"os": {"name": "Linux", "version": "6.1"}}}),
            _event(now - timedelta(hours=2), environment="production", release="p@2",
                   user_id="u2", tags={"region": "uk", "environment": "canary"}),
            _event(now - timedelta(hours=3), environment="staging", release="p@2", user_id="u1"),
            _event(now - timedelta(days=2), environment="old", release="p@0"),  # out of range
        ],
    )  # fmt: skip
    with engine.connect() as conn:
        rows = group_tags(conn, group_id=group, start=start, end=now, per_key=1)
    by_key = {r["key"]: r for r in rows}
    assert {k: (r["value"], r["events"], r["total"], r["distinct"]) for k, r in by_key.items()} == {
        "environment": ("canary", 1, 3, 3),  # the sent tag overrides the column's production
        "release": ("p@2", 2, 3, 2),
        "region": ("uk", 2, 2, 1),
        "service": ("payments", 3, 3, 1),
        "user": ("u1", 2, 3, 2),
        "os": ("Linux 6.1", 1, 1, 1),
    }
    assert by_key["release"]["share"] == pytest.approx(2 / 3)
    assert [r["key"] for r in rows][:3] == ["environment", "release", "service"]  # most tagged


def test_the_header_has_a_zero_filled_trend_and_first_and_last_release(
    engine: Engine, now: datetime
) -> None:
    group = _ingest(
        engine,
        now,
        [
            _event(now - timedelta(days=3), release="p@1.0"),
            _event(now - timedelta(hours=5, minutes=1), release="p@1.1", user_id="a"),
            _event(now - timedelta(hours=5, minutes=2), user_id="a"),
            _event(now - timedelta(minutes=1), release="p@1.2", user_id="b"),
        ],
    )
    start = now - timedelta(hours=24)
    with engine.connect() as conn:
        info = group_header(conn, group_id=group, start=start, end=now)
        assert group_header(conn, group_id=group + 1000, start=start, end=now) is None
    assert info is not None
    assert (info["first_release"], info["last_release"]) == ("p@1.0", "p@1.2")
    assert (info["events"], info["users"], info["step"]) == (3, 2, timedelta(hours=1))
    counts = [n for _, n in info["trend"]]
    assert len(counts) in (24, 25) and sum(counts) == 3 and counts.count(0) >= len(counts) - 3
    times = [t for t, _ in info["trend"]]
    assert times == sorted(times) and times[0] <= start and times[-1] < now


def test_neighbours_walk_every_event_once_even_at_equal_times(
    engine: Engine, now: datetime
) -> None:
    same = now - timedelta(minutes=10)
    ids = sorted(uuid.uuid4() for _ in range(3))
    events = [_event(same, event_id=i) for i in ids]
    events += [_event(now - timedelta(minutes=20)), _event(now - timedelta(minutes=5))]
    group = _ingest(engine, now, events)
    with engine.connect() as conn:
        listed = group_events(conn, group_id=group, start=now - timedelta(hours=1), end=now)
        assert len(listed) == 5
        walked, found = [], group_event(conn, group_id=group)
        while found is not None:
            walked.append(found["event"]["event_id"])
            found = (
                group_event(conn, group_id=group, event_id=found["older"])
                if found["older"]
                else None
            )
        newest = group_event(conn, group_id=group)
        oldest = group_event(conn, group_id=group, event_id=walked[-1])
        bad = group_event(conn, group_id=group, event_id="not-an-id")
    assert walked == [e["event_id"] for e in listed]  # newest first, ties by id
    assert len(set(walked)) == 5 and all(len(w) == 32 for w in walked)
    assert newest is not None and oldest is not None and bad is not None
    assert (newest["newer"], newest["newest"], newest["oldest"]) == (None, None, walked[-1])
    assert (oldest["older"], oldest["oldest"], oldest["newer"]) == (None, None, walked[-2])
    assert bad["asked_missing"] and bad["event"]["event_id"] == walked[0]


def test_status_counts_are_of_groups_seen_in_the_range(engine: Engine, now: datetime) -> None:
    _ingest(engine, now, [_event(now - timedelta(hours=1))])
    _ingest(engine, now, [_event(now - timedelta(hours=1), error_type="KeyError")])
    with engine.begin() as conn:
        conn.execute(
            update(error_groups)
            .where(error_groups.c.error_type == "KeyError")
            .values(status="regressed")
        )
        counts = group_status_counts(conn, start=now - timedelta(days=1), end=now)
        before = group_status_counts(
            conn, start=now - timedelta(days=3), end=now - timedelta(days=2)
        )
    assert counts == {"unresolved": 1, "regressed": 1, "resolved": 0, "ignored": 0}
    assert before == {"unresolved": 0, "regressed": 0, "resolved": 0, "ignored": 0}


CHAINED = """Traceback (most recent call last):
  File "/srv/shop/basket.py", line 12, in total
    return items["coupon"]
KeyError: 'coupon'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/srv/shop/checkout.py", line 30, in checkout
    total(items)
ValueError: checkout failed"""


def test_the_chain_comes_from_the_text_trace_raised_first() -> None:
    chain = event_view.exception_chain(
        {
            "error_type": "ValueError",
            "message": "checkout failed",
            "stack_trace": CHAINED,
            "frames": [{"function": "checkout", "lineno": 30, "in_app": True}],
        }
    )
    assert [(c.type, c.value, c.raised) for c in chain] == [
        ("ValueError", "checkout failed", True),
        ("KeyError", "'coupon'", False),
    ]
    assert [f["function"] for f in chain[1].frames] == ["total"]
    assert chain[1].frames[0]["lineno"] == 12
    assert len(event_view.exception_chain({"error_type": "E", "message": "m"})) == 1


def test_breadcrumbs_request_and_context_read_as_labelled_values() -> None:
    context = {
        "breadcrumbs": {
            "values": [
                {"timestamp": 1_780_000_000.5, "category": "http", "data": {"status": 502}},
                {"timestamp": "2026-06-10T12:00:00Z", "message": "paid", "level": "warning"},
                {"timestamp": "garbage", "message": "no time"},
                "not a crumb",
            ]
        },
        "request": {
            "method": "POST",
            "url": "https://shop.example/pay",
            "headers": [["Authorization", "[REDACTED]"], ["Accept", "*/*"]],
            "data": {"amount": 5, "items": [1, 2]},
        },
        "contexts": {"runtime": {"name": "CPython", "version": "3.12"}, "trace": {"span_id": "s"}},
        "extra": {"sys.argv": ["app.py", "--prod"]},
        "browser": "Chrome 131",
        "sdk": {"name": "sentry.python"},
    }
    crumbs = event_view.breadcrumbs(context)
    assert [(c.category, c.level, c.message, c.data) for c in crumbs] == [
        ("http", "info", "", "status = 502"),
        ("default", "warning", "paid", ""),
        ("default", "info", "no time", ""),
    ]
    assert crumbs[0].time == datetime.fromtimestamp(1_780_000_000.5, UTC)
    assert crumbs[1].time == datetime(2026, 6, 10, 12, tzinfo=UTC) and crumbs[2].time is None
    request = event_view.request_view(context)
    assert request is not None
    assert (request["method"], request["url"]) == ("POST", "https://shop.example/pay")
    assert request["headers"] == [("Authorization", "[REDACTED]"), ("Accept", "*/*")]
    assert request["data"] == [("amount", "5"), ("items", "1, 2")]
    assert event_view.request_view({}) is None
    assert event_view.other_context(context) == [
        ("Runtime", "name", "CPython"),
        ("Runtime", "version", "3.12"),
        ("Trace", "span_id", "s"),
        ("Extra", "sys.argv", "app.py, --prod"),
        ("Other", "browser", "Chrome 131"),
    ]
    assert event_view.frame_lines(
        {"lineno": 10, "pre_context": ["a", "b"], "context_line": "c", "post_context": ["d"]}
    ) == [(8, "a", False), (9, "b", False), (10, "c", True), (11, "d", False)]


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("server_name", "Server name"),
        ("user_id", "User ID"),
        ("os", "OS"),
        ("third_party", "Third party"),
        ("release", "Release"),
        ("browser.name", "Browser name"),
    ],
)
def test_labels_read_as_words(name: str, shown: str) -> None:
    assert event_view.label(name) == shown
