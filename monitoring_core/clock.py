"""The one clock of the UI and its actions: `now()`, which tests can set.

Pages, page actions and `ui` widgets read the time only through `now()`; domain functions
keep taking `now` as a parameter, so this is the edge that passes it in
(docs/ARCHITECTURE.md "Time").

Choices:
- `now()` is the real clock (aware, UTC) unless a test has set it with `set_now(dt)` or
  `with frozen(dt):`; a set clock stands still, so a page rerun sees the same instant.
- The override is a plain module global, not a context variable: Streamlit's AppTest runs
  the page script in another thread of the test process, and that thread must see it too.
- No environment variable: a subprocess (the worker, the supervisor) always runs on the real
  clock. The test suite picks its instant with its own TEST_NOW (see tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

__all__ = ["frozen", "now", "set_now"]

_fixed: list[datetime] = []  # empty: the real clock


def now() -> datetime:
    """The current instant (aware, UTC): the set one in tests, else the real clock."""
    return _fixed[0] if _fixed else datetime.now(UTC)


def set_now(moment: datetime | None) -> None:
    """Stand the clock still at `moment` (aware), or give back the real clock with None."""
    if moment is not None and moment.utcoffset() is None:
        raise ValueError("the clock needs an aware datetime")
    _fixed[:] = [] if moment is None else [moment.astimezone(UTC)]


@contextmanager
def frozen(moment: datetime) -> Iterator[datetime]:
    """Within the block, `now()` is `moment`; afterwards the clock is what it was before."""
    before = list(_fixed)
    set_now(moment)
    try:
        yield _fixed[0]
    finally:
        _fixed[:] = before
