"""The audit trail page and its export."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET

from imports.forms import AuditFilterForm
from imports.models import AuditEvent
from imports.views.common import (
    HtmxHttpRequest,
    csv_response,
    filters_query,
    permission_required,
    render_page,
)

AUDIT_EXPORT_FIELDS = [
    "created_at",
    "actor_username",
    "action",
    "target_type",
    "target_id",
    "summary",
]


@require_GET
@permission_required("imports.view_auditevent")
def audit_list(request: HtmxHttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET)
    events = form.filter(AuditEvent.objects.all())
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    return render_page(
        request,
        "imports/audit_list.html",
        "audit",
        {"form": form, "page": page, "query": filters_query(request)},
    )


@require_GET
@permission_required("imports.view_auditevent")
def audit_export(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """The filtered audit trail as CSV; an invalid filter is refused with its reason, not exported as all."""
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        reasons = "; ".join(
            f"{form[field].label if field in form.fields else 'Filter'}: {' '.join(str(e) for e in errors)}"
            for field, errors in form.errors.items()
        )
        return HttpResponse(
            f"Nothing exported, a filter is not valid. {reasons}\n",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    events = form.filter(AuditEvent.objects.all()).values_list(*AUDIT_EXPORT_FIELDS)
    rows = (
        [created_at.isoformat(), *rest]
        for created_at, *rest in events.iterator(chunk_size=2000)
    )
    return csv_response("audit-trail.csv", AUDIT_EXPORT_FIELDS, rows)
