"""Roles and the one permission check used by the API, the domain services and the UI.

The order is `Role`'s declaration order (viewer < responder < admin): a role may do what
every role below it may do.
"""

from __future__ import annotations

from monitoring_core.enums import Role

__all__ = ["PermissionDenied", "has_role", "require_role"]


class PermissionDenied(PermissionError):
    """The user's role does not allow this action."""


def has_role(role: str | Role, minimum: Role) -> bool:
    """True when `role` is `minimum` or above; False for an unknown role."""
    try:
        return Role(role).rank >= minimum.rank
    except ValueError:
        return False


def require_role(role: str | Role, minimum: Role) -> None:
    """PermissionDenied unless `role` is at least `minimum`."""
    if role not in set(Role):
        raise PermissionDenied(f"unknown role {role!r}")
    if not has_role(role, minimum):
        raise PermissionDenied(f"{minimum.value} role required")
