"""Every CLI command in the README's "Processes", run as a user runs it: a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
from sqlalchemy import Engine, select, text

from monitoring_core.accounts import authenticate_user, lookup_api_key
from monitoring_core.enums import ApiScope, Role
from monitoring_core.schema import api_keys, users

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, url: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DATABASE_URL": url, **env}
    return subprocess.run(
        [sys.executable, "-m", "monitoring_core", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        timeout=120,
    )


def test_it_migrates(engine: Engine, database_url: str) -> None:
    result = cli("migrate", url=database_url)
    assert result.returncode == 0, result.stderr
    assert "latest schema" in result.stdout


def test_it_adds_a_user_with_a_hashed_password(engine: Engine, database_url: str, now) -> None:
    result = cli(
        "user",
        "add",
        "olivia",
        "--role",
        "responder",
        "--password-stdin",
        url=database_url,
        stdin="s3cret-pass\n",
    )
    assert result.returncode == 0, result.stderr
    with engine.begin() as conn:
        stored = conn.execute(select(users.c.password_hash, users.c.role)).one()
        assert stored.role == "responder"
        assert stored.password_hash.startswith("$argon2id$")
        assert "s3cret-pass" not in stored.password_hash
        user = authenticate_user(conn, username="olivia", password="s3cret-pass", now=now)
        assert user is not None and user.role is Role.RESPONDER
        assert authenticate_user(conn, username="olivia", password="wrong-pass", now=now) is None


def test_it_refuses_a_duplicate_user_and_a_short_password(
    engine: Engine, database_url: str
) -> None:
    assert (
        cli(
            "user",
            "add",
            "sam",
            "--role",
            "viewer",
            "--password-stdin",
            url=database_url,
            stdin="long-enough\n",
        ).returncode
        == 0
    )
    again = cli(
        "user",
        "add",
        "sam",
        "--role",
        "viewer",
        "--password-stdin",
        url=database_url,
        stdin="long-enough\n",
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    short = cli(
        "user",
        "add",
        "kim",
        "--role",
        "viewer",
        "--password-stdin",
        url=database_url,
        stdin="short\n",
    )
    assert short.returncode == 1 and "at least 8" in short.stderr
    bad_role = cli(
        "user",
        "add",
        "kim",
        "--role",
        "owner",
        "--password-stdin",
        url=database_url,
        stdin="long-enough\n",
    )
    assert bad_role.returncode == 2


def test_it_prints_a_new_api_key_alone_on_the_last_line(engine: Engine, database_url: str) -> None:
    result = cli("apikey", "add", "checkout-service", "--scope", "ingest", url=database_url)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("mk_") and " " not in key
    with engine.begin() as conn:
        found = lookup_api_key(conn, key)
        assert (
            found is not None
            and found.scope is ApiScope.INGEST
            and found.name == "checkout-service"
        )
        assert key not in {row.key_hash for row in conn.execute(select(api_keys.c.key_hash))}


def test_it_prints_the_database_url_in_use(database_url: str) -> None:
    result = cli("db-url", url=database_url)
    assert result.returncode == 0
    assert result.stdout.strip() == database_url


def test_it_starts_the_embedded_server_for_db_url(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["MONITORING_DATA_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "monitoring_core", "db-url"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith("postgresql+psycopg://")
    try:
        # The server outlives the command, so the printed URL is usable.
        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        from pgserver._commands import pg_ctl

        user = "pgserver" if os.geteuid() == 0 else None
        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=tmp_path / "pg", user=user)


def test_it_explains_a_bad_setting(database_url: str) -> None:
    result = cli("migrate", url=database_url, MONITORING_TZ="Mars/Olympus_Mons")
    assert result.returncode == 2
    assert "MONITORING_TZ" in result.stderr


def test_it_reports_an_unreachable_database(engine: Engine) -> None:
    result = cli("migrate", url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "database" in result.stderr.lower()
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
