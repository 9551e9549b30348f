"""Organisation-scoped views (#17 item 6): row-level security holds against hand-written SQL.

Errors, business events and incidents for two organisations are stored; a session of the
`monitoring_scoped` role carrying a grant for one organisation then runs plain SQL with no WHERE
clause and sees only that organisation's rows — and nothing at all with a guessed, expired or
missing token, and never the secret tables. In the UI such a user has Errors, their Business
figures and Incidents, each showing only their organisation (numbers checked exactly), and no
other page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from streamlit.testing.v1 import AppTest

from monitoring_core import org_scope
from monitoring_core.accounts import AccountInvalid, active_user, add_user
from monitoring_core.business.definitions import local_day
from monitoring_core.business.ingest import ingest_business_events
from monitoring_core.config import load_settings
from monitoring_core.db import SCOPED_ROLE, _role_passwords, make_engine
from monitoring_core.enums import Role
from monitoring_core.errors.model import ErrorInput
from monitoring_core.flows.error_ingest import ingest_errors
from monitoring_core.incidents import service
from monitoring_core.incidents.store import link_error_group
from monitoring_core.partitions import ensure_partitions
from monitoring_core.schema import audit_log, error_groups
from tests.least_privilege_support import ROLES_FILE, hand_over
from tests.test_cli import cli
from tests.ui_harness import USER_KEY, table_with
from ui.business_charts import humanize

ORGS = ("org-rose", "org-lily")
PAGES = Path(__file__).resolve().parent.parent / "pages"
# Business events on complete days: (days before today, event type, revenue, currency, count).
# The cards compare the last 7 complete days (1..7 days ago) with the 7 before (8..14).
BUSINESS = {
    "org-rose": [
        (1, "signup", None, None, 3),
        (1, "form_started", None, None, 2),
        (2, "form_completed", None, None, 1),
        (3, "subscription_paid", 120, "GBP", 1),
        (10, "page_view", None, None, 5),
    ],
    "org-lily": [
        (1, "signup", None, None, 6),
        (4, "subscription_paid", 50, "EUR", 2),
        (9, "page_view", None, None, 1),
    ],
}
# incident title -> the organisations whose error group it is linked to
INCIDENTS = {
    "Checkout down": ("org-rose", "org-lily"),
    "Lily sync broken": ("org-lily",),
    "Platform DNS": (),
}


def _store_business(conn: Any, now: datetime) -> None:
    tz = load_settings().tz
    today = local_day(now, tz)
    for org, rows in BUSINESS.items():
        events = [
            {
                "event_type": kind,
                "organization_id": org,
                "user_id": f"p-{org}-{i % 2}",
                "timestamp": datetime.combine(
                    today - timedelta(days=ago), time(12), tzinfo=tz
                ).isoformat(),
            }
            | ({"revenue": revenue, "currency": currency} if revenue else {})
            for ago, kind, revenue, currency, count in rows
            for i in range(count)
        ]
        ingest_business_events(conn, events, now=now)


def _store_incidents(conn: Any, now: datetime) -> None:
    groups = dict(conn.execute(select(error_groups.c.error_type, error_groups.c.id)).all())
    for title, orgs in INCIDENTS.items():
        incident = service.create_incident(
            conn,
            body={"title": title, "severity": "SEV2"},
            actor="user:admin",
            role="admin",
            now=now - timedelta(minutes=3),
        )
        for org in orgs:
            group = groups[f"BookingError{org[-4:]}"]
            link_error_group(conn, incident_id=incident["id"], error_group_id=group, now=now)


@pytest.fixture
def scoped_engine(engine: Engine, database_url: str, now: datetime) -> Iterator[Engine]:
    with engine.begin() as conn:
        ensure_partitions(conn, start=now - timedelta(days=16), end=now)
        for org in ORGS:
            errors = [
                ErrorInput(
                    f"BookingError{org[-4:]}",
                    f"booking failed for {org}",
                    "bookings",
                    "api",
                    now - timedelta(minutes=5 + i),
                    organization_id=org,
                    user_id=f"u-{org}-{i}",
                )
                for i in range(3)
            ]
            ingest_errors(conn, errors, now=now, tz=ZoneInfo("Europe/London"), open_incidents=False)
            events = [
                {
                    "event_type": "enquiry_sent",
                    "organization_id": org,
                    "user_id": f"c-{org}-{i}",
                    "timestamp": (now - timedelta(minutes=5 + i)).isoformat(),
                }
                for i in range(4)
            ]
            ingest_business_events(conn, events, now=now)
        _store_business(conn, now)
        _store_incidents(conn, now)
    hand_over(database_url)  # the roles, the database to monitoring_app, the scoped grants
    password = _role_passwords(ROLES_FILE)[0][SCOPED_ROLE]
    url = make_url(database_url).set(username=SCOPED_ROLE, password=password)
    scoped = make_engine(url.render_as_string(hide_password=False))
    yield scoped
    scoped.dispose()


def _orgs_seen(conn: Any) -> dict[str, set[str]]:
    seen = {}
    for table in ("error_events", "business_events"):
        rows = conn.execute(text(f"SELECT DISTINCT organization_id FROM {table}"))  # noqa: S608
        seen[table] = {r[0] for r in rows}
    groups = conn.execute(text("SELECT error_type FROM error_groups")).scalars().all()
    seen["error_groups"] = {f"org-{t.removeprefix('BookingError')}" for t in groups}
    linked = conn.execute(
        text(
            "SELECT g.error_type FROM incident_error_groups l"
            " JOIN error_groups g ON g.id = l.error_group_id"
        )
    ).scalars()
    seen["incident_error_groups"] = {f"org-{t.removeprefix('BookingError')}" for t in linked}
    return seen


def test_hand_written_sql_in_a_scoped_session_sees_only_its_organisations(
    engine: Engine, scoped_engine: Engine
) -> None:
    with engine.begin() as conn:  # everything is there for the owner
        assert _orgs_seen(conn)["error_events"] >= set(ORGS)
        token = org_scope.open_grant(conn, user_id=None, organizations=["org-rose"])
    with org_scope.scoped_connection(scoped_engine, token) as conn:
        seen = _orgs_seen(conn)
        assert seen == {k: {"org-rose"} for k in seen}
        count = conn.execute(text("SELECT count(*) FROM error_events")).scalar()
        assert count == 3
        business = conn.execute(
            text("SELECT count(*), sum(revenue)::int, string_agg(DISTINCT currency, ',')"
                 " FROM business_events")
        ).one()  # fmt: skip
        assert tuple(business) == (4 + 12, 120, "GBP")  # fixture's 4 enquiries, BUSINESS
        titles = conn.execute(text("SELECT title FROM incidents")).scalars().all()
        assert titles == ["Checkout down"]  # not Lily's, not the one linked to no group
        # Widening the scope by hand needs another live token: a guess sees nothing.
        conn.execute(text("SELECT set_config('monitoring.scope_token', 'guess', false)"))
        assert conn.execute(text("SELECT count(*) FROM error_events")).scalar() == 0
        conn.rollback()
    _no_token_an_expired_one_or_a_closed_one_sees_nothing(engine, scoped_engine)


def _no_token_an_expired_one_or_a_closed_one_sees_nothing(
    engine: Engine, scoped_engine: Engine
) -> None:
    # Grants are set and expire by the database's clock (`now()`), never the test instant.
    with scoped_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM business_events")).scalar() == 0
    with engine.begin() as conn:
        old = org_scope.open_grant(
            conn, user_id=None, organizations=["org-lily"], ttl=-timedelta(hours=1)
        )
        live = org_scope.open_grant(conn, user_id=None, organizations=["org-lily"])
    with org_scope.scoped_connection(scoped_engine, old) as conn:
        assert conn.execute(text("SELECT count(*) FROM business_events")).scalar() == 0
    with org_scope.scoped_connection(scoped_engine, live) as conn:
        assert conn.execute(text("SELECT count(*) FROM business_events")).scalar() == 4 + 9
        titles = conn.execute(text("SELECT title FROM incidents ORDER BY id")).scalars().all()
        assert titles == ["Checkout down", "Lily sync broken"]
    with engine.begin() as conn:
        org_scope.close_grant(conn, live)
        assert org_scope.purge_expired(conn) >= 1
    with org_scope.scoped_connection(scoped_engine, live) as conn:
        assert conn.execute(text("SELECT count(*) FROM business_events")).scalar() == 0


REFUSED = (
    "SELECT * FROM org_scope_grants",
    "SELECT * FROM api_keys",
    "SELECT * FROM users",
    "SELECT * FROM notification_channels",
    "SELECT * FROM alert_rules",
    "INSERT INTO business_events (time, event_type) VALUES (now(), 'x')",
    "SET ROLE monitoring_app",
)


def test_the_scoped_role_reads_nothing_else_and_writes_nothing(
    engine: Engine, scoped_engine: Engine
) -> None:
    with engine.begin() as conn:
        token = org_scope.open_grant(conn, user_id=None, organizations=list(ORGS))
    with org_scope.scoped_connection(scoped_engine, token) as conn:
        for statement in REFUSED:
            with pytest.raises(DBAPIError) as refused:
                conn.execute(text(statement))
            assert isinstance(
                refused.value.orig,
                psycopg.errors.InsufficientPrivilege | psycopg.errors.ReadOnlySqlTransaction,
            ), statement
            conn.rollback()
    _a_partition_read_directly_is_refused(engine, scoped_engine)


def _a_partition_read_directly_is_refused(engine: Engine, scoped_engine: Engine) -> None:
    with engine.connect() as conn:
        partition = conn.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'error_events'::regclass LIMIT 1"
            )
        ).scalar()
    assert partition
    with scoped_engine.connect() as conn, pytest.raises(DBAPIError) as refused:
        conn.execute(text(f'SELECT count(*) FROM "{partition}"'))  # noqa: S608
    assert isinstance(refused.value.orig, psycopg.errors.InsufficientPrivilege)


def test_limiting_a_user_is_audited_read_back_and_ends_their_grants(
    engine: Engine, now: Any
) -> None:
    with engine.begin() as conn:
        row = add_user(
            conn,
            username="rose-staff",
            password="a long pass phrase",
            role="viewer",
            actor="admin",
            now=now,
        )
        org_scope.set_user_organizations(
            conn,
            user="rose-staff",
            organizations=["org-rose", " org-rose "],
            actor="admin",
            now=now,
        )
        user = active_user(conn, user_id=row["id"])
        assert user is not None and user.organization_ids == ("org-rose",)
        token = org_scope.open_grant(conn, user_id=row["id"], organizations=["org-rose"])
        assert token
        for bad in ([], ["a\x00b"], [7]):
            with pytest.raises(AccountInvalid):
                org_scope.set_user_organizations(
                    conn, user="rose-staff", organizations=bad, actor="admin", now=now
                )
        org_scope.set_user_organizations(
            conn, user="rose-staff", organizations=None, actor="admin", now=now
        )
        user = active_user(conn, user_id=row["id"])
        assert user is not None and user.organization_ids is None
        left = conn.execute(
            text("SELECT count(*) FROM org_scope_grants WHERE user_id = :u"), {"u": row["id"]}
        )
        assert left.scalar() == 0
        actions = conn.execute(
            select(audit_log.c.action, audit_log.c.details).where(
                audit_log.c.target == "user:rose-staff"
            )
        ).all()
    assert [a for a, _ in actions].count("user.organizations") == 2
    assert {"organizations": "org-rose"} in [d for _, d in actions]


def test_the_cli_limits_a_user_and_lifts_the_limit(
    engine: Engine, database_url: str, now: Any
) -> None:
    with engine.begin() as conn:
        add_user(
            conn, username="lily-staff", password="a long pass phrase", role="viewer",
            actor="admin", now=now,
        )  # fmt: skip
    limited = cli("user", "organizations", "lily-staff", "org-lily", url=database_url)
    assert limited.returncode == 0, limited.stderr
    assert "lily-staff sees org-lily" in limited.stdout
    listed = cli("user", "list", url=database_url)
    assert "org-lily" in listed.stdout
    neither = cli("user", "organizations", "lily-staff", url=database_url)
    assert neither.returncode == 1 and "--all" in neither.stderr
    lifted = cli("user", "organizations", "lily-staff", "--all", url=database_url)
    assert lifted.returncode == 0 and "every organisation" in lifted.stdout


def _limited_app(
    engine: Engine,
    scoped_engine: Engine,
    logged_in_app: Callable[[Role | None], AppTest],
    monkeypatch: pytest.MonkeyPatch,
    now: datetime,
    role: Role,
) -> AppTest:
    monkeypatch.setenv(
        "DATABASE_SCOPED_URL", scoped_engine.url.render_as_string(hide_password=False)
    )
    at = logged_in_app(role)
    user = at.session_state[USER_KEY]
    with engine.begin() as conn:
        org_scope.set_user_organizations(
            conn, user=user.id, organizations=["org-rose"], actor="admin", now=now
        )
    return at


def _shown(at: AppTest) -> str:
    return " ".join(str(df.value.to_dict()) for df in at.dataframe)


def test_a_user_limited_to_one_organisation_sees_only_its_own_in_the_ui(
    engine: Engine,
    scoped_engine: Engine,
    logged_in_app: Callable[[Role | None], AppTest],
    monkeypatch: pytest.MonkeyPatch,
    now: datetime,
) -> None:
    # A responder: limited users are viewers of their scope whatever their role.
    at = _limited_app(engine, scoped_engine, logged_in_app, monkeypatch, now, Role.RESPONDER)
    at = at.run()
    assert not at.exception
    assert any("org-rose" in c.value for c in at.sidebar.caption)
    assert "BookingErrorrose" in _shown(at)
    assert "BookingErrorlily" not in _shown(at)
    groups = table_with(at, "Error", "Events in range")
    assert "Users ever" not in groups.columns  # a group's totals count every organisation
    assert not at.error, [e.value for e in at.error]
    _business_figures(at.switch_page("pages/organisation.py").run(), now)
    _incidents(at.switch_page("pages/incidents.py").run())
    _no_other_page(at)


def _business_figures(at: AppTest, now: datetime) -> None:
    assert not at.exception and not at.error, [e.value for e in at.error]
    tz = load_settings().tz
    # the fixture's 4 enquiries 5-8 minutes ago count once they are on a complete day
    early = sum(
        local_day(now - timedelta(minutes=5 + i), tz) < local_day(now, tz) for i in range(4)
    )
    cards = {m.label: m.value for m in at.metric}
    assert cards["Events"] == str(7 + early)
    assert cards["Signups"] == "3"
    assert cards["Journeys started"] == "0"
    assert cards["Revenue (GBP)"] == "£120"
    assert "Revenue (EUR)" not in cards  # Lily's only currency
    assert cards["Paying organisations"] == "0"
    by_type = table_with(at, "Event", "Events", "Previous 7 days")
    rows = {
        r["Event"]: (r["Events"], r["Previous 7 days"], r["Change"])
        for r in by_type.to_dict("records")
    }
    assert {k: v for k, v in rows.items() if k != humanize("enquiry_sent")} == {
        humanize("signup"): (3, 0, "new"),
        humanize("form_started"): (2, 0, "new"),
        humanize("form_completed"): (1, 0, "new"),
        humanize("subscription_paid"): (1, 0, "new"),
        humanize("page_view"): (0, 5, "-100 %"),
    }
    steps = table_with(at, "Step", "Event", "People")
    assert list(zip(steps["Event"], steps["People"], strict=True)) == [
        (humanize("form_started"), 2),
        (humanize("form_completed"), 0),  # completed the day before: not after starting
    ]
    orgs = table_with(at, "Organisation", "People").to_dict("records")
    assert orgs == [
        {"Organisation": "org-rose", "Events": 7 + early, "People": 2 + early, "Revenue": "£120"}
    ]


def _incidents(at: AppTest) -> None:
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = " ".join(m.value for m in at.markdown)
    assert "Checkout down" in shown
    assert "Lily sync broken" not in shown and "Platform DNS" not in shown
    assert not [e for e in at.expander if e.label == "Declare an incident"]
    recent = table_with(at, "Incident", "Title", "Status")
    assert list(recent["Title"]) == ["Checkout down"]
    at.query_params["tab"] = "Detail"
    at = at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    groups = table_with(at, "Error", "Status")
    assert list(groups["Error"].str.split(":").str[0]) == ["BookingErrorrose"]
    assert "Events" not in groups.columns  # a group's totals count every organisation
    assert not [b for b in at.button if b.label in ("Acknowledge", "Resolve", "Assign")]
    at.query_params["tab"] = "MTTA / MTTR"
    at = at.run()
    assert {m.label: m.value for m in at.metric}["Incidents"] == "1"


OFFERED = {"errors.py", "organisation.py", "incidents.py"}  # a limited user's pages
REFUSAL = (
    "This page shows every organisation's data; your account sees only its own "
    "organisations' errors, business figures and incidents (the pages in the menu)."
)


def _no_other_page(at: AppTest) -> None:
    for page in sorted(PAGES.glob("*.py")):
        if page.name not in OFFERED:
            with pytest.raises(ValueError, match="Could not find a navigation page"):
                at.switch_page(f"pages/{page.name}")


def _business_rollup_read() -> None:
    from datetime import date

    from ui import business_data

    business_data.cached_extra("retention_grid", date(2026, 6, 1))


def test_every_other_page_refuses_a_limited_user_and_theirs_the_others(
    engine: Engine,
    scoped_engine: Engine,
    logged_in_app: Callable[[Role | None], AppTest],
    monkeypatch: pytest.MonkeyPatch,
    now: datetime,
) -> None:
    at = _limited_app(engine, scoped_engine, logged_in_app, monkeypatch, now, Role.ADMIN)
    user = at.session_state[USER_KEY]
    with engine.connect() as conn:
        limited = active_user(conn, user_id=user.id)
    # Each page file run on its own, outside app.py's navigation, as a limited admin.
    for page in sorted(PAGES.glob("*.py")):
        if page.name in OFFERED:
            continue
        run = AppTest.from_file(str(page), default_timeout=60)
        run.session_state[USER_KEY] = limited
        run = run.run()
        assert not run.exception, page.name
        assert [e.value for e in run.error] == [REFUSAL], page.name
        assert not run.metric and not run.dataframe, page.name
    # The Business page's rollup (every organisation added up) refuses them on its own too.
    rollup = AppTest.from_function(_business_rollup_read, default_timeout=60)
    rollup.session_state[USER_KEY] = limited
    rollup = rollup.run()
    assert [e.value for e in rollup.error] == [
        "The Business page shows every organisation; your account sees only org\\-rose. "
        "Use the pages in the menu."
    ]
    everyone = AppTest.from_file(str(PAGES / "organisation.py"), default_timeout=60)
    everyone.session_state[USER_KEY] = user  # as signed in: every organisation
    everyone = everyone.run()
    assert "Every organisation's figures are on the Business page." in everyone.info[0].value
    assert not everyone.metric
