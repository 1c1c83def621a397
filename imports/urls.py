from __future__ import annotations

from django.urls import path

from imports import views

app_name = "imports"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("browse/", views.browse, name="browse"),
    # /scans/
    path("scans/", views.scan_list, name="scan_list"),
    path("scans/start/", views.scan_start, name="scan_start"),
    path("scans/<int:pk>/", views.scan_detail, name="scan_detail"),
    path("scans/<int:pk>/progress/", views.scan_progress, name="scan_progress"),
    path("scans/<int:pk>/cancel/", views.scan_cancel, name="scan_cancel"),
    path("scans/<int:pk>/reveal/", views.scan_reveal, name="scan_reveal"),
    path("scans/<int:pk>/objects.csv", views.scan_export, name="scan_export"),
    # /audit/
    path("audit/", views.audit_list, name="audit_list"),
    path("audit/export.csv", views.audit_export, name="audit_export"),
]
