"""User data never becomes markup: on the pages (markdown) and in notifications (mentions and
links in chat services) (issue 13, item 10). Markdown is checked by rendering it with
markdown-it (CommonMark, which Streamlit's renderer follows), not by comparing strings."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from monitoring_core import clock
from monitoring_core.enums import Role
from monitoring_core.flows.alert_cycle import run_evaluation
from monitoring_core.incidents import escalation
from monitoring_core.notify.templates import inert, render_alert, render_self_alert
from tests.alerting_support import point, threshold_rule
from ui.fmt import md_code, md_escape

EVIL = [
    "x` ![pixel](https://evil.example/p.png) `[login](https://phish.example)",
    "[click here](javascript:alert(1))",
    "<img src=x onerror=alert(1)> <https://phish.example>",
    "**bold** _it_ ~~gone~~ $x^2$ :red[alarm] :material/warning: :smile:",
    "first line\n# Heading\n- item\n> quote",
    "1. numbered",
    "back\\slash \\` and ``two``",
    "www.phish.example and https://phish.example/login",
    "&lt;script&gt; &amp; &#96;",
    "|a|b|\n|-|-|",
]
MARKUP_TAGS = {"a", "img", "code", "h1", "h2", "em", "strong", "s", "ul", "ol", "li", "blockquote"}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def rendered(markdown: str) -> _Tags:
    parser = _Tags()
    parser.feed(MarkdownIt("commonmark").enable("table").render(markdown))
    return parser


@pytest.mark.parametrize("value", EVIL)
def test_it_shows_user_data_as_typed_in_markdown(value: str) -> None:
    escaped = md_escape(value)
    html = rendered(f"**Alert** {escaped} — firing")
    assert set(html.tags) & MARKUP_TAGS == {"strong"}  # only our own bold
    shown = "".join(html.text)
    assert " ".join(value.split()) in shown.replace("\u200b", "")
    # GFM (Streamlit) also links bare URLs, www. names and addresses found in the shown text.
    assert not re.search(r"://|www\.|@\w", shown)


@pytest.mark.parametrize("value", EVIL)
def test_it_keeps_user_data_inside_its_code_span(value: str) -> None:
    html = rendered(f"did not go on to {md_code(value)}.")
    assert html.tags == ["p", "code"]
    assert "".join(html.text).strip().endswith(" ".join(value.split()) + ".")


@pytest.mark.parametrize(
    "value",
    [
        "@channel",
        "@here please",
        "@everyone",
        "<@U024BE7LH>",
        "<@&123456>",
        "<!channel>",
        "<!here|here>",
        "&lt;!everyone&gt;",
        "<https://phish.example|Open the incident>",
        "[Open the incident](https://phish.example)",
    ],
)
def test_it_takes_mentions_and_links_out_of_notifications(value: str) -> None:
    alert = {"id": 7, "alert_name": f"Checkout {value}", "alert_key": f"service={value}"}
    message = render_alert("firing", alert, public_url="https://ui.example")
    for text in (message.title, message.body):
        for trigger in ("@", "<", "!", "&"):
            assert all(part.startswith("\u200b") for part in text.split(trigger)[1:])
        assert "](" not in text
    assert "Open: https://ui.example/response-alert?instance=7" in message.body  # ours stays
    assert inert(value).replace("\u200b", "") == value  # and reads the same


def test_it_takes_mentions_out_of_incident_pages() -> None:
    incident = {
        "id": 3,
        "incident_number": "INC-2026-0003",
        "title": "@channel gallery down, see [status](https://phish.example)",
        "severity": "SEV1",
        "status": "investigating",
        "wedding_impact": "high",
        "affected_services": ["<!here>"],
        "detected_at": datetime(2026, 3, 10, tzinfo=UTC),
    }
    message = escalation._message(incident, escalation.Page(0, (1,), "unacknowledged"), "")
    text = message.title + message.body
    assert "@channel" not in text and "](" not in text and "<!here>" not in text


def test_it_keeps_an_alert_name_on_one_line() -> None:
    message = render_alert("firing", {"id": 1, "alert_name": "a\nSeverity: low"}, public_url="")
    assert message.title.count("\n") == 0 and "Severity: low" not in message.body.splitlines()
    self_alert = render_self_alert("ops @here", 3, "500 <!channel>", public_url="")
    assert "@here" not in self_alert.body and "<!channel>" not in self_alert.body


def test_it_escapes_a_dimension_value_on_the_alerts_page(
    engine: Engine, logged_in_app: Callable[[Role | None], AppTest]
) -> None:
    now = clock.now()
    with engine.begin() as conn:
        threshold_rule(
            conn, now, alert_name="Checkout [slow](https://x)", cfg={"group_by": ["service"]}
        )
    point(engine, now - timedelta(seconds=2), 500, dims={"service": EVIL[0]})
    run_evaluation(engine, now)
    at = logged_in_app(Role.VIEWER)
    at.run()
    at.switch_page("pages/alerts.py").run()
    assert not at.exception, at.exception
    cards = [m.value for m in at.markdown if "Checkout" in m.value]
    assert cards, [m.value for m in at.markdown]
    shown = []
    for card in cards:  # the alert's card and the rule's line
        html = rendered(card)
        assert not {"a", "img", "code"} & set(html.tags), card
        shown.append("".join(html.text).replace("\u200b", ""))
    assert all("Checkout [slow](https://x)" in text for text in shown)
    assert any(EVIL[0] in text for text in shown)
