"""One format for who acted: the helpers, and migration 0007 rewriting rows of the old ones."""

from __future__ import annotations

import importlib.util
from datetime import datetime

import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Connection, Engine, insert, select

from monitoring_core.audit import (
    actor_name,
    key_actor,
    link_actor,
    record_audit,
    system_actor,
    user_actor,
)
from monitoring_core.migrate import MIGRATIONS
from monitoring_core.schema import audit_log


@pytest.mark.parametrize(
    ("actor", "expected"),
    [
        (user_actor("ann"), "user:ann"),
        (key_actor("checkout-service"), "apikey:checkout-service"),
        (system_actor("escalation"), "system:escalation"),
    ],
)
def test_it_names_who_acted_as_kind_and_name(actor: str, expected: str) -> None:
    assert actor == expected


@pytest.mark.parametrize(
    ("actor", "words"),
    [
        (user_actor("ann"), "ann"),
        (key_actor("checkout-service"), "checkout-service (API key)"),
        (system_actor("escalation"), "escalation (system)"),
        (link_actor("Ops Slack"), "Ops Slack (acknowledge link)"),
        ("someone", "someone"),  # text of no kind stays as it is
    ],
)
def test_it_names_who_acted_in_words_for_messages(actor: str, words: str) -> None:
    assert actor_name(actor) == words


def test_it_refuses_an_actor_without_a_name() -> None:
    with pytest.raises(ValueError, match="user actor needs a name"):
        user_actor("")


def _upgrade_0007(conn: Connection) -> None:
    """Run revision 0007's upgrade on `conn` again (later revisions are not replayed)."""
    path = MIGRATIONS / "versions" / "0007_one_actor_format.py"
    spec = importlib.util.spec_from_file_location("revision_0007", path)
    assert spec is not None and spec.loader is not None
    revision = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(revision)
    with Operations.context(MigrationContext.configure(conn)):
        revision.upgrade()


def test_it_rewrites_old_actors_once(engine: Engine, now: datetime) -> None:
    old_to_new = {
        "ann": "user:ann",
        "api-key:ops": "apikey:ops",
        "escalation": "system:escalation",
        "auto-recovery": "system:auto-recovery",
        "system": "system:notify",
        "user:ben": "user:ben",
        "apikey:deploy": "apikey:deploy",
        "system:alerting": "system:alerting",
    }
    with engine.begin() as conn:
        conn.execute(
            insert(audit_log), [{"time": now, "actor": a, "action": "x"} for a in old_to_new]
        )
        record_audit(conn, actor=user_actor("cy"), action="y", now=now)
        _upgrade_0007(conn)
        _upgrade_0007(conn)  # a second run changes nothing
    with engine.connect() as conn:
        actors = conn.execute(select(audit_log.c.actor).order_by(audit_log.c.id)).scalars().all()
    assert actors == [*old_to_new.values(), "user:cy"]
