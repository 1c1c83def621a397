"""Scans: start one, follow its progress, read its index, export its objects."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HTMX_STOP_POLLING

from imports.audit import records as audit
from imports.forms import BrowseForm, ScanFilterForm
from imports.models import Datastore, ObjectHeader, Scan, ScanStudy
from imports.scanning import control
from imports.scanning.tally import scan_tally
from imports.views.common import (
    HtmxHttpRequest,
    csv_response,
    default_region,
    filters_query,
    get_scan_for_user,
    key_mask,
    page_number,
    permission_required,
    render_page,
)

REVEALED_SESSION_KEY = "revealed_scans"


@require_POST
@permission_required("imports.browse_datastore")
def scan_start(request: HttpRequest) -> HttpResponse:
    form = BrowseForm(request.POST)
    if not form.is_valid():
        return render(request, "imports/browse.html", {"form": form}, status=400)
    datastore: Datastore | None = form.cleaned_data["datastore"]
    scan, _ = control.scan_start(
        actor=request.user,
        bucket=form.cleaned_data["bucket"],
        prefix=form.cleaned_data["prefix"],
        region=datastore.region if datastore else default_region(),
        datastore=datastore,
    )
    return redirect("imports:scan_detail", pk=scan.pk)


@require_GET
@permission_required("imports.view_scan")
def scan_list(request: HtmxHttpRequest) -> HttpResponse:
    form = ScanFilterForm(request.GET)
    scans_qs: QuerySet[Scan] = Scan.objects.select_related("datastore", "started_by")
    if not form.is_valid():
        scans_qs = scans_qs.none()  # the form says which filter is wrong
    else:
        if form.cleaned_data["status"]:
            scans_qs = scans_qs.filter(status=form.cleaned_data["status"])
        if form.cleaned_data["q"]:
            q = form.cleaned_data["q"]
            scans_qs = scans_qs.filter(Q(bucket__icontains=q) | Q(prefix__icontains=q))
    page = Paginator(scans_qs, 25).get_page(page_number(request))
    return render_page(
        request,
        "imports/scan_list.html",
        "scans",
        {"form": form, "page": page, "query": filters_query(request)},
    )


@require_GET
def scan_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    scan = get_scan_for_user(request, pk)
    studies = Paginator(
        ScanStudy.objects.filter(scan=scan).prefetch_related("series"), 25
    ).get_page(page_number(request, "studies_page"))
    scan_headers = ObjectHeader.objects.of_scan(scan).order_by("key")
    problems = Paginator(
        scan_headers.filter(
            status__in=[ObjectHeader.Status.UNREADABLE, ObjectHeader.Status.NOT_DICOM]
        ),
        50,
    ).get_page(page_number(request, "problems_page"))
    json_files = Paginator(
        scan_headers.filter(kind=ObjectHeader.Kind.JSON), 50
    ).get_page(page_number(request, "json_page"))
    revealed = scan.pk in request.session.get(REVEALED_SESSION_KEY, [])
    context = {
        "scan": scan,
        "key_mask": key_mask(request, scan.uri),
        "studies": studies,
        "problems": problems,
        "json_files": json_files,
        "revealed": revealed,
        "can_reveal": request.user.has_perm("imports.reveal_phi"),
        "can_scan": request.user.has_perm("imports.browse_datastore"),
        "can_import": request.user.has_perm("imports.import_to_datastore"),
        "flagged_count": sum(
            1
            for study in studies
            if study.variants or any(s.variants for s in study.series.all())
        ),
        "max_folders": Scan.MAX_FOLDERS,
        "tally": scan_tally(scan=scan),
    }
    fragment = request.GET.get("fragment")
    if fragment in ("studies", "problems", "json-files"):
        return render_page(request, "imports/scan_detail.html", fragment, context)
    return render(request, "imports/scan_detail.html", context)


@require_GET
def scan_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The polled progress fragment. Once the scan has ended it answers 286, which stops the polling."""
    scan = get_scan_for_user(request, pk)
    response = render(
        request,
        "imports/scan_detail.html#progress",
        {
            "scan": scan,
            "can_scan": request.user.has_perm("imports.browse_datastore"),
            "tally": scan_tally(scan=scan),
        },
    )
    if not scan.is_active:
        response.status_code = HTMX_STOP_POLLING
        # The results below the bar only exist now: reload the page to show them.
        response["HX-Refresh"] = "true"
    return response


@require_POST
@permission_required("imports.browse_datastore")
def scan_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    scan = get_scan_for_user(request, pk)
    control.scan_cancel(scan=scan, actor=request.user)
    return redirect("imports:scan_detail", pk=scan.pk)


@require_POST
@permission_required("imports.browse_datastore")
def scan_read_rest(request: HttpRequest, pk: int) -> HttpResponse:
    """Read again only the objects an Incomplete scan could not read."""
    scan = get_scan_for_user(request, pk)
    if not control.scan_read_rest(scan=scan, actor=request.user):
        messages.error(
            request,
            "Only an incomplete scan can read the rest, and only while no other scan of its "
            "prefix is running.",
        )
    return redirect("imports:scan_detail", pk=scan.pk)


@require_POST
@permission_required("imports.reveal_phi")
def scan_reveal(request: HttpRequest, pk: int) -> HttpResponse:
    scan = get_scan_for_user(request, pk)
    revealed = set(request.session.get(REVEALED_SESSION_KEY, []))
    if request.POST.get("hide"):
        revealed.discard(scan.pk)
    else:
        audit.phi_reveal(
            actor=request.user, target=scan, where=f"the scan of {scan.uri}"
        )
        revealed.add(scan.pk)
    request.session[REVEALED_SESSION_KEY] = sorted(revealed)
    return redirect(reverse("imports:scan_detail", kwargs={"pk": scan.pk}) + "#studies")


EXPORT_FIELDS = [
    "key", "kind", "status", "study_instance_uid", "series_instance_uid", "sop_instance_uid", "modality",
    "transfer_syntax_uid", "size", "bytes_read", "requests", "error",
]  # fmt: skip


@require_GET
def scan_export(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """Every object of a scan as CSV (no patient names or IDs).

    The status reads as on the page ("Not DICOM", "Unreadable", ...); sizes stay exact byte counts,
    so that a spreadsheet can sum and sort them.
    """
    scan = get_scan_for_user(request, pk)
    audit.export_record(
        actor=request.user,
        what=f"the objects of the scan of {scan.uri}",
        export_format="csv",
        target=scan,
    )
    headers = (
        ObjectHeader.objects.of_scan(scan).order_by("key").values_list(*EXPORT_FIELDS)
    )
    labels = dict(ObjectHeader.Status.choices)
    status_at = EXPORT_FIELDS.index("status")
    mask = key_mask(request, scan.uri)
    rows = (
        [
            mask(row[0]),
            *row[1:status_at],
            labels.get(row[status_at], row[status_at]),
            *row[status_at + 1 : -1],
            mask(row[-1]),
        ]
        for row in headers.iterator(chunk_size=2000)
    )
    return csv_response(f"scan-{scan.pk}-objects.csv", EXPORT_FIELDS, rows)
