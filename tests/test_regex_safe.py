"""Silence matchers run in linear time (RE2): a backtracking pattern cannot hold the alert job
(issue 13, item 12)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select

from monitoring_core.alerts.silences import matches, validate_silence
from monitoring_core.schema import silences

ROOT = Path(__file__).resolve().parent.parent
EVIL = [
    ("(a|aa)+", "a" * 60 + "!"),
    ("(x+x+)+y", "x" * 5000),
    ("(.*a){20}", "a" * 5000 + "b"),
    ("^(([a-z])+.)+[A-Z]([a-z])+$", "abcdefghij" * 500 + "!"),
]
# Python's re would take hours on the first of these: measured in a child process, so a
# regression fails on the timeout instead of hanging the suite.
_TIMED = """
import sys, time
from monitoring_core.alerts.silences import matches
for pattern, label in {cases!r}:
    started = time.perf_counter()
    assert not matches([{{"name": "l", "value": pattern, "is_regex": True}}], {{"l": label}})
    print(pattern, time.perf_counter() - started)
"""


def test_it_matches_backtracking_patterns_in_linear_time() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _TIMED.format(cases=EVIL)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    seconds = [float(line.rsplit(" ", 1)[1]) for line in done.stdout.splitlines()]
    assert len(seconds) == len(EVIL) and max(seconds) < 1.0, done.stdout


@pytest.mark.parametrize(
    ("pattern", "label", "expected"),
    [
        ("pay.*", "payments", True),
        ("pay", "payments", False),  # a full match, as Alertmanager's
        ("payments|search", "search", True),
        (r"eu-\d+", "eu-12", True),
        ("(?i)PAYMENTS", "payments", True),
        ("a.b", "a\nb", False),
    ],
)
def test_it_keeps_matching_ordinary_patterns(pattern: str, label: str, expected: bool) -> None:
    assert matches([{"name": "l", "value": pattern, "is_regex": True}], {"l": label}) is expected


@pytest.mark.parametrize("pattern", [r"(a)\1", "(?=pay)payments", "(?<!x)y", "(", "a" * 1001])
def test_it_refuses_patterns_re2_cannot_run(pattern: str) -> None:
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 3, 10, tzinfo=UTC)
    matcher = [{"name": "service", "value": pattern, "is_regex": True}]
    problems = validate_silence(matcher, start, start + timedelta(hours=1), None)
    assert [p["field"] for p in problems] == ["matchers"]


def test_it_answers_422_for_a_lookahead_matcher(
    api_server: str, admin_key: str, engine: Engine
) -> None:
    body = {
        "matchers": [{"name": "service", "value": "(?=pay)payments", "is_regex": True}],
        "duration_minutes": 30,
        "reason": "deploy",
    }
    reply = httpx.post(
        f"{api_server}/api/admin/silences",
        json=body,
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=30,
    )
    assert reply.status_code == 422, reply.text
    assert "RE2" in reply.text
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(silences)).scalar() == 0


def test_it_treats_a_stored_pattern_re2_refuses_as_matching_nothing() -> None:
    assert not matches([{"name": "l", "value": r"(a)\1", "is_regex": True}], {"l": "aa"})
