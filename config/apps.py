from __future__ import annotations

from django.contrib.admin.apps import AdminConfig


class DashboardAdminConfig(AdminConfig):
    """The admin app, with the dashboard's role-aware site (config/admin_site.py)."""

    default_site = "config.admin_site.DashboardAdminSite"
