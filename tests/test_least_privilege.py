"""Least privilege in the database: the app role, the reader role for `self`, refused URLs.

Each attack goes through the real code paths (SQL collectors, database checks, the admin API)
against the session database after `ensure_roles` handed it to `monitoring_app`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import Engine, func, insert, select, text

from jobs.supervisor import adopt_self_urls
from monitoring_core.collectors.readonly import (
    PrivilegedRole,
    RowCapExceeded,
    UnusableUrl,
    run_readonly_query,
)
from monitoring_core.collectors.runner import run_configured_collectors
from monitoring_core.collectors.sql import MAX_ROWS, SqlCollector
from monitoring_core.db import READER_ROLE, ensure_roles, grant_reader_select, make_engine
from monitoring_core.health.probes import run_probe
from monitoring_core.migrate import migrate
from monitoring_core.partitions import ensure_partitions
from monitoring_core.schema import audit_log, health_checks, sql_collectors
from tests.least_privilege_support import ROLES_FILE, hand_over

NOW = datetime(2026, 6, 3, 13, 0, tzinfo=UTC)
SECRET_TABLES = ("api_keys", "users", "notification_channels", "sql_collectors", "health_checks")


def _self(engine: Engine, query: str, timeout: float = 5.0) -> SqlCollector:
    return SqlCollector(
        name="attack",
        url="self",
        query=query,
        metric_name="attack",
        timeout_seconds=timeout,
        self_engine=engine,
    )


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture
def db_roles(database_url: str) -> tuple[str, str]:
    """(app URL, reader URL) of the session database, handed over again (as at every start):
    other tests' superuser connections may have created partitions since."""
    return hand_over(database_url)


