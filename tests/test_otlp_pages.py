"""The Traces and Logs pages through AppTest: search, the waterfall, and the links between
errors, traces and logs by trace id."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import Engine, text
from streamlit.testing.v1 import AppTest

from monitoring_core import clock
from monitoring_core.demo import telemetry
from monitoring_core.enums import Role
from monitoring_core.errors.model import ErrorInput
from monitoring_core.flows.error_ingest import ingest_errors
from monitoring_core.logs.store import insert_logs
from monitoring_core.traces.rules import parse_attribute, waterfall
from monitoring_core.traces.store import insert_spans
from tests.ui_harness import DEMO_NOW
from ui import fmt

pytestmark = pytest.mark.clock

AppFactory = Callable[[Role | None], AppTest]
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER = "0af7651916cd43dd8448eb211c80319c"
LONDON = ZoneInfo("Europe/London")  # the business time zone of the tests' settings


def _said(moment: datetime) -> str:
    """A moment as the pages say it: in words, to the second, in the business time zone."""
    return fmt.when_exact(moment, LONDON, clock.now())


def _seed(engine: Engine) -> datetime:
    start = clock.now() - timedelta(minutes=3)
    resource = {"service.name": "checkout"}
    spans = [
        (start, TRACE, "00000000000000a1", None, "checkout", "POST /api/pay", 2, 850.0, 2,
         None, {"http.route": "/api/pay", "http.response.status_code": 502}, [], resource, "s"),
        (start + timedelta(milliseconds=20), TRACE, "00000000000000a2", "00000000000000a1",
         "payments", "charge card", 3, 800.0, 2, "provider timeout", {"provider": "stripe"},
         [{"name": "retry", "time": start.isoformat(), "attributes": {"attempt": 2}}],
         {"service.name": "payments"}, "s"),
        (start, OTHER, "00000000000000b1", None, "search", "GET /api/vendors", 2, 40.0, 1,
         None, {"http.route": "/api/vendors"}, [], {"service.name": "search"}, "s"),
    ]  # fmt: skip
    logs = [
        (start + timedelta(milliseconds=500), 17, "ERROR", "payment provider timed out",
         TRACE, "00000000000000a2", "payments", {"provider": "stripe"}, {}),
        (start + timedelta(seconds=1), 9, "INFO", "vendor search served", OTHER, None, "search",
         {}, {}),
        (start + timedelta(seconds=2), 13, "WARN", "cache 100% full_ish", None, None, "search",
         {}, {}),
    ]  # fmt: skip
    error = ErrorInput(
        error_type="GatewayTimeout", message="payment provider timed out", service_name="payments",
        level="api", time=start, trace_id=TRACE,
    )  # type: ignore[call-arg]  # fmt: skip
    with engine.begin() as conn:
        insert_spans(conn, spans)
        insert_logs(conn, logs)
        ingest_errors(conn, [error], now=start, tz=LONDON)
    return start


def _open(factory: AppFactory, page: str) -> AppTest:
    at = factory(Role.VIEWER).run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _links(at: AppTest) -> dict[str, str]:
    return {
        el.proto.label: el.proto.page + "?" + el.proto.query_string for el in at.get("page_link")
    }


def test_traces_page_search_waterfall_errors_and_logs(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    start = _seed(engine)
    at = _open(logged_in_app, "pages/traces.py")
    traces = at.dataframe[0].value
    assert set(traces["Trace id"]) == {TRACE, OTHER}
    row = traces.set_index("Trace id").loc[TRACE]
    assert (row["Root operation"], row["Duration"], row["Spans"], row["Errors"]) == (
        "POST /api/pay",
        "850 ms",
        2,
        2,
    )
    assert row["Started"] == _said(start)  # in words, to the second, never ISO
    assert not any("+00:00" in t or "T" in t for t in traces["Started"])
    at.checkbox(key="traces_errors").check().run()
    assert list(at.dataframe[0].value["Trace id"]) == [TRACE]
    at.checkbox(key="traces_errors").uncheck().run()
    at.text_input(key="traces_attr").input("provider=stripe").run()
    assert list(at.dataframe[0].value["Trace id"]) == [TRACE]
    at.text_input(key="traces_attr").input("").run()
    at.text_input(key="traces_id").input(OTHER.upper()).run()
    assert f"Trace {OTHER}" in [s.value for s in at.subheader]
    at.text_input(key="traces_id").input(TRACE).run()
    assert not at.exception, at.exception
    assert f"Trace {TRACE}" in [s.value for s in at.subheader]
    spans = at.dataframe[1].value
    assert list(spans["Operation"]) == ["POST /api/pay", "· charge card"]  # child indented
    assert list(spans["Status"]) == ["Error", "Error"]
    assert list(spans["Starts at"]) == ["+0 ms", "+20 ms"]
    assert list(spans["Duration"]) == ["850 ms", "800 ms"]
    assert list(spans["Kind"]) == ["Server", "Client"]
    attributes = at.dataframe[2].value  # the root span's, as name/value rows
    assert attributes.to_dict("records") == [
        {"Attribute": "http.response.status_code", "Value": "502"},
        {"Attribute": "http.route", "Value": "/api/pay"},
    ]
    assert not at.json  # no JSON view of a span left
    errors = at.dataframe[3].value
    assert list(errors["Type"]) == ["GatewayTimeout"]
    assert list(errors["Time"]) == [_said(start)]
    logs = at.dataframe[4].value
    assert list(logs["Message"]) == ["payment provider timed out"]
    assert list(logs["Time"]) == [_said(start + timedelta(milliseconds=500))]
    assert _links(at)["Logs of this trace"].endswith(f"trace_id={TRACE}")


def test_traces_page_shows_a_span_events_and_resource_as_rows(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    _seed(engine)
    at = _open(logged_in_app, "pages/traces.py")
    at.query_params["trace_id"] = TRACE
    at.run()
    at.selectbox(key="traces_span").select("00000000000000a2").run()
    summary = at.error[0].value.replace("\\", "")  # markdown escapes dropped
    assert (
        summary == "Client span · starts at +20 ms · lasts 800 ms · status Error: provider timeout"
    )
    at.session_state["traces_span_tab"] = "Events"
    at.run()
    assert not at.exception, at.exception
    events = at.dataframe[2].value
    # the event's time is the trace's start, 20 ms before this span's
    assert events.to_dict("records") == [
        {"At": "−20 ms", "Event": "retry", "Attributes": "attempt: 2"}
    ]
    at.session_state["traces_span_tab"] = "Resource"
    at.run()
    assert at.dataframe[2].value.to_dict("records") == [
        {"Attribute": "service.name", "Value": "payments"}
    ]
    assert "Instrumentation scope: s" in [c.value for c in at.caption]


def test_traces_page_follows_a_trace_named_in_the_address(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    """The trace id lives in the URL: a link or back/forward naming another trace in the
    same session opens it (the box kept the first one)."""
    _seed(engine)
    at = _open(logged_in_app, "pages/traces.py")
    at.query_params["trace_id"] = TRACE
    at.run()
    assert f"Trace {TRACE}" in [s.value for s in at.subheader]
    at.query_params["trace_id"] = OTHER
    at.run()
    assert f"Trace {OTHER}" in [s.value for s in at.subheader]
    at.text_input(key="traces_id").input(TRACE.upper()).run()  # typed: written to the URL
    assert at.query_params["trace_id"] in (TRACE.upper(), [TRACE.upper()])
    assert f"Trace {TRACE}" in [s.value for s in at.subheader]


def test_logs_page_filters(engine: Engine, logged_in_app: AppFactory) -> None:
    start = _seed(engine)
    at = _open(logged_in_app, "pages/logs.py")
    records = at.dataframe[0].value
    assert len(records) == 3
    assert list(records.columns) == [
        "Time",
        "Service",
        "Severity",
        "Message",
        "Trace id",
        "Span id",
    ]
    assert list(records["Time"]) == [_said(start + timedelta(seconds=s)) for s in (2, 1, 0.5)]
    at.text_input(key="logs_contains").input("100%").run()  # % is literal, not a wildcard
    assert list(at.dataframe[0].value["Message"]) == ["cache 100% full_ish"]
    assert list(at.dataframe[0].value["Trace id"]) == ["—"]
    at.text_input(key="logs_contains").input("").run()
    at.selectbox(key="logs_severity").select("WARN").run()
    assert sorted(at.dataframe[0].value["Message"]) == [
        "cache 100% full_ish",
        "payment provider timed out",
    ]
    at.selectbox(key="logs_service").select("payments").run()
    assert list(at.dataframe[0].value["Severity"]) == ["ERROR"]
    assert _links(at)["Open this trace"].endswith(f"trace_id={TRACE}")
    at.selectbox(key="logs_service").select("All").run()
    at.selectbox(key="logs_severity").select("Any").run()
    at.text_input(key="logs_trace").input(OTHER).run()
    assert list(at.dataframe[0].value["Message"]) == ["vendor search served"]
    volume = at.dataframe[1].value  # per service and day, from log_volume
    assert dict(zip(volume["Service"], volume["Records"], strict=True)) == {
        "payments": "1",
        "search": "2",
    } and set(volume["Refused"]) == {"0"}
    assert all(size.endswith(" B") for size in volume["Body size"])  # bytes with their unit
    assert set(volume["Of cap"]) == {"0 %"}
    assert "10,000,000 records per UTC day" in " ".join(c.value for c in at.caption)


def test_logs_around_an_error_says_the_moment_in_words(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    start = _seed(engine)
    at = _open(logged_in_app, "pages/logs.py")
    at.query_params["around"] = start.isoformat()
    at.run()
    (caption,) = [c.value for c in at.caption if c.value.startswith("Logs from")]
    assert caption == f"Logs from 5 minutes before to 5 minutes after {_said(start)}."
    assert "+00:00" not in caption and len(at.dataframe[0].value) == 3


def test_errors_page_links_an_event_to_its_trace_and_logs(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    _seed(engine)
    with engine.connect() as conn:
        group_id = conn.execute(text("SELECT id FROM error_groups")).scalar_one()
    at = _open(logged_in_app, "pages/errors.py")
    at.query_params["group"] = str(group_id)  # the group's newest event carries the links
    at.run()
    assert not at.exception, at.exception
    links = _links(at)
    assert links["Open this trace"].endswith(f"trace_id={TRACE}")
    assert links["Logs of this trace"].endswith(f"trace_id={TRACE}")
    assert "around=" in links["Logs around this error"]
    assert "service=payments" in links["Logs around this error"]


def test_waterfall_order_depth_and_orphans() -> None:
    t0 = clock.now()

    def span(sid: str, parent: str | None, ms: int) -> dict[str, Any]:
        return {"span_id": sid, "parent_span_id": parent, "time": t0 + timedelta(milliseconds=ms)}

    rows = waterfall(
        [span("c2", "root", 30), span("root", None, 0), span("c1", "root", 10),
         span("g1", "c1", 12), span("orphan", "missing", 5), span("loop", "loop", 40)]
    )  # fmt: skip
    assert [(r["span_id"], r["depth"]) for r in rows] == [
        ("root", 0), ("c1", 1), ("g1", 2), ("c2", 1), ("orphan", 0), ("loop", 0),
    ]  # fmt: skip
    assert rows[2]["offset_ms"] == 12


def test_waterfall_writes_each_name_above_its_bar_inside_the_chart() -> None:
    """No axis labels (a column as wide as the longest name left a phone a sliver for the
    bars): each name sits just above its bar, from its start, or ending at its end for a
    span in the trace's second half."""
    from ui.waterfall import waterfall_figure

    def row(name: str, depth: int, offset: float, duration: float, status: int = 0) -> dict:
        return {"depth": depth, "service": "web", "name": name, "status_code": status,
                "offset_ms": offset, "duration_ms": duration, "kind": 2}  # fmt: skip

    rows = [row("GET /gallery", 0, 0, 100), row("db.query " + "x" * 200, 1, 10, 20),
            row("render", 1, 80, 20, status=2)]  # fmt: skip
    bars, names = waterfall_figure(rows).data
    layout = waterfall_figure(rows).layout
    assert layout.yaxis.showticklabels is False
    assert list(names.text) == [
        "web: GET /gallery",
        "web: " + ("db.query " + "x" * 200)[:80],
        "web: render",
    ]
    assert list(names.x) == [0, 10, 100]  # the late span's name ends where its bar ends
    assert list(names.textposition) == ["middle right", "middle right", "middle left"]
    assert [round(b - n, 2) for b, n in zip(bars.y, names.y, strict=True)] == [0.42] * 3
    assert list(bars.marker.color) == ["#1f77b4", "#1f77b4", "#d62728"]
    assert list(bars.base) == [0, 10, 80] and names.cliponaxis is False


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("http.response.status_code=500", ("http.response.status_code", 500)),
        ("ratio = 0.5", ("ratio", 0.5)),
        ("cache.hit=true", ("cache.hit", True)),
        ("provider=stripe", ("provider", "stripe")),
        ("x=nan", ("x", "nan")),
        ("novalue", None),
        ("=3", None),
    ],
)
def test_attribute_filters(text: str, parsed: Any) -> None:
    assert parse_attribute(text) == parsed


