"""Organisation-scoped views (#17 item 6): row-level security holds against hand-written SQL.

Errors and business events for two organisations are stored; a session of the
`monitoring_scoped` role carrying a grant for one organisation then runs plain SQL with no WHERE
clause and sees only that organisation's rows — and nothing at all with a guessed, expired or
missing token, and never the secret tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
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
from monitoring_core.business.ingest import ingest_business_events
from monitoring_core.db import SCOPED_ROLE, _role_passwords, make_engine
from monitoring_core.enums import Role
from monitoring_core.errors.model import ErrorInput
from monitoring_core.flows.error_ingest import ingest_errors
from monitoring_core.partitions import ensure_partitions
from monitoring_core.schema import audit_log
from tests.least_privilege_support import ROLES_FILE, hand_over
from tests.test_cli import cli
from tests.ui_harness import USER_KEY

ORGS = ("org-rose", "org-lily")


@pytest.fixture
def scoped_engine(engine: Engine, database_url: str, now: datetime) -> Iterator[Engine]:
    with engine.begin() as conn:
        ensure_partitions(conn, start=now - timedelta(hours=1), end=now)
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
        assert conn.execute(text("SELECT count(*) FROM business_events")).scalar() == 4
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


def test_a_user_limited_to_one_organisation_sees_only_its_errors_in_the_ui(
    engine: Engine,
    scoped_engine: Engine,
    logged_in_app: Callable[[Role | None], AppTest],
    monkeypatch: pytest.MonkeyPatch,
    now: Any,
) -> None:
    monkeypatch.setenv(
        "DATABASE_SCOPED_URL", scoped_engine.url.render_as_string(hide_password=False)
    )
    at = logged_in_app(Role.VIEWER)
    user = at.session_state[USER_KEY]
    with engine.begin() as conn:
        org_scope.set_user_organizations(
            conn, user=user.id, organizations=["org-rose"], actor="admin", now=now
        )
    at = at.run()
    assert not at.exception
    assert any("org-rose" in c.value for c in at.sidebar.caption)
    shown = " ".join(str(df.value.to_dict()) for df in at.dataframe)
    assert "BookingErrorrose" in shown
    assert "BookingErrorlily" not in shown
    assert not at.error, [e.value for e in at.error]
