"""An unmodified sentry_sdk client sends a chained exception with tags, breadcrumbs and a
request through the real HTTP server; the error-group page shows it as Sentry would: both
exceptions of the chain, in-app frames with their source lines and locals, the breadcrumbs in
the business time zone, the request with its secret header redacted, and the event's tags —
the one it was sent with and the ones derived from it — in the Tags tab too."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sentry_sdk
from sqlalchemy import Engine, select
from streamlit.testing.v1 import AppTest

from monitoring_core import clock
from monitoring_core.enums import Role
from monitoring_core.schema import error_events
from tests.test_errors_sentry import sentry
from tests.ui_harness import table_with

AppFactory = Callable[[Role | None], AppTest]


def _basket(items: dict[str, int]) -> int:
    return items["coupon"]


def _checkout(order: int) -> None:
    try:
        _basket({"shoes": 2})
    except KeyError as exc:
        raise ValueError(f"checkout of order {order} failed") from exc


def _with_request(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    event["request"] = {
        "method": "POST",
        "url": "https://shop.example/checkout",
        "query_string": "step=pay",
        "headers": {"Authorization": "Bearer sk_live_abcdefgh12345678", "User-Agent": "pytest"},
    }
    return event


def _send(api_server: str, ingest_key: str) -> None:
    with sentry(api_server, ingest_key):
        sentry_sdk.set_tag("region", "uk")
        sentry_sdk.set_user({"id": "user-7"})
        sentry_sdk.get_isolation_scope().add_event_processor(_with_request)
        sentry_sdk.add_breadcrumb(category="auth", message="signed in as user-7", level="info")
        logging.getLogger("checkout").warning("basket has %s items", 3)  # a breadcrumb too
        try:
            _checkout(41)
        except ValueError:
            sentry_sdk.capture_exception()


def test_a_sentry_sdk_event_reads_like_sentrys_issue_page(
    api_server: str,
    ingest_key: str,
    engine: Engine,
    logged_in_app: AppFactory,
) -> None:
    _send(api_server, ingest_key)
    with engine.connect() as conn:
        event = conn.execute(select(error_events)).one()
    assert [f["function"] for f in event.frames] == ["test_a_sentry_sdk_event_reads_like_sentrys_issue_page", "_send", "_checkout"][-len(event.frames):]  # fmt: skip
    assert event.frames[-1]["pre_context"] and event.frames[-1]["post_context"]
    (cause,) = event.context["exception_chain"]  # exception.values before the raised one
    assert (cause["type"], cause["value"]) == ("KeyError", "'coupon'")
    assert cause["frames"][-1]["function"] == "_basket" and cause["frames"][-1]["pre_context"]
    factory = logged_in_app
    # The event was stored at the real time: the page's range (24 h to a now floored to 30 s)
    # must include it.
    clock.set_now(datetime.now(UTC) + timedelta(minutes=1))
    at = factory(Role.VIEWER).run()
    at.switch_page("pages/errors.py")
    at.query_params["group"] = str(event.group_id)
    at.run()
    assert not at.exception, at.exception
    markdown = [m.value for m in at.markdown]
    headings = [m for m in markdown if m.startswith("##### ")]
    assert headings == ["##### ValueError", "##### KeyError"]  # raised, then its cause
    assert "checkout of order 41 failed" in [t.value for t in at.text]
    in_app = [m for m in markdown if "In app" in m]
    assert any("` _checkout `" in m for m in in_app) and any("` _basket `" in m for m in in_app)
    code = "\n".join(c.value for c in at.code)
    assert "→" in code and 'raise ValueError(f"checkout of order {order} failed")' in code
    assert "POST https://shop.example/checkout" in code
    crumbs = table_with(at, "Category", "Message")
    assert {"signed in as user-7", "basket has 3 items"} <= set(crumbs["Message"])
    assert all(t.count(":") == 2 for t in crumbs["Time"])  # time of day, same day as the event
    headers = dict(table_with(at, "Header", "Value").itertuples(index=False))
    assert headers["Authorization"] == "[REDACTED]" and headers["User-Agent"] == "pytest"
    tags = dict(table_with(at, "Tag", "Value").itertuples(index=False))
    assert (tags["region"], tags["environment"], tags["release"]) == (
        "uk",
        "test",
        "payments@1.4.0",
    )
    assert tags["runtime"].startswith("CPython 3.") and tags["handled"] == "true"
    assert tags["user"] == "user-7"
    locals_shown = {
        v
        for df in [*at.dataframe, *at.table]
        if "Variable" in df.value.columns
        for v in df.value["Variable"]
    }
    assert "order" in locals_shown  # the raised exception's frames carry their locals
    assert "items" in locals_shown  # and so do its cause's (_basket's `items`), as in Sentry
    assert 'return items["coupon"]' in code  # the cause's source line, from its own frames
    everything = " ".join(
        [*markdown, code, *(str(df.value.to_dict()) for df in [*at.dataframe, *at.table])]
    )
    assert "sk_live_abcdefgh12345678" not in everything
    at.query_params["tab"] = "Tags"
    at.run()
    assert "**Region** · 1 value over 1 event" in [m.value for m in at.markdown]
