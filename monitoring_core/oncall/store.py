"""SQL for people's contact methods, schedules with their layers, overrides and default routes.

Takes a connection, never commits. A contact method is a notification channel owned by a user
(`notification_channels.user_id`), so delivery, masking and the delivery log treat it as any
channel; its name `USERNAME · LABEL` is what acknowledge links record as the recipient.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from monitoring_core.notify.channels import channel_to_api, create_channel
from monitoring_core.oncall.rules import Layer, Override
from monitoring_core.oncall.validate import OncallInvalid, OncallNotFound
from monitoring_core.schema import (
    escalation_policies,
    notification_channels,
    notification_outbox,
    notification_routes,
    oncall_layers,
    oncall_overrides,
    oncall_schedules,
    users,
)

__all__ = [
    "OncallInUse",
    "add_contact",
    "add_override",
    "check_users",
    "delete_override",
    "delete_route",
    "delete_schedule",
    "ensure_default_route",
    "get_override",
    "get_schedule",
    "list_people",
    "list_routes",
    "list_schedules",
    "load_rotas",
    "remove_contact",
    "save_route",
    "save_schedule",
    "set_time_zone",
    "user_name",
]

ch = notification_channels.c


class OncallInUse(ValueError):
    """A schedule that escalation policies or routes still page."""


def user_name(conn: Connection, user_id: int) -> str:
    """The user's name (OncallNotFound without one)."""
    name = conn.execute(select(users.c.username).where(users.c.id == user_id)).scalar()
    if name is None:
        raise OncallNotFound(f"user {user_id}")
    return str(name)


def check_users(conn: Connection, ids: Iterable[int], field: str) -> None:
    """OncallInvalid unless every id is an active user."""
    wanted = set(ids)
    found = set(
        conn.execute(select(users.c.id).where(users.c.id.in_(wanted), users.c.is_active)).scalars()
    )
    if missing := wanted - found:
        raise OncallInvalid(field, f"no active user with id {sorted(missing)}")


def list_people(conn: Connection) -> list[dict[str, Any]]:
    """Every user with their time zone and contact methods (URLs masked)."""
    contacts: dict[int, list[dict[str, Any]]] = {}
    for row in conn.execute(select(notification_channels).where(ch.user_id.is_not(None))):
        contacts.setdefault(row.user_id, []).append(channel_to_api(row._mapping))
    people = conn.execute(
        select(
            users.c.id, users.c.username, users.c.role, users.c.is_active, users.c.time_zone
        ).order_by(users.c.id)
    ).all()
    return [{**dict(p._mapping), "contacts": contacts.get(p.id, [])} for p in people]


def set_time_zone(conn: Connection, *, user_id: int, time_zone: str | None) -> None:
    user_name(conn, user_id)
    conn.execute(update(users).where(users.c.id == user_id).values(time_zone=time_zone))


def add_contact(conn: Connection, *, user_id: int, label: str, url: str) -> dict[str, Any]:
    """A new contact method (ChannelInvalid when Apprise cannot use the URL)."""
    name = f"{user_name(conn, user_id)} · {label}"
    saved = create_channel(conn, body={"name": name, "url": url, "tags": ["contact"]})
    conn.execute(update(notification_channels).where(ch.id == saved["id"]).values(user_id=user_id))
    return saved


def remove_contact(conn: Connection, *, user_id: int, channel_id: int) -> str:
    """Delete the contact method, or disable it when deliveries refer to it; what was done."""
    owned = (ch.id == channel_id) & (ch.user_id == user_id)
    if conn.execute(select(ch.id).where(owned)).first() is None:
        raise OncallNotFound(f"contact method {channel_id} of user {user_id}")
    sent = conn.execute(
        select(func.count())
        .select_from(notification_outbox)
        .where(notification_outbox.c.channel_id == channel_id)
    ).scalar_one()
    if sent:  # its delivery history stays readable
        conn.execute(update(notification_channels).where(owned).values(is_enabled=False))
        return "disabled"
    conn.execute(delete(notification_channels).where(owned))
    return "deleted"


