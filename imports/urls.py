from __future__ import annotations

from django.urls import path

from imports.views import audit, browse, dashboard, scans

app_name = "imports"

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("browse/", browse.browse, name="browse"),
    # /scans/
    path("scans/", scans.scan_list, name="scan_list"),
    path("scans/start/", scans.scan_start, name="scan_start"),
    path("scans/<int:pk>/", scans.scan_detail, name="scan_detail"),
    path("scans/<int:pk>/progress/", scans.scan_progress, name="scan_progress"),
    path("scans/<int:pk>/cancel/", scans.scan_cancel, name="scan_cancel"),
    path("scans/<int:pk>/read-rest/", scans.scan_read_rest, name="scan_read_rest"),
    path("scans/<int:pk>/reveal/", scans.scan_reveal, name="scan_reveal"),
    path("scans/<int:pk>/objects.csv", scans.scan_export, name="scan_export"),
    # /audit/
    path("audit/", audit.audit_list, name="audit_list"),
    path("audit/export.csv", audit.audit_export, name="audit_export"),
]
