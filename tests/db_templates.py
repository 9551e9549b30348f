"""Template databases the test sessions copy instead of rebuilding: `CREATE DATABASE … TEMPLATE`.

Every pytest session (two under `make test`, eight more under `tests/clock_proof.py`) used to
migrate its own database and load the page tests' demo data again, then restore a copy of it
row by row for each page-test module: about 40 s of each session on this machine. Postgres
copies a whole database file by file in a few seconds instead, so the first session builds:

- `base`: migrated to head, with partitions around the real clock's today;
- `demo`: `base` plus DEMO_DAYS of demo data up to the demo's fixed instant;

and every session, and every page-test module, copies one of them. A template's name carries
a digest of the code that builds it (`monitoring_core/`, `tests/ui_harness.py`) and the UTC
date, so an edit or a new day builds a new one; builders take turns under a lock file, and a
template is renamed into place only once it is whole, so nobody copies a half-built one.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from monitoring_core.db import embedded_url, make_engine
from monitoring_core.migrate import migrate

__all__ = [
    "admin_url",
    "copy_base",
    "copy_database",
    "copy_template",
    "drop_database",
    "ensure_template",
    "url_for",
]

ROOT = Path(__file__).resolve().parent.parent
STALE_AFTER_S = 600  # templates of another digest built this long ago are dropped (copies retry)


@functools.cache
def server_url() -> str:
    """The test server: TEST_DATABASE_URL, or the embedded cluster under .data/test."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url.replace("postgresql://", "postgresql+psycopg://", 1)
    url = embedded_url(ROOT / ".data" / "test")
    _without_durability(make_url(url).set(drivername="postgresql").render_as_string(False))
    return url


# The embedded test cluster holds nothing worth a crash-safe disk: every DROP DATABASE forces a
# checkpoint, and with fsync on, one took 3-35 s while other sessions had dirty pages.
_NOT_DURABLE = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def _without_durability(admin: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        show = sql.SQL("SHOW {}")
        settings = {
            k: conn.execute(show.format(sql.Identifier(k))).fetchone() for k in _NOT_DURABLE
        }
        if all(row is not None and row[0] == _NOT_DURABLE[k] for k, row in settings.items()):
            return
        for key, value in _NOT_DURABLE.items():
            alter = sql.SQL("ALTER SYSTEM SET {} = {}")
            conn.execute(alter.format(sql.Identifier(key), sql.Literal(value)))
        conn.execute("SELECT pg_reload_conf()")


def admin_url() -> str:
    """The test server's URL for psycopg, on its default database (to create databases)."""
    return make_url(server_url()).set(drivername="postgresql").render_as_string(hide_password=False)


def url_for(name: str) -> str:
    """The test server's SQLAlchemy URL for the database `name`."""
    return make_url(server_url()).set(database=name).render_as_string(hide_password=False)


def _build_base(name: str) -> None:
    engine = make_engine(url_for(name))
    migrate(engine, now=datetime.now(UTC))
    engine.dispose()


def copy_base(name: str) -> None:
    """`name` afresh: migrated to head, with partitions around the real clock's today."""
    copy_template("base", _build_base, name)


def copy_template(kind: str, build: Callable[[str], None], name: str) -> None:
    """`name` afresh as a copy of today's `kind` template (built first if missing).

    A template dropped as stale between finding and copying it (another digest's session
    cleaned up) is built again.
    """
    for attempt in range(3):
        try:
            copy_database(admin_url(), ensure_template(admin_url(), kind, build), name)
            return
        except psycopg.errors.InvalidCatalogName:
            if attempt == 2:
                raise


@functools.cache
def _digest() -> str:
    """Once per process (the code it imported): the code a template is built from, and today's date (its partitions stand around it)."""
    h = hashlib.sha256(datetime.now(UTC).date().isoformat().encode())
    for path in sorted([*(ROOT / "monitoring_core").rglob("*.py"), ROOT / "tests/ui_harness.py"]):
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _existing(conn: psycopg.Connection, prefix: str) -> list[str]:
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY datname",
        (prefix.replace("_", r"\_") + "%",),
    ).fetchall()
    return [str(r[0]) for r in rows]


def drop_database(admin_url: str, name: str, *, force: bool = True) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} {}").format(
                sql.Identifier(name), sql.SQL("WITH (FORCE)" if force else "")
            )
        )


def copy_database(admin_url: str, template: str, name: str) -> None:
    """`name` afresh as a copy of `template` (dropped first if it exists)."""
    drop_database(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )


def ensure_template(admin_url: str, kind: str, build: Callable[[str], None]) -> str:
    """The name of a whole `kind` template for today's code, built by `build(name)` if missing.

    `build` gets the name of an empty database to fill; it must close its connections.
    """
    prefix = f"tmpl_{kind}_{_digest()}_"
    lock = Path(tempfile.gettempdir()) / (
        f"monitoring-test-{hashlib.sha256(admin_url.encode()).hexdigest()[:12]}-{kind}.lock"
    )
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # one builder at a time; the others then find it
        with psycopg.connect(admin_url, autocommit=True) as conn:
            found = [n for n in _existing(conn, prefix) if not n.endswith("_building")]
        if found:
            return found[-1]
        name = f"{prefix}{int(time.time())}"
        building = f"{name}_building"
        drop_database(admin_url, building)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(building)))
        build(building)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(building), sql.Identifier(name)
                )
            )
            _drop_stale(conn, kind, keep=prefix)
        return name


def _drop_stale(conn: psycopg.Connection, kind: str, keep: str) -> None:
    """Templates of other digests, built long enough ago that no session still copies them."""
    for old in _existing(conn, f"tmpl_{kind}_"):
        if old.startswith(keep):
            continue
        built = old.removesuffix("_building").rsplit("_", 1)[-1]
        if built.isdigit() and time.time() - int(built) > STALE_AFTER_S:
            try:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(old)))
            except psycopg.errors.ObjectInUse:
                pass  # someone is copying it right now; a later build drops it