def _layer(row: Mapping[str, Any]) -> Layer:
    return Layer(
        members=tuple(row["members"]),
        rotation=row["rotation"],
        handoff_time=row["handoff_time"],
        handoff_weekday=row["handoff_weekday"],
        starts_on=row["starts_on"],
        level=row["level"],
        active_days=frozenset(row["active_days"] or ()),
        name=row["name"],
        id=row["id"],
    )


def _layers_of(conn: Connection, schedule_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = {sid: [] for sid in schedule_ids}
    query = (
        select(oncall_layers)
        .where(oncall_layers.c.schedule_id.in_(schedule_ids))
        .order_by(oncall_layers.c.level.desc(), oncall_layers.c.id)
    )
    for row in conn.execute(query):
        found[row.schedule_id].append(dict(row._mapping))
    return found


def list_schedules(conn: Connection) -> list[dict[str, Any]]:
    """Every schedule with its layers (highest level first), by name."""
    rows = [
        dict(r._mapping)
        for r in conn.execute(select(oncall_schedules).order_by(oncall_schedules.c.name))
    ]
    layers = _layers_of(conn, [r["id"] for r in rows])
    return [{**r, "layers": layers[r["id"]]} for r in rows]


def get_schedule(conn: Connection, *, schedule_id: int) -> dict[str, Any]:
    row = conn.execute(select(oncall_schedules).where(oncall_schedules.c.id == schedule_id)).first()
    if row is None:
        raise OncallNotFound(f"schedule {schedule_id}")
    return {**dict(row._mapping), "layers": _layers_of(conn, [schedule_id])[schedule_id]}


def save_schedule(
    conn: Connection,
    *,
    schedule_id: int | None,
    values: dict[str, Any],
    layers: list[dict[str, Any]],
) -> dict[str, Any]:
    """Create a schedule or replace one's name, description and layers."""
    check_users(conn, {m for layer in layers for m in layer["members"]}, "layers.members")
    clash = select(oncall_schedules.c.id).where(oncall_schedules.c.name == values["name"])
    if schedule_id is not None:
        clash = clash.where(oncall_schedules.c.id != schedule_id)
    if conn.execute(clash).first() is not None:
        raise OncallInvalid("name", "a schedule with this name exists")
    if schedule_id is None:
        schedule_id = conn.execute(
            insert(oncall_schedules).values(**values).returning(oncall_schedules.c.id)
        ).scalar_one()
    else:
        get_schedule(conn, schedule_id=schedule_id)
        conn.execute(
            update(oncall_schedules).where(oncall_schedules.c.id == schedule_id).values(**values)
        )
        conn.execute(delete(oncall_layers).where(oncall_layers.c.schedule_id == schedule_id))
    conn.execute(insert(oncall_layers), [{**layer, "schedule_id": schedule_id} for layer in layers])
    return get_schedule(conn, schedule_id=schedule_id)


def _paged_by(conn: Connection, kind: str, target_id: int) -> list[str]:
    """Policies and routes that name this user or schedule as a target."""
    policies = conn.execute(
        select(escalation_policies.c.name).where(
            escalation_policies.c.steps.contains([{kind: [target_id]}])
        )
    ).scalars()
    routes = conn.execute(
        select(notification_routes.c.min_severity).where(
            notification_routes.c.targets.contains({kind: [target_id]})
        )
    ).scalars()
    return [f"escalation policy {p!r}" for p in policies] + [f"route {r!r}" for r in routes]


def delete_schedule(conn: Connection, *, schedule_id: int) -> dict[str, Any]:
    """Delete a schedule nothing pages (OncallInUse names what does)."""
    row = get_schedule(conn, schedule_id=schedule_id)
    if uses := _paged_by(conn, "schedules", schedule_id):
        raise OncallInUse(f"schedule {schedule_id} is still paged by {'; '.join(uses)}")
    conn.execute(delete(oncall_schedules).where(oncall_schedules.c.id == schedule_id))
    return row


def add_override(
    conn: Connection,
    *,
    schedule_id: int,
    values: dict[str, Any],
    created_by: str,
    now: datetime,
) -> dict[str, Any]:
    get_schedule(conn, schedule_id=schedule_id)
    check_users(conn, [values["user_id"]], "user_id")
    row = conn.execute(
        insert(oncall_overrides)
        .values(**values, schedule_id=schedule_id, created_by=created_by, created_at=now)
        .returning(*oncall_overrides.c)
    ).one()
    return dict(row._mapping)


def get_override(conn: Connection, *, override_id: int) -> dict[str, Any]:
    row = conn.execute(select(oncall_overrides).where(oncall_overrides.c.id == override_id)).first()
    if row is None:
        raise OncallNotFound(f"override {override_id}")
    return dict(row._mapping)


def delete_override(conn: Connection, *, override_id: int) -> dict[str, Any]:
    row = get_override(conn, override_id=override_id)
    conn.execute(delete(oncall_overrides).where(oncall_overrides.c.id == override_id))
    return row


def load_rotas(
    conn: Connection, schedule_ids: Iterable[int], start: datetime, end: datetime
) -> dict[int, tuple[list[Layer], list[Override]]]:
    """Each schedule's layers and the overrides overlapping [start, end), for `rules`."""
    ids = list(dict.fromkeys(schedule_ids))
    layers = _layers_of(conn, ids)
    rotas: dict[int, tuple[list[Layer], list[Override]]] = {
        sid: ([_layer(row) for row in layers[sid]], []) for sid in ids
    }
    o = oncall_overrides.c
    query = select(oncall_overrides).where(
        o.schedule_id.in_(ids), o.starts_at < end, o.ends_at > start
    )
    for row in conn.execute(query):
        rotas[row.schedule_id][1].append(
            Override(row.user_id, row.starts_at, row.ends_at, id=row.id, reason=row.reason)
        )
    return rotas


def overrides_of(conn: Connection, *, schedule_id: int, since: datetime) -> list[dict[str, Any]]:
    """A schedule's overrides that end after `since`, soonest first."""
    o = oncall_overrides.c
    query = (
        select(oncall_overrides, users.c.username)
        .join(users, users.c.id == o.user_id)
        .where(o.schedule_id == schedule_id, o.ends_at > since)
        .order_by(o.starts_at)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def list_routes(conn: Connection) -> list[dict[str, Any]]:
    """Default routes, most severe first."""
    rows = [dict(r._mapping) for r in conn.execute(select(notification_routes))]
    order = ["critical", "high", "medium", "low", "info"]
    return sorted(rows, key=lambda r: order.index(r["min_severity"]))


def save_route(
    conn: Connection, *, min_severity: str, targets: dict[str, list[int]]
) -> dict[str, Any]:
    """Set the route for alerts at or above `min_severity` (one per severity)."""
    check_users(conn, targets.get("users", []), "targets.users")
    wanted = set(targets.get("schedules", []))
    found = set(
        conn.execute(
            select(oncall_schedules.c.id).where(oncall_schedules.c.id.in_(wanted))
        ).scalars()
    )
    if missing := wanted - found:
        raise OncallInvalid("targets.schedules", f"no schedule with id {sorted(missing)}")
    wanted = set(targets.get("channels", []))
    found = set(conn.execute(select(ch.id).where(ch.id.in_(wanted))).scalars())
    if missing := wanted - found:
        raise OncallInvalid("targets.channels", f"no channel with id {sorted(missing)}")
    statement = pg_insert(notification_routes).values(min_severity=min_severity, targets=targets)
    row = conn.execute(
        statement.on_conflict_do_update(
            index_elements=[notification_routes.c.min_severity], set_={"targets": targets}
        ).returning(*notification_routes.c)
    ).one()
    return dict(row._mapping)


def delete_route(conn: Connection, *, min_severity: str) -> None:
    gone = conn.execute(
        delete(notification_routes)
        .where(notification_routes.c.min_severity == min_severity)
        .returning(notification_routes.c.id)
    ).first()
    if gone is None:
        raise OncallNotFound(f"route {min_severity}")


def ensure_default_route(conn: Connection, *, user_id: int) -> bool:
    """On an install without routes, one route for every severity to this user (the first
    admin), so a rule naming no channels still reaches someone; True when it was made."""
    if conn.execute(select(notification_routes.c.id).limit(1)).first() is not None:
        return False
    conn.execute(
        insert(notification_routes).values(
            min_severity="info", targets={"channels": [], "users": [user_id], "schedules": []}
        )
    )
    return True
