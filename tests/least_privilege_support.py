"""The database roles for tests: `ensure_roles` run against the session database.

The session database was created and migrated by the superuser, like a cluster from before
the roles existed; `ensure_roles` hands it to `monitoring_app`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from sqlalchemy.engine import make_url

from monitoring_core.db import ensure_roles

ROOT = Path(__file__).resolve().parent.parent
# One passwords file per test cluster, so parallel sessions agree on the roles' passwords.
ROLES_FILE = ROOT / ".data" / "test" / "db-roles.json"


def hand_over(database_url: str) -> tuple[str, str]:
    """`ensure_roles` for the database at database_url (a superuser URL): (app, reader URL).

    Run it again after the superuser created relations (partitions) to hand those over too.
    """
    database = make_url(database_url).database
    assert database is not None
    return ensure_roles(database_url, database, secrets_file=ROLES_FILE)


@cache
def role_urls(database_url: str) -> tuple[str, str]:
    """(app URL, reader URL), the roles made once per session (enough to connect as them)."""
    return hand_over(database_url)
