"""The home page."""

from __future__ import annotations

from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from imports.models import AuditEvent, Datastore, ImportJob, Scan
from imports.operations.health import worker_silence
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
    context: dict[str, object] = {
        "datastores": datastores,
        "recent_events": recent_events,
        "recent_scans": recent_scans,
        "worker_silence": worker_silence(),
    }
    if request.user.has_perm("imports.view_importjob"):
        context.update(
            active_jobs=list(
                ImportJob.objects.exclude(status__in=ImportJob.ENDED)
                .select_related("datastore")
                .order_by("created_at")[:50]
            ),
            recent_jobs=ImportJob.objects.filter(status__in=ImportJob.ENDED)
            .select_related("datastore")
            .order_by("-ended_at", "-pk")[:10],
            job_counts=ImportJob.objects.aggregate(
                active=Count("pk", filter=~Q(status__in=ImportJob.ENDED)),
                completed=Count("pk", filter=Q(status=ImportJob.Status.COMPLETED)),
                failed=Count(
                    "pk",
                    filter=Q(
                        status__in=(
                            ImportJob.Status.FAILED,
                            ImportJob.Status.SUBMIT_FAILED,
                        )
                    ),
                ),
            ),
            show_jobs=True,
        )
    return render(request, "imports/dashboard.html", context)
