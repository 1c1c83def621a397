"""The home page."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from imports.models import AuditEvent, Datastore, Scan
from imports.views.common import permission_required


@require_GET
@permission_required("imports.view_datastore")
def dashboard(request: HttpRequest) -> HttpResponse:
    datastores = Datastore.objects.filter(enabled=True)
    recent_events = (
        AuditEvent.objects.all()[:10]
        if request.user.has_perm("imports.view_auditevent")
        else []
    )
    recent_scans = (
        Scan.objects.select_related("datastore")[:5]
        if request.user.has_perm("imports.view_scan")
        else []
    )
    return render(
        request,
        "imports/dashboard.html",
        {
            "datastores": datastores,
            "recent_events": recent_events,
            "recent_scans": recent_scans,
        },
    )
