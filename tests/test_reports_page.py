"""The Reports page: a kept weekly digest read on the page, its Markdown downloadable, the week
in the URL; only admins build one now."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, func, select
from streamlit.testing.v1 import AppTest

from monitoring_core.enums import Role
from monitoring_core.flows.digest import store_digest
from monitoring_core.schema import audit_log, digests
from tests.test_digest import DUE, LONDON, WEEK, _week_of_data

AppFactory = Callable[[Role | None], AppTest]


def _page(logged_in_app: AppFactory, role: Role) -> AppTest:
    at = logged_in_app(role).run()
    return at.switch_page("pages/reports.py").run()


def test_a_digest_reads_on_the_page_and_downloads(
    engine: Engine, logged_in_app: AppFactory
) -> None:
    _week_of_data(engine)
    with engine.begin() as conn:
        assert store_digest(conn, week_start=WEEK, tz=LONDON, now=DUE, channel_ids=())
    at = _page(logged_in_app, Role.VIEWER)
    assert not at.exception
    assert at.query_params["week"] == WEEK.isoformat()
    shown = {m.label: m.value for m in at.metric}
    assert shown["Incidents"] == "2"
    assert shown["Mean time to acknowledge"] == "7 min"
    assert shown["Saturday incidents"] == "1"
    assert list(at.dataframe[0].value["Uptime"]) == ["75.000 %"]
    assert list(at.dataframe[1].value["Type"])[:1] == ["PaymentDeclined"]
    assert all(g.startswith("#") for g in at.dataframe[1].value["Group"])  # ids read as ids
    assert not [b for b in at.button if b.label.startswith("Build")]  # viewers build nothing
    assert at.get("download_button")


def test_an_admin_builds_last_weeks_digest_once(engine: Engine, logged_in_app: AppFactory) -> None:
    at = _page(logged_in_app, Role.ADMIN)
    assert not at.exception
    assert any("No digest yet" in i.value for i in at.info)
    build = next(b for b in at.button if b.label.startswith("Build the digest"))
    at = build.click().run()
    assert not at.exception
    assert any("Built." in s.value for s in at.success)
    at = next(b for b in at.button if b.label.startswith("Build the digest")).click().run()
    assert any("exists already" in s.value for s in at.success)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(digests)).scalar() == 1
        built = select(func.count()).where(audit_log.c.action == "digest.build")
        assert conn.execute(built).scalar() == 1
