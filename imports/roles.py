"""The three roles and what each may do, and the Approver grant.

Groups are created by a data migration (imports/migrations/0002_roles.py). A later migration that
adds a model or a permission calls `sync_role_groups` again so the groups keep up.
"""

from __future__ import annotations

from typing import Any

VIEWER = "Viewer"
OPERATOR = "Operator"
ADMINISTRATOR = "Administrator"
# Not a rank of its own but a grant on top of one: an administrator adds this group to a Viewer or an Operator
# who may approve drafts that change patient data (four eyes). Administrators hold the permission too, as they
# hold every permission of the app; the rule that the approver is not the author of the draft's last change
# (imports.drafts.approval) is what keeps four eyes for them.
APPROVER = "Approver"
APPROVE_PERMISSION = "approve_patient_changes"
ROLES = (VIEWER, OPERATOR, ADMINISTRATOR, APPROVER)

# Operators browse, scan, compose and submit; Viewers read everything; Administrators also manage
# datastores and users in the admin site.
OPERATOR_EXTRA = ("browse_datastore", "import_to_datastore", "reveal_phi")
# Approving is a separate grant (APPROVER), never part of the Operator role.
ADMIN_AUTH_MODELS = ("user", "group")
# The audit trail is append-only for everyone, administrators included.
NEVER_GRANTED = ("add_auditevent", "change_auditevent", "delete_auditevent")


def role_permission_codenames(
    role: str, available: set[tuple[str, str]]
) -> set[tuple[str, str]]:
    """The (app_label, codename) pairs a role holds, from the permissions that exist."""
    viewer = {
        (app, code)
        for app, code in available
        if app == "imports" and code.startswith("view_")
    }
    if role == VIEWER:
        return viewer
    if role == APPROVER:
        return {("imports", APPROVE_PERMISSION)} & available
    operator = viewer | {
        ("imports", code) for code in OPERATOR_EXTRA if ("imports", code) in available
    }
    if role == OPERATOR:
        return operator
    if role == ADMINISTRATOR:
        auth = {
            (app, code)
            for app, code in available
            if app == "auth" and code.rsplit("_", 1)[-1] in ADMIN_AUTH_MODELS
        }
        imports = {
            (app, code)
            for app, code in available
            if app == "imports" and code not in NEVER_GRANTED
        }
        return operator | imports | auth
    raise ValueError(f"Unknown role {role!r}; expected one of {', '.join(ROLES)}.")


def sync_role_groups(apps: Any, schema_editor: Any = None) -> None:
    """Create the role groups and give each exactly its permissions (usable as a RunPython)."""
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after migrations finish; create them now so the
    # groups can be filled in the same run.
    for app_config in apps.get_app_configs():
        # create_permissions skips app configs without a models module, which is how the
        # migration state's configs look; the real registry's keep theirs.
        original = getattr(app_config, "models_module", None)
        app_config.models_module = original or True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = original

    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    permissions = {
        (p.content_type.app_label, p.codename): p
        for p in permission_model.objects.filter(
            content_type__app_label__in=("imports", "auth")
        ).select_related("content_type")
    }
    for role in ROLES:
        group, _ = group_model.objects.get_or_create(name=role)
        wanted = role_permission_codenames(role, set(permissions))
        group.permissions.set([permissions[key] for key in sorted(wanted)])
