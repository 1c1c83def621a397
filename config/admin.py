from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest


class DashboardAdminSite(admin.AdminSite):
    site_header = "HealthImaging Import Dashboard: administration"
    site_title = "HealthImaging Import Dashboard"
    index_title = "Datastores, users and roles"
    site_url = "/"

    def has_permission(self, request: HttpRequest) -> bool:
        # Membership of the Administrator role (its "administer" permission) opens the admin site,
        # so nobody has to remember to tick "staff status" as well.
        user = request.user
        return bool(
            user.is_active and (user.is_staff or user.has_perm("imports.administer"))
        )


class DashboardAdminConfig(AdminConfig):
    default_site = "config.admin.DashboardAdminSite"
