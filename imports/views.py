from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HTMX_STOP_POLLING
from django_htmx.middleware import HtmxDetails

from imports import aws, scans, services
from imports.forms import AuditFilterForm, BrowseForm, ScanFilterForm
from imports.models import (
    AuditEvent,
    Datastore,
    ObjectHeader,
    Scan,
    ScanObject,
    ScanStudy,
)

REVEALED_SESSION_KEY = "revealed_scans"
BROWSE_TOKENS_SESSION_KEY = "browse_tokens"


class HtmxHttpRequest(HttpRequest):
    """A request that went through django-htmx's middleware (django-stubs pattern)."""

    htmx: HtmxDetails


@require_GET
@permission_required("imports.view_datastore", raise_exception=True)
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


# --- Browse ---------------------------------------------------------------------------------


@require_GET
@permission_required("imports.browse_datastore", raise_exception=True)
def browse(request: HtmxHttpRequest) -> HttpResponse:
    """A file-manager view of one S3 folder, one page of at most 1,000 entries at a time."""
    datastores = Datastore.objects.filter(enabled=True)
    data = request.GET.copy()
    if not data.get("datastore") and not data.get("uri") and len(datastores) == 1:
        data["datastore"] = str(datastores[0].pk)
    form = BrowseForm(data or None)
    context: dict[str, Any] = {"form": form, "datastores": datastores}
    if form.is_valid():
        datastore: Datastore | None = form.cleaned_data["datastore"]
        region = datastore.region if datastore else _default_region()
        page_number, token = _page_token(request, form.cleaned_data["uri"])
        try:
            listing = services.s3_browse(
                region=region,
                bucket=form.cleaned_data["bucket"],
                prefix=form.cleaned_data["prefix"],
                token=token,
            )
        except aws.AwsError as error:
            context["listing_error"] = services.s3_problem(
                uri=form.cleaned_data["uri"], error=error, needs="s3:ListBucket"
            )
        else:
            _remember_token(
                request, form.cleaned_data["uri"], page_number + 1, listing.next_token
            )
            here = form.cleaned_data["uri"]
            # Show where we are in the URI field, so that it can be edited from there.
            form.data = {**data.dict(), "uri": here}
            context.update(
                listing=listing,
                page_number=page_number,
                breadcrumbs=[
                    (name, _browse_href(datastore, uri))
                    for name, uri in _breadcrumbs(listing.bucket, listing.prefix)
                ],
                folders=[
                    (name, _browse_href(datastore, f"s3://{listing.bucket}/{folder}"))
                    for folder, name in listing.folders
                ],
                previous_href=_browse_href(datastore, here, page_number - 1)
                if page_number > 1
                else None,
                next_href=_browse_href(datastore, here, page_number + 1)
                if listing.next_token
                else None,
                datastore=datastore,
                active_scan=Scan.objects.filter(
                    bucket=listing.bucket, prefix=listing.prefix, status__in=Scan.ACTIVE
                ).first(),
            )
    template = "imports/browse.html#listing" if request.htmx else "imports/browse.html"
    return render(request, template, context)


def _browse_href(datastore: Datastore | None, uri: str, page: int = 1) -> str:
    query: dict[str, str | int] = {"uri": uri}
    if datastore is not None:
        query = {"datastore": datastore.pk, **query}
    if page > 1:
        query["page"] = page
    return reverse("imports:browse") + "?" + urlencode(query)


def _default_region() -> str:
    return str(settings.AWS_DEFAULT_REGION)


def _page_token(request: HttpRequest, uri: str) -> tuple[int, str | None]:
    """The page asked for and its continuation token, remembered in the session.

    S3 pages only forward; to go back, the dashboard keeps the tokens it has handed out, for the
    folder being browsed only. A shared link to page 5 whose token this session never saw opens page 1.
    """
    try:
        page_number = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        page_number = 1
    remembered = request.session.get(BROWSE_TOKENS_SESSION_KEY, {})
    token = (
        remembered.get("tokens", {}).get(str(page_number))
        if remembered.get("uri") == uri
        else None
    )
    if page_number > 1 and token is None:
        return 1, None
    return page_number, token


def _remember_token(
    request: HttpRequest, uri: str, page_number: int, token: str | None
) -> None:
    if token is None:
        return
    remembered = request.session.get(BROWSE_TOKENS_SESSION_KEY, {})
    tokens = remembered.get("tokens", {}) if remembered.get("uri") == uri else {}
    request.session[BROWSE_TOKENS_SESSION_KEY] = {
        "uri": uri,
        "tokens": {**tokens, str(page_number): token},
    }


def _breadcrumbs(bucket: str, prefix: str) -> list[tuple[str, str]]:
    crumbs = [(bucket, f"s3://{bucket}/")]
    path = ""
    for part in [p for p in prefix.split("/") if p]:
        path += part + "/"
        crumbs.append((part, f"s3://{bucket}/{path}"))
    return crumbs


# --- Scans ----------------------------------------------------------------------------------


@require_POST
@permission_required("imports.browse_datastore", raise_exception=True)
def scan_start(request: HttpRequest) -> HttpResponse:
    form = BrowseForm(request.POST)
    if not form.is_valid():
        return render(request, "imports/browse.html", {"form": form}, status=400)
    datastore: Datastore | None = form.cleaned_data["datastore"]
    scan, _ = scans.scan_start(
        actor=request.user,
        bucket=form.cleaned_data["bucket"],
        prefix=form.cleaned_data["prefix"],
        region=datastore.region if datastore else _default_region(),
        datastore=datastore,
    )
    return redirect("imports:scan_detail", pk=scan.pk)


