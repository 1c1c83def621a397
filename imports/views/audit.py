"""The audit trail page and its exports (CSV and JSON Lines, streamed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from imports.audit import records as audit
from imports.audit.chain import RECORDED_FIELDS, canonical_time
from imports.forms import AuditFilterForm
from imports.models import AuditEvent
from imports.views.common import (
    HtmxHttpRequest,
    csv_response,
    filters_query,
    page_number,
    permission_required,
)

AUDIT_EXPORT_FIELDS = list(RECORDED_FIELDS)
# Rows fetched per round trip (a server-side cursor on PostgreSQL): memory stays flat however
# many events are exported.
EXPORT_CHUNK = 2000


@require_GET
@permission_required("imports.view_auditevent")
def audit_list(request: HtmxHttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET)
    events = form.filter(AuditEvent.objects.all())
    page = Paginator(events, 50).get_page(page_number(request))
    # A history restore (Back to a page htmx no longer caches) replaces the whole body: the whole page.
    fragment = bool(request.htmx) and not request.htmx.history_restore_request
    response = render(
        request,
        "imports/audit_list.html#audit-table"
        if fragment
        else "imports/audit_list.html",
        {
            "form": form,
            "page": page,
            "query": filters_query(request),
            "oob": fragment,
        },
    )
    patch_vary_headers(response, ("HX-Request", "HX-History-Restore-Request"))
    return response


@require_GET
@permission_required("imports.view_auditevent")
def audit_export(request: HttpRequest, export_format: str) -> HttpResponseBase:
    """The filtered audit trail as CSV or JSON Lines; the download itself is audited."""
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        problems = "; ".join(
            f"{form[name].label if name in form.fields else 'filters'}: {' '.join(str(error) for error in errors)}"
            for name, errors in form.errors.items()
        )
        return HttpResponse(
            f"Nothing was exported: {problems}",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    audit.export_record(
        actor=request.user,
        what="the audit trail",
        export_format=export_format,
        filters=form.cleaned_data,
    )
    events = (
        form.filter(AuditEvent.objects.all())
        .values(*AUDIT_EXPORT_FIELDS)
        .iterator(chunk_size=EXPORT_CHUNK)
    )
    if export_format == "jsonl":
        response = StreamingHttpResponse(
            _json_lines(events), content_type="application/x-ndjson; charset=utf-8"
        )
        response["Content-Disposition"] = 'attachment; filename="audit-trail.jsonl"'
        return response
    return csv_response(
        "audit-trail.csv", AUDIT_EXPORT_FIELDS, (_csv_row(event) for event in events)
    )


# Times in UTC to the microsecond, as hashed, so the chain can be recomputed from an export.


def _csv_row(event: dict[str, Any]) -> list[Any]:
    row = dict(event)
    row["created_at"] = canonical_time(event["created_at"])
    row["details"] = json.dumps(event["details"], sort_keys=True, ensure_ascii=False)
    return [row[name] for name in AUDIT_EXPORT_FIELDS]


def _json_lines(events: Iterator[dict[str, Any]]) -> Iterator[str]:
    for event in events:
        line = {**event, "created_at": canonical_time(event["created_at"])}
        yield json.dumps(line, ensure_ascii=False) + "\n"
