from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.http import HttpRequest


def can_administer(user: object) -> bool:
    """Membership of the Administrator role (its "administer" permission) opens the admin site,
    so nobody has to remember to tick "staff status" as well."""
    return bool(
        getattr(user, "is_active", False)
        and (getattr(user, "is_staff", False) or user.has_perm("imports.administer"))  # type: ignore[attr-defined]
    )


class RoleAwareAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin's own login form, which otherwise accepts staff accounts only."""

    def confirm_login_allowed(self, user: User) -> None:
        AuthenticationForm.confirm_login_allowed(self, user)
        if not can_administer(user):
            raise ValidationError(
                "This account may not use the admin site: only the Administrator role may. "
                "Sign in to the dashboard instead.",
                code="invalid_login",
            )


class DashboardAdminSite(admin.AdminSite):
    site_header = "HealthImaging Import Dashboard: administration"
    site_title = "HealthImaging Import Dashboard"
    index_title = "Datastores, users and roles"
    site_url = "/"
    login_form = RoleAwareAdminAuthenticationForm

    def has_permission(self, request: HttpRequest) -> bool:
        return can_administer(request.user)
