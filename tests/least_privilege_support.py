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


@cache
def role_urls(database_url: str) -> tuple[str, str]:
    """(app URL, reader URL) of the database at database_url (a superuser URL)."""
    database = make_url(database_url).database
    assert database is not None
    return ensure_roles(database_url, database, secrets_file=ROLES_FILE)
