"""The audit trail page and its export."""

from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from imports.forms import AuditFilterForm
from imports.models import AuditEvent
from imports.views.common import HtmxHttpRequest, csv_response, filters_query

AUDIT_EXPORT_FIELDS = [
    "created_at",
    "actor_username",
    "action",
    "target_type",
    "target_id",
    "summary",
]


@require_GET
@permission_required("imports.view_auditevent", raise_exception=True)
def audit_list(request: HtmxHttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET)
    events = form.filter(AuditEvent.objects.all())
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    template = (
        "imports/audit_list.html#audit-table"
        if request.htmx
        else "imports/audit_list.html"
    )
    return render(
        request,
        template,
        {"form": form, "page": page, "query": filters_query(request)},
    )


@require_GET
@permission_required("imports.view_auditevent", raise_exception=True)
def audit_export(request: HttpRequest) -> StreamingHttpResponse:
    """The filtered audit trail as CSV."""
    events = (
        AuditFilterForm(request.GET)
        .filter(AuditEvent.objects.all())
        .values_list(*AUDIT_EXPORT_FIELDS)
    )
    rows = (
        [created_at.isoformat(), *rest]
        for created_at, *rest in events.iterator(chunk_size=2000)
    )
    return csv_response("audit-trail.csv", AUDIT_EXPORT_FIELDS, rows)
