"""`make run`: database, migrations, demo data, then the API, the worker and the UI together.

Foreman semantics: the three children share one lifetime. Ctrl-C (or SIGTERM) stops all three;
if one of them dies, the others are stopped too and the exit code says which one failed, so a
broken process is never hidden behind two healthy ones.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from sqlalchemy import Connection, Engine, func, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB

from monitoring_core.config import Settings, load_settings
from monitoring_core.db import (
    database_url,
    embedded_url,
    grant_reader_select,
    make_engine,
    reader_url,
    scoped_url,
)
from monitoring_core.migrate import migrate

__all__ = ["main"]

log = logging.getLogger("supervisor")
STOP_TIMEOUT_S = 10.0
CREDENTIALS_FILE = "first-run-credentials.txt"


def _children(settings: Settings) -> dict[str, list[str]]:
    py = sys.executable
    return {
        "api": [
            *(py, "-m", "monitoring_core", "api", "--port", str(settings.api_port)),
            *("--host", settings.bind_host),
        ],
        "worker": [py, "-m", "jobs.worker"],
        "ui": [
            py,
            "-m",
            "ui.serve",  # `streamlit run app.py`, told app.py declares its pages (ui/serve.py)
            "--server.port",
            str(settings.ui_port),
            "--server.headless",
            "true",
            "--server.address",  # loopback unless MONITORING_BIND_HOST says otherwise
            settings.bind_host,
            "--browser.gatherUsageStats",
            "false",
            *_oidc_secrets_args(settings),
        ],
    }


OIDC_SECRETS_FILE = "streamlit-secrets.toml"


def _oidc_secrets_args(settings: Settings) -> list[str]:
    """With MONITORING_OIDC_METADATA_URL, _CLIENT_ID and _CLIENT_SECRET set: Streamlit's
    `[auth]` block for its OIDC login (ui/auth_oidc.py) written to the data directory (mode
    600; the redirect URI is MONITORING_PUBLIC_URL + /oauth2callback, the identity cookie's
    secret is made once and kept there), and the UI's arguments to read it. Without them, none:
    the UI reads `.streamlit/secrets.toml` as usual (an `[auth]` block there works too)."""
    oidc = (settings.oidc_metadata_url, settings.oidc_client_id, settings.oidc_client_secret)
    if not all(oidc):
        return []
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    secret_path = settings.data_dir / "oidc-cookie-secret"
    if not secret_path.exists():
        with os.fdopen(os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(secrets.token_urlsafe(32))
    values = {
        "redirect_uri": f"{settings.public_url}/oauth2callback",
        "cookie_secret": secret_path.read_text().strip(),
        "server_metadata_url": settings.oidc_metadata_url,
        "client_id": settings.oidc_client_id,
        "client_secret": settings.oidc_client_secret,
    }
    text = "[auth]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
    path = settings.data_dir / OIDC_SECRETS_FILE
    staged = path.with_suffix(".tmp")
    staged.unlink(missing_ok=True)
    with os.fdopen(os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        handle.write(text)
    staged.replace(path)
    return ["--secrets.files", str(path)]


def first_run_credentials(engine: Engine, settings: Settings) -> str | None:
    """Without an admin (the demo's on-call people cannot sign in): the first admin, whom the
    default route pages while no route exists, an ingest key (writes only: for apps, DSNs and
    browsers) and a read key (for dashboards and scripts); their text, saved mode 600."""
    from monitoring_core.accounts import create_api_key, create_user
    from monitoring_core.enums import ApiScope, Role
    from monitoring_core.oncall.store import ensure_default_route
    from monitoring_core.schema import users

    with engine.begin() as conn:
        admins = select(func.count()).select_from(users).where(users.c.role == Role.ADMIN.value)
        if conn.execute(admins).scalar_one() > 0:
            return None
        password = secrets.token_urlsafe(12)
        admin = create_user(conn, username="admin", password=password, role=Role.ADMIN)
        ensure_default_route(conn, user_id=admin.id)
        key = create_api_key(conn, name="first ingest key", scope=ApiScope.INGEST)
        read_key = create_api_key(conn, name="first read key", scope=ApiScope.READ)
    text = (
        f"UI login:   admin / {password}\n"
        f"Ingest key: {key}\n"
        f"Read key:   {read_key}\n"
        "(Only hashes are stored: keep these; add more with `python -m monitoring_core user add`"
        " and `apikey add`.)\n"
    )
    path = settings.data_dir / CREDENTIALS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    # Created with mode 600, never readable by others even for a moment.
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        handle.write(text)
    return text


def adopt_self_urls(conn: Connection, superuser_url: str, now: datetime) -> int:
    """Checks and collectors naming the embedded superuser's URL now say `self`; how many.

    Before the database roles, the demo (and `db-url`) gave out that URL; it is refused now,
    and `self` (the reader role) is what it meant: this database.
    """
    from monitoring_core.audit import record_audit, system_actor
    from monitoring_core.schema import health_checks, sql_collectors

    checks, collectors = health_checks.c, sql_collectors.c
    to_self = checks.check_config.op("||")(literal({"url": "self"}, JSONB))
    statements = {
        "health_check.update": update(health_checks)
        .where(checks.check_type == "database", checks.check_config["url"].astext == superuser_url)
        .values(check_config=to_self)
        .returning(checks.id),
        "collector.update": update(sql_collectors)
        .where(collectors.url == superuser_url)
        .values(url="self")
        .returning(collectors.id),
    }
    adopted = 0
    for action, statement in statements.items():
        for target in conn.execute(statement).scalars().all():
            details = {"url": "self", "reason": "the superuser's URL is refused"}
            actor = system_actor("supervisor")
            record_audit(
                conn, actor=actor, action=action, target=str(target), details=details, now=now
            )
            adopted += 1
    return adopted


def prepare(settings: Settings) -> tuple[str, str | None]:
    """Start/attach the database, migrate, load demo data if asked; (app URL, reader URL).

    With the embedded cluster, `database_url` first creates (or repairs) the database roles,
    so migrations, demo data and every child run as `monitoring_app`, never as a superuser.
    """
    url = database_url(settings)
    engine = make_engine(url)
    try:
        now = datetime.now(UTC)
        migrate(engine, now=now)
        if not settings.database_url:
            with engine.begin() as conn:
                if adopted := adopt_self_urls(conn, embedded_url(settings.data_dir), now):
                    log.info("%d checks/collectors moved from the superuser URL to 'self'", adopted)
        if settings.demo:
            from monitoring_core.demo import load_demo_data

            log.info("%s", load_demo_data(engine, days=30, now=now, only_if_empty=True))
            with engine.begin() as conn:
                # The demo's `self` collector reads business_events; demo data loaded before
                # the reader role existed never granted it.
                grant_reader_select(conn, ["business_events"])
        credentials = first_run_credentials(engine, settings)
    finally:
        engine.dispose()
    if credentials:
        print(
            "\n" + "=" * 72 + "\nFirst run — saved to " + str(settings.data_dir / CREDENTIALS_FILE)
        )
        print(credentials + "=" * 72)
    return url, reader_url(settings)


def _stop_all(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for name, proc in procs.items():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0fs; killing it", name, STOP_TIMEOUT_S)
            proc.kill()
            proc.wait()


def run(settings: Settings) -> int:
    url, reader = prepare(settings)
    # The children connect through DATABASE_URL (and run `self` queries through
    # DATABASE_READER_URL); this process owns the embedded server and stops it when it
    # exits, after the children are gone.
    env = {**os.environ, "DATABASE_URL": url}
    if reader:
        env["DATABASE_READER_URL"] = reader
    scoped = scoped_url(settings)  # the UI's reads for users limited to organisations
    if scoped:
        env["DATABASE_SCOPED_URL"] = scoped
    procs = {
        name: subprocess.Popen(cmd, env=env, cwd=Path(__file__).resolve().parent.parent)
        for name, cmd in _children(settings).items()
    }
    print(
        f"\n  UI:      http://localhost:{settings.ui_port}\n"
        f"  API:     http://localhost:{settings.api_port}  (docs at /docs: the read key as"
        " password)\n"
        "  Worker:  running (python -m jobs.worker)\n  Ctrl-C stops all three.\n",
        flush=True,
    )
    stopping = False

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    failed: list[str] = []
    while not stopping and not failed:
        failed = [name for name, p in procs.items() if p.poll() is not None]
        time.sleep(0.2)
    for name in failed:
        log.error("%s exited with code %s; stopping the others", name, procs[name].returncode)
    _stop_all(procs)
    return 1 if failed else 0


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return run(load_settings())


if __name__ == "__main__":
    sys.exit(main())