@pytest.fixture
def reader_env(db_roles: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """DATABASE_READER_URL set to the session's reader role (what `make run` gives children)."""
    monkeypatch.setenv("DATABASE_READER_URL", db_roles[1])
    return db_roles[1]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the Postgres server's OS user could write to, were it asked to."""
    path = Path(tempfile.mkdtemp(prefix="lp-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_it_connects_the_app_as_a_non_superuser_owner(engine: Engine, database_url: str) -> None:
    with engine.begin() as conn:  # the superuser made the schema; now it adds partitions too
        ensure_partitions(conn, start=NOW + timedelta(days=900), end=NOW + timedelta(days=901))
    app_url, reader_url = hand_over(database_url)  # what every start does
    with psycopg.connect(_libpq(app_url)) as conn:
        role = conn.execute(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls"
            " FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class"
            " WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'S')"
        ).fetchall()
    assert role == ("monitoring_app", False, False, False, False)
    assert owners == [("monitoring_app",)]  # a database made by the superuser was handed over
    app = make_engine(app_url)
    try:
        migrate(app, now=NOW)  # migrations and new partitions run as the owner
        with app.begin() as conn:
            conn.execute(insert(sql_collectors).values(name="n", kind="sql", url="self", query="1"))
    finally:
        app.dispose()
    with psycopg.connect(_libpq(reader_url)) as conn:
        assert conn.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone() == (False,)


def test_it_refuses_programs_files_signals_and_secrets_to_self_collectors(
    engine: Engine, db_roles: tuple[str, str], reader_env: str, shared_dir: Path
) -> None:
    marker = shared_dir / "pwned"
    with psycopg.connect(_libpq(db_roles[0])) as app_conn:
        app_pid = app_conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        attacks = [
            (f"COPY (SELECT 1) TO PROGRAM 'touch {marker}'", "pg_execute_server_program"),
            ("SELECT pg_read_file('/etc/hostname') AS f, 1 AS value", "pg_read_file"),
            (f"SELECT pg_terminate_backend({app_pid})::int AS value", "terminate"),
            (f"SELECT pg_cancel_backend({app_pid})::int AS value", "cancel"),
            *[
                (f"SELECT *, 1 AS value FROM {t}", f"permission denied for table {t}")  # noqa: S608 (the attack)
                for t in SECRET_TABLES
            ],
        ]
        for query, fragment in attacks:
            with pytest.raises(psycopg.Error, match=fragment):
                _self(engine, query).collect(NOW)
            outcome = run_probe("database", {"url": "self", "query": query}, 2.0)
            assert not outcome.success and "InsufficientPrivilege" in outcome.message, query
        assert app_conn.execute("SELECT 1").fetchone() == (1,)  # never terminated
    assert not marker.exists()


def test_it_reads_pg_stat_activity_as_the_reader(
    engine: Engine, reader_env: str, now: datetime
) -> None:
    query = "SELECT usename AS who, count(*) AS value FROM pg_stat_activity WHERE pid = pg_backend_pid() GROUP BY 1"
    points = _self(engine, query).collect(NOW)
    assert [(p.dimensions["who"], p.value) for p in points] == [(READER_ROLE, 1.0)]
    check = run_probe(
        "database", {"url": "self", "query": "SELECT count(*) FROM pg_stat_activity"}, 2.0
    )
    assert check.success, check.message
    with engine.begin() as conn:
        conn.execute(
            insert(sql_collectors).values(
                name="sessions",
                kind="sql",
                url="self",
                query="SELECT count(*) AS value FROM pg_stat_activity",
            )
        )
    assert [(r.name, r.ok, r.error) for r in run_configured_collectors(engine, now).runs] == [
        ("sessions", True, None)
    ]


def test_it_bounds_self_queries_by_the_readers_timeout(
    engine: Engine, db_roles: tuple[str, str], reader_env: str
) -> None:
    timeout = "SELECT extract(epoch FROM current_setting('statement_timeout')::interval) AS value"
    # A collector asking for a minute still gets the reader's 5 s.
    assert [p.value for p in _self(engine, timeout, timeout=60).collect(NOW)] == [5.0]
    with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
        _self(engine, "SELECT pg_sleep(3) IS NULL AS slept, 1 AS value", timeout=0.3).collect(NOW)
    # Any client of the reader role, even without our session options, is bounded and read-only.
    with psycopg.connect(_libpq(db_roles[1])) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("5s",)
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)


def test_it_caps_the_rows_a_collector_query_returns(engine: Engine, reader_env: str) -> None:
    exact = f"SELECT generate_series(1, {MAX_ROWS}) AS value"
    assert len(_self(engine, exact).collect(NOW)) == MAX_ROWS
    # A billion rows: refused after the first MAX_ROWS + 1, long before the 5 s timeout.
    # (In the select list the series streams; in FROM it would be built whole first.)
    huge = "SELECT generate_series(1, 1000000000) AS value"
    with pytest.raises(RowCapExceeded, match="more than 1,000 rows"):
        _self(engine, huge).collect(NOW)
    # A health check only needs an answer: it reads one row and stops.
    assert run_probe("database", {"url": "self", "query": huge}, 2.0).success


def test_it_refuses_privileged_roles_named_in_a_url(
    engine: Engine, database_url: str, db_roles: tuple[str, str]
) -> None:
    # The superuser (the embedded cluster trusts its socket: no password needed) and the
    # application's own role (it owns the secret tables) are both refused.
    for url, fragment in [(database_url, "superuser"), (db_roles[0], "secret tables")]:
        with pytest.raises(PrivilegedRole, match=fragment):
            SqlCollector(name="x", url=url, query="SELECT 1 AS value", metric_name=None).collect(
                NOW
            )
        outcome = run_probe("database", {"url": url}, 2.0)
        assert not outcome.success and fragment in outcome.message


def test_it_refuses_self_without_a_reader_role(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An external DATABASE_URL without DATABASE_READER_URL: never fall back to the app's role.
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("DATABASE_READER_URL", raising=False)
    with pytest.raises(UnusableUrl, match="DATABASE_READER_URL"):
        _self(engine, "SELECT 1 AS value").collect(NOW)
    outcome = run_probe("database", {"url": "self"}, 2.0)
    assert not outcome.success and "DATABASE_READER_URL" in outcome.message


def test_it_refuses_a_stored_sqlite_url_at_run_time(shared_dir: Path) -> None:
    target = shared_dir / "created.db"
    for url in (f"sqlite:///{target}", f"sqlite+pysqlite:///{target}"):
        with pytest.raises(UnusableUrl, match="only postgresql"):
            run_readonly_query(url, "SELECT 1", timeout=1, max_rows=1)
        assert not run_probe("database", {"url": url}, 1.0).success
    assert not target.exists()


BAD_URLS = [
    "sqlite:////tmp/least-privilege.db",
    "mysql://root@db.internal/shop",
    "postgresql+psycopg2://u:p@db.internal/platform",
    "postgresql://u:p@db.internal/platform?passfile=/etc/shadow",
    "postgresql://u:p@db.internal/platform?sslkeylogfile=/tmp/keys",
    "postgresql://u:p@db.internal/platform?service=prod",
    "not a url",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_it_answers_422_for_an_unsupported_database_url(
    api_server: str, admin_key: str, engine: Engine, url: str
) -> None:
    with httpx.Client(base_url=api_server, headers={"Authorization": f"Bearer {admin_key}"}) as api:
        collector = api.post(
            "/api/admin/monitoring/collectors",
            json={"name": "c", "url": url, "query": "SELECT 1 AS value"},
        )
        check = api.post(
            "/api/admin/monitoring/health/checks",
            json={"check_name": "d", "check_type": "database", "check_config": {"url": url}},
        )
    assert collector.status_code == 422, collector.text
    assert [e["field"] for e in collector.json()["detail"]] == ["url"]
    assert check.status_code == 422, check.text
    assert [e["field"] for e in check.json()["detail"]] == ["check_config.url"]
    with engine.connect() as conn:
        stored = [
            conn.execute(select(func.count()).select_from(t)).scalar()
            for t in (sql_collectors, health_checks)
        ]
    assert stored == [0, 0]
    assert not Path("/tmp/least-privilege.db").exists()


def test_it_accepts_self_and_postgres_urls(api_server: str, admin_key: str, engine: Engine) -> None:
    with httpx.Client(base_url=api_server, headers={"Authorization": f"Bearer {admin_key}"}) as api:
        for i, url in enumerate(["self", "postgresql://u:p@db.internal/p?sslmode=require"]):
            made = api.post(
                "/api/admin/monitoring/health/checks",
                json={
                    "check_name": f"d{i}",
                    "check_type": "database",
                    "check_config": {"url": url},
                },
            )
            assert made.status_code == 201, made.text
            made = api.post(
                "/api/admin/monitoring/collectors",
                json={"name": f"c{i}", "url": url, "query": "SELECT 1 AS value"},
            )
            assert made.status_code == 201, made.text


def test_it_keeps_secret_tables_from_the_reader_after_a_broad_grant(
    engine: Engine, database_url: str, db_roles: tuple[str, str], reader_env: str
) -> None:
    app = make_engine(db_roles[0])
    try:
        with app.begin() as conn:
            conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {READER_ROLE}"))
            with pytest.raises(ValueError, match="users"):
                grant_reader_select(conn, ["business_events", "users"])
            assert grant_reader_select(conn, ["business_events"])
    finally:
        app.dispose()
    database = db_roles[0].rsplit("/", 1)[1].split("?")[0]
    assert ensure_roles(database_url, database, secrets_file=ROLES_FILE) == db_roles  # idempotent
    count = "SELECT count(*) AS value FROM business_events"
    assert [p.value for p in _self(engine, count).collect(NOW)] == [0.0]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="users"):
        _self(engine, "SELECT count(*) AS value FROM users").collect(NOW)
    assert oct(ROLES_FILE.stat().st_mode & 0o777) == "0o600"


def test_it_moves_checks_and_collectors_off_the_superusers_url(
    engine: Engine, database_url: str, now: datetime
) -> None:
    # What the demo stored before the roles existed: the embedded superuser's own URL.
    other = "postgresql+psycopg://u:p@db.internal/platform"
    with engine.begin() as conn:
        for name, url in [("old demo", database_url), ("platform", other)]:
            conn.execute(
                insert(health_checks).values(
                    check_name=name,
                    check_type="database",
                    check_config={"url": url, "query": "SELECT 1"},
                )
            )
            conn.execute(insert(sql_collectors).values(name=name, kind="sql", url=url, query="1"))
        assert adopt_self_urls(conn, database_url, now) == 2
    with engine.connect() as conn:
        checks = dict(
            conn.execute(select(health_checks.c.check_name, health_checks.c.check_config)).all()
        )
        collectors = dict(conn.execute(select(sql_collectors.c.name, sql_collectors.c.url)).all())
        audited = conn.execute(select(audit_log.c.action)).scalars().all()
    assert checks == {
        "old demo": {"url": "self", "query": "SELECT 1"},
        "platform": {"url": other, "query": "SELECT 1"},
    }
    assert collectors == {"old demo": "self", "platform": other}
    assert sorted(audited) == ["collector.update", "health_check.update"]