@require_GET
@permission_required("imports.view_scan", raise_exception=True)
def scan_list(request: HtmxHttpRequest) -> HttpResponse:
    form = ScanFilterForm(request.GET)
    scans_qs: QuerySet[Scan] = Scan.objects.select_related("datastore", "started_by")
    if form.is_valid():
        if form.cleaned_data["status"]:
            scans_qs = scans_qs.filter(status=form.cleaned_data["status"])
        if form.cleaned_data["q"]:
            q = form.cleaned_data["q"]
            scans_qs = scans_qs.filter(Q(bucket__icontains=q) | Q(prefix__icontains=q))
    page = Paginator(scans_qs, 25).get_page(request.GET.get("page"))
    template = (
        "imports/scan_list.html#scan-table"
        if request.htmx
        else "imports/scan_list.html"
    )
    return render(
        request,
        template,
        {"form": form, "page": page, "query": _filters_query(request)},
    )


def _filters_query(request: HttpRequest) -> str:
    """The request's query string without its page number, for the links to other pages."""
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


def _get_scan_for_user(request: HttpRequest, pk: int) -> Scan:
    if not request.user.has_perm("imports.view_scan"):
        raise Http404
    return get_object_or_404(Scan.objects.select_related("datastore"), pk=pk)


@require_GET
def scan_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    scan = _get_scan_for_user(request, pk)
    studies = Paginator(
        ScanStudy.objects.filter(scan=scan).prefetch_related("series"), 25
    ).get_page(request.GET.get("studies_page"))
    scan_headers = ObjectHeader.objects.filter(
        pk__in=ScanObject.objects.filter(scan=scan).values("header_id")
    ).order_by("key")
    problems = Paginator(
        scan_headers.filter(
            status__in=[ObjectHeader.Status.UNREADABLE, ObjectHeader.Status.NOT_DICOM]
        ),
        50,
    ).get_page(request.GET.get("problems_page"))
    json_files = Paginator(
        scan_headers.filter(kind=ObjectHeader.Kind.JSON), 50
    ).get_page(request.GET.get("json_page"))
    revealed = scan.pk in request.session.get(REVEALED_SESSION_KEY, [])
    context = {
        "scan": scan,
        "studies": studies,
        "problems": problems,
        "json_files": json_files,
        "revealed": revealed,
        "can_reveal": request.user.has_perm("imports.reveal_phi"),
        "can_scan": request.user.has_perm("imports.browse_datastore"),
        "flagged_count": sum(
            1
            for study in studies
            if study.variants or any(s.variants for s in study.series.all())
        ),
        "max_folders": Scan.MAX_FOLDERS,
    }
    fragment = request.GET.get("fragment")
    if request.htmx and fragment in ("studies", "problems", "json-files"):
        return render(request, f"imports/scan_detail.html#{fragment}", context)
    return render(request, "imports/scan_detail.html", context)


@require_GET
def scan_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The polled progress fragment. Once the scan has ended it answers 286, which stops the polling."""
    scan = _get_scan_for_user(request, pk)
    response = render(
        request,
        "imports/scan_detail.html#progress",
        {"scan": scan, "can_scan": request.user.has_perm("imports.browse_datastore")},
    )
    if not scan.is_active:
        response.status_code = HTMX_STOP_POLLING
        # The results below the bar only exist now: reload the page to show them.
        response["HX-Refresh"] = "true"
    return response


@require_POST
@permission_required("imports.browse_datastore", raise_exception=True)
def scan_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    scan = _get_scan_for_user(request, pk)
    scans.scan_cancel(scan=scan, actor=request.user)
    return redirect("imports:scan_detail", pk=scan.pk)


@require_POST
@permission_required("imports.reveal_phi", raise_exception=True)
def scan_reveal(request: HttpRequest, pk: int) -> HttpResponse:
    scan = _get_scan_for_user(request, pk)
    revealed = set(request.session.get(REVEALED_SESSION_KEY, []))
    if request.POST.get("hide"):
        revealed.discard(scan.pk)
    else:
        services.phi_reveal(actor=request.user, scan=scan)
        revealed.add(scan.pk)
    request.session[REVEALED_SESSION_KEY] = sorted(revealed)
    return redirect(reverse("imports:scan_detail", kwargs={"pk": scan.pk}) + "#studies")


EXPORT_FIELDS = [
    "key", "kind", "status", "study_instance_uid", "series_instance_uid", "sop_instance_uid", "modality",
    "transfer_syntax_uid", "size", "bytes_read", "requests", "error",
]  # fmt: skip


@require_GET
def scan_export(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """Every object of a scan as CSV (no patient names or IDs)."""
    scan = _get_scan_for_user(request, pk)
    headers = (
        ObjectHeader.objects.filter(
            pk__in=ScanObject.objects.filter(scan=scan).values("header_id")
        )
        .order_by("key")
        .values_list(*EXPORT_FIELDS)
    )
    return _csv_response(
        f"scan-{scan.pk}-objects.csv", EXPORT_FIELDS, headers.iterator(chunk_size=2000)
    )


class _Echo:
    """A file whose write() hands the line back, so csv.writer can feed a streaming response."""

    def write(self, value: str) -> str:
        return value


def _csv_response(
    filename: str, header: list[str], rows: Iterable[Iterable[Any]]
) -> StreamingHttpResponse:
    """Rows as a CSV download, streamed so that its size does not matter."""
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- Audit ----------------------------------------------------------------------------------

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
        {"form": form, "page": page, "query": _filters_query(request)},
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
    return _csv_response("audit-trail.csv", AUDIT_EXPORT_FIELDS, rows)
