from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
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


class SafeChangeList(ChangeList):
    """A change list that answers impossible date filters as bad input, not as a server error.

    `?created_at__year=10000` (or 0, -1, 2**63; a month 13; the 31st of December 9999 in the date
    hierarchy) passes the admin's own parsing, then raises ValueError or OverflowError when the date
    bounds are computed: in get_filters for the date hierarchy, and only when the query runs (in
    get_results) for any other date lookup. IncorrectLookupParameters is the admin's own way out:
    it redirects to the list with ?e=1, which shows "incorrect lookup parameters".
    """

    def get_filters(self, request: HttpRequest) -> Any:
        try:
            return super().get_filters(request)
        except (ValueError, OverflowError) as error:
            raise IncorrectLookupParameters(error) from error

    def get_results(self, request: HttpRequest) -> None:
        try:
            super().get_results(request)
        except (ValueError, OverflowError) as error:
            raise IncorrectLookupParameters(error) from error


class SafeChangeListMixin:
    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return SafeChangeList


class DashboardAdminSite(admin.AdminSite):
    site_header = "HealthImaging Import Dashboard: administration"
    site_title = "HealthImaging Import Dashboard"
    index_title = "Datastores, users and roles"
    site_url = "/"
    login_form = RoleAwareAdminAuthenticationForm

    def has_permission(self, request: HttpRequest) -> bool:
        return can_administer(request.user)

    def register(
        self, model_or_iterable: Any, admin_class: Any = None, **options: Any
    ) -> None:
        """Every model admin, ours and Django's (users, groups), gets the safe change list.

        Done here, once, so that a model admin added later cannot bring the 500 back.
        """
        base = admin_class or admin.ModelAdmin
        if not issubclass(base, SafeChangeListMixin):
            base = type(
                base.__name__,
                (SafeChangeListMixin, base),
                {"__module__": base.__module__},
            )
        super().register(model_or_iterable, base, **options)
