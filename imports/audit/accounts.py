"""What an administrator changed in an account or a role, before and after, for the audit trail.

Like a datastore's settings (imports/datastores.py), the fields that grant access are compared as they
were in the database before the admin saved and as they are after (groups and permissions included,
which the admin saves after the row): a user's flags, groups and permissions, a group's name and
permissions. Never a password.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission, User
from django.db.models import Model, QuerySet

USER_FLAGS = ("is_active", "is_staff", "is_superuser")


def _permission_names(permissions: QuerySet[Permission]) -> list[str]:
    return sorted(
        f"{app}.{codename}"
        for app, codename in permissions.values_list(
            "content_type__app_label", "codename"
        )
    )


def account_snapshot(obj: Model) -> dict[str, Any]:
    """The access-granting fields of a user or a group as stored now ({} for anything else)."""
    if isinstance(obj, User):
        return {
            "username": obj.username,
            **{flag: getattr(obj, flag) for flag in USER_FLAGS},
            "groups": sorted(obj.groups.values_list("name", flat=True)),
            "user_permissions": _permission_names(obj.user_permissions.all()),
        }
    if isinstance(obj, Group):
        return {
            "name": obj.name,
            "permissions": _permission_names(obj.permissions.all()),
        }
    return {}


def account_changes(
    before: dict[str, Any], after: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Each field whose value differs, {"before": …, "after": …}."""
    return {
        name: {"before": before.get(name), "after": value}
        for name, value in after.items()
        if before.get(name) != value
    }


def changes_text(changes: dict[str, dict[str, Any]]) -> str:
    """One line for the summary: "is_superuser False → True; groups Viewer → Operator"."""

    def shown(value: Any) -> str:
        if isinstance(value, list):
            return ", ".join(value) or "none"
        return str(value)

    return "; ".join(
        f"{name} {shown(change['before'])} → {shown(change['after'])}"
        for name, change in changes.items()
    )