def test_demo_traces_and_logs_share_trace_ids_with_errors(
    demo_engine: Engine, logged_in_app: AppFactory
) -> None:
    from sqlalchemy import text

    with demo_engine.connect() as conn:
        linked = conn.execute(
            text(
                "SELECT count(DISTINCT e.trace_id) FROM error_events e"
                " JOIN spans s ON s.trace_id = e.trace_id"
                " JOIN log_records l ON l.trace_id = e.trace_id AND l.severity_number >= 17"
            )
        ).scalar_one()
    assert linked >= 40  # every burst trace: error events, spans and ERROR logs together
    # the payment-provider outage (a Saturday more than DEMO_DAYS back): failing provider
    # calls and ERROR logs sharing trace ids
    spans: list[tuple[Any, ...]] = []
    logs: list[tuple[Any, ...]] = []
    telemetry._outage(
        DEMO_NOW - timedelta(days=30), DEMO_NOW, np.random.default_rng(1), spans, logs
    )
    failing = {s[1] for s in spans if s[4] == "payments" and s[8] == 2}
    logged = {r[4] for r in logs if r[1] == 17 and r[6] == "payments"}
    assert len(failing) > 50 and failing == logged
    at = _open(logged_in_app, "pages/traces.py")
    assert len(at.dataframe[0].value) > 0  # the last day: search traffic at least
    at.checkbox(key="traces_errors").check().run()
    assert not at.exception, at.exception
    assert (at.dataframe[0].value["Errors"] > 0).all()
