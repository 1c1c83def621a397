"""Composing an import: start a draft, map files in the composer, preview the headers, confirm the request.

Every change is a POST that carries the draft version the page showed. With htmx the answer is the composer
fragment; without JavaScript, a redirect back to the page. A refused change answers the composer with the
reason, and saves nothing.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HTMX_STOP_POLLING

from imports import audit, confirmation, drafts, jobdrafts, mappingcsv, preview
from imports.composer import draft_composer
from imports.forms import (
    DraftAssignForm,
    DraftConfirmForm,
    DraftCsvForm,
    DraftFilterForm,
    DraftSettingsForm,
    DraftStartForm,
    DraftUnmapForm,
)
from imports.models import ImportDraft, Scan, ScanSeries
from imports.views.common import (
    HtmxHttpRequest,
    csv_response,
    filters_query,
    get_scan_for_user,
    permission_required,
)

REVEALED_SESSION_KEY = "revealed_drafts"
EDIT_PERMISSION = "imports.import_to_datastore"


def _get_draft_for_user(request: HttpRequest, pk: int) -> ImportDraft:
    if not request.user.has_perm("imports.view_importdraft"):
        raise PermissionDenied("imports.view_importdraft")
    return get_object_or_404(
        ImportDraft.objects.select_related("datastore", "scan", "owner"), pk=pk
    )


@require_GET
@permission_required("imports.view_importdraft")
def draft_list(request: HtmxHttpRequest) -> HttpResponse:
    form = DraftFilterForm(request.GET)
    listed = (
        drafts.drafts_listed(
            owner=request.user if form.cleaned_data["mine"] else None,
            state=form.cleaned_data["state"],
            text=form.cleaned_data["q"],
        )
        if form.is_valid()
        else ImportDraft.objects.none().order_by("-updated_at")
    )
    page = Paginator(listed, 25).get_page(request.GET.get("page"))
    return render(
        request,
        "imports/draft_list.html",
        {
            "form": form,
            "page": page,
            "query": filters_query(request),
            "can_edit": request.user.has_perm(EDIT_PERMISSION),
        },
    )


@require_http_methods(["GET", "POST"])
@permission_required(EDIT_PERMISSION)
def draft_new(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = DraftStartForm(request.POST)
        if form.is_valid():
            draft = drafts.draft_start(
                actor=request.user,
                datastore=form.cleaned_data["datastore"],
                input_s3_uri=form.cleaned_data["input_s3_uri"],
                output_s3_uri=form.cleaned_data["output_s3_uri"],
                job_name=form.cleaned_data["job_name"],
            )
            return redirect("imports:draft_detail", pk=draft.pk)
        return render(request, "imports/draft_new.html", {"form": form}, status=400)
    initial: dict[str, Any] = {}
    scan_id = request.GET.get("scan", "")
    if scan_id.isdigit():
        scan = get_scan_for_user(request, int(scan_id))
        if scan.datastore is not None:
            initial["datastore"] = scan.datastore
        initial["input_s3_uri"] = scan.uri
    return render(
        request, "imports/draft_new.html", {"form": DraftStartForm(initial=initial)}
    )


@require_POST
@permission_required(EDIT_PERMISSION)
def draft_from_scan(request: HttpRequest, pk: int) -> HttpResponse:
    """ "New import from this scan": one click, with the scan's datastore and its defaults."""
    scan = get_scan_for_user(request, pk)
    if scan.datastore is None:
        # The datastore decides the role and output: the user must choose one.
        return redirect(reverse("imports:draft_new") + f"?scan={scan.pk}")
    draft = drafts.draft_start(
        actor=request.user,
        datastore=scan.datastore,
        input_s3_uri=scan.uri,
        output_s3_uri=scan.datastore.output_s3_uri,
    )
    fix = {
        name: request.POST.get(f"fix_{name}", "")[:64]
        for name in ("study", "series", "attribute")
    }
    if fix["study"] and fix["attribute"]:
        # "Fix" on the scan page: the new draft's metadata editor, prefilled to unify the attribute.
        query = urlencode(
            {"study": fix["study"], "series": fix["series"], "fix": fix["attribute"]}
        )
        return redirect(
            reverse("imports:editor", kwargs={"pk": draft.pk}) + "?" + query
        )
    return redirect("imports:draft_detail", pk=draft.pk)


# --- The composer ---------------------------------------------------------------------------


def _composer_response(
    request: HtmxHttpRequest,
    draft: ImportDraft,
    *,
    status: int = 200,
    refusal: str = "",
    refusal_problems: list[Any] | None = None,
    settings_form: DraftSettingsForm | None = None,
) -> HttpResponse:
    # The pages shown, from the link (GET) or carried by the change's form (POST).
    pages = request.POST if request.method == "POST" else request.GET
    composer = draft_composer(
        draft=draft,
        studies_page=pages.get("studies_page", 1),
        rows_page=pages.get("rows_page", 1),
    )
    context = {
        "draft": draft,
        "composer": composer,
        "can_edit": request.user.has_perm(EDIT_PERMISSION),
        "refusal": refusal,
        "refusal_problems": refusal_problems or [],
        "settings_form": settings_form
        or DraftSettingsForm(
            initial={
                "version": draft.version,
                "job_name": draft.job_name,
                "output_s3_uri": draft.output_s3_uri,
            }
        ),
    }
    template = (
        "imports/draft_detail.html#composer"
        if request.htmx
        else "imports/draft_detail.html"
    )
    return render(request, template, context, status=status)


@require_GET
def draft_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    return _composer_response(request, _get_draft_for_user(request, pk))


@require_GET
def draft_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The scan progress inside the composer, polled; once the scan has ended the page reloads with the tree."""
    draft = _get_draft_for_user(request, pk)
    response = render(
        request, "imports/draft_detail.html#index-progress", {"draft": draft}
    )
    if draft.scan is None or not draft.scan.is_active:
        response.status_code = HTMX_STOP_POLLING
        response["HX-Refresh"] = "true"
    return response


def _changed(
    request: HtmxHttpRequest, draft: ImportDraft, change: Any, **kwargs: Any
) -> HttpResponse:
    """Run one change; answer the composer (htmx) or redirect, or show why nothing was saved."""
    try:
        updated = change(draft=draft, actor=request.user, **kwargs)
    except drafts.DraftConflict as conflict:
        return _composer_response(
            request, conflict.current, status=409, refusal=str(conflict)
        )
    except drafts.DraftRefused as refused:
        return _composer_response(
            request,
            draft,
            status=400,
            refusal=str(refused),
            refusal_problems=refused.problems,
        )
    if request.htmx:
        return _composer_response(request, updated)
    return _back_to_composer(request, draft)


def _back_to_composer(request: HttpRequest, draft: ImportDraft) -> HttpResponse:
    """Without JavaScript: back to the composer, on the pages the change was made from."""
    pages = {
        name: request.POST[name]
        for name in ("studies_page", "rows_page")
        if request.POST.get(name, "").isdigit()
    }
    url = reverse("imports:draft_detail", kwargs={"pk": draft.pk})
    return redirect(url + (f"?{urlencode(pages)}" if pages else ""))


def _form_refused(
    request: HtmxHttpRequest, draft: ImportDraft, form: Any
) -> HttpResponse:
    reasons = [
        f"{form.fields[name].label or name}: {error}"
        if name != "__all__"
        else str(error)
        for name, errors in form.errors.items()
        for error in errors
        if name != "version"
    ]
    if "version" in form.errors:
        reasons.append("The page was incomplete (no draft version); reload it.")
    return _composer_response(
        request, draft, status=400, refusal=" ".join(reasons) + " Nothing was saved."
    )


def _editable_draft(request: HttpRequest, pk: int) -> ImportDraft:
    if not request.user.has_perm(EDIT_PERMISSION):
        raise PermissionDenied(EDIT_PERMISSION)
    return _get_draft_for_user(request, pk)


def _targets(draft: ImportDraft) -> list[str]:
    if draft.scan is None:
        return []
    pairs = ScanSeries.objects.filter(study__scan=draft.scan).values_list(
        "study__study_instance_uid", "series_instance_uid"
    )
    targets = set()
    for study, series in pairs:
        targets.add(f"{study}|{series}")
        targets.add(f"{study}|")
    return sorted(targets)


@require_POST
def draft_assign(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    draft = _editable_draft(request, pk)
    form = DraftAssignForm(request.POST, targets=_targets(draft))
    if not form.is_valid():
        return _form_refused(request, draft, form)
    return _changed(
        request,
        draft,
        drafts.draft_assign,
        version=form.cleaned_data["version"],
        targets=form.cleaned_data["target"],
        path=form.cleaned_data["path"],
    )


@require_POST
def draft_unmap(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    draft = _editable_draft(request, pk)
    form = DraftUnmapForm(request.POST)
    if not form.is_valid():
        return _form_refused(request, draft, form)
    return _changed(
        request,
        draft,
        drafts.draft_unmap,
        version=form.cleaned_data["version"],
        mapping_ids=[form.cleaned_data["mapping"]],
    )


@require_POST
def draft_accept_suggestions(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    draft = _editable_draft(request, pk)
    form = DraftUnmapForm(request.POST)  # only its version is used
    if "version" in form.errors or not form.has_changed():
        return _form_refused(request, draft, form)
    return _changed(
        request,
        draft,
        drafts.draft_accept_suggestions,
        version=int(form.data["version"]),
    )


@require_POST
def draft_upload_csv(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    draft = _editable_draft(request, pk)
    form = DraftCsvForm(request.POST, request.FILES)
    if not form.is_valid():
        return _form_refused(request, draft, form)
    upload = form.cleaned_data["csv_file"]
    data = upload.read(mappingcsv.CSV_MAX_BYTES + 1)
    return _changed(
        request,
        draft,
        drafts.draft_import_csv,
        version=form.cleaned_data["version"],
        data=data,
    )


@require_POST
def draft_settings(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    draft = _editable_draft(request, pk)
    form = DraftSettingsForm(request.POST)
    if not form.is_valid():
        return _composer_response(
            request,
            draft,
            status=400,
            refusal="The settings were not saved: see the fields below.",
            settings_form=form,
        )
    return _changed(
        request,
        draft,
        drafts.draft_update_settings,
        version=form.cleaned_data["version"],
        job_name=form.cleaned_data["job_name"],
        output_s3_uri=form.cleaned_data["output_s3_uri"],
    )


@require_POST
def draft_refresh_index(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    draft = _editable_draft(request, pk)
    form = DraftUnmapForm(request.POST)
    if "version" in form.errors:
        return _form_refused(request, draft, form)
    try:
        draft = drafts.draft_refresh_index(
            draft=draft, actor=request.user, version=int(form.data["version"])
        )
    except drafts.DraftConflict as conflict:
        return _composer_response(
            request, conflict.current, status=409, refusal=str(conflict)
        )
    return redirect("imports:draft_detail", pk=draft.pk)


@require_POST
def draft_delete(request: HttpRequest, pk: int) -> HttpResponse:
    draft = _editable_draft(request, pk)
    drafts.draft_delete(draft=draft, actor=request.user)
    messages.success(request, "The draft was deleted.")
    return redirect("imports:draft_list")


@require_GET
def draft_export(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    draft = _get_draft_for_user(request, pk)
    audit.export_record(
        actor=request.user,
        what=f"the mappings of import draft {draft.pk}",
        export_format="csv",
        target=draft,
    )
    return csv_response(
        f"draft-{draft.pk}-mappings.csv",
        mappingcsv.CSV_COLUMNS,
        drafts.draft_csv_rows(draft=draft),
    )


# --- Preview --------------------------------------------------------------------------------


@require_GET
def draft_preview(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """One mapped series at a time: its header now, next to the header it will be imported with."""
    draft = _get_draft_for_user(request, pk)
    affected = _affected_series(draft)
    chosen = request.GET.get("series", "")
    series = next(
        (s for s in affected if s.series_instance_uid == chosen),
        affected[0] if affected else None,
    )
    context = {
        "draft": draft,
        "affected": affected,
        "chosen": series,
        "preview": preview.series_preview(draft=draft, series=series)
        if series
        else None,
        "revealed": draft.pk in request.session.get(REVEALED_SESSION_KEY, []),
        "can_reveal": request.user.has_perm("imports.reveal_phi"),
    }
    return render(request, "imports/draft_preview.html", context)


def _affected_series(draft: ImportDraft) -> list[ScanSeries]:
    """Every series a mapping changes: all series of a study-level mapping, and each mapped series."""
    if draft.scan is None or draft.scan.status != Scan.Status.COMPLETED:
        return []
    pairs = list(
        draft.mappings.values_list("study_instance_uid", "series_instance_uid")
    )
    studies = {study for study, series in pairs if not series}
    series_uids = {series for _, series in pairs if series}
    candidates = ScanSeries.objects.filter(study__scan=draft.scan).select_related(
        "study", "sample_header"
    )
    return [
        s
        for s in candidates.order_by("study__study_instance_uid", "series_number")
        if s.study.study_instance_uid in studies or s.series_instance_uid in series_uids
    ]


@require_POST
@permission_required("imports.reveal_phi")
def draft_reveal(request: HttpRequest, pk: int) -> HttpResponse:
    draft = _get_draft_for_user(request, pk)
    revealed = set(request.session.get(REVEALED_SESSION_KEY, []))
    if request.POST.get("hide"):
        revealed.discard(draft.pk)
    else:
        audit.phi_reveal(
            actor=request.user,
            target=draft,
            where=f"the preview of import draft {draft.pk}",
        )
        revealed.add(draft.pk)
    request.session[REVEALED_SESSION_KEY] = sorted(revealed)
    series = request.POST.get("series", "")
    return redirect(
        reverse("imports:draft_preview", kwargs={"pk": draft.pk})
        + (f"?series={series}" if series.replace(".", "").isdigit() else "")
    )


# --- Confirmation ---------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def draft_confirm(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The exact request, the validation and the content hash; confirming re-runs every check first."""
    draft = _get_draft_for_user(request, pk)
    form = DraftConfirmForm(
        request.POST or None,
        initial={
            "version": draft.version,
            "content_hash": draft.content_hash,
            "idempotency_key": uuid.uuid4(),
        },
    )
    status = 200
    notice = ""
    if request.method == "POST":
        if not request.user.has_perm(EDIT_PERMISSION):
            raise PermissionDenied(EDIT_PERMISSION)
        if form.is_valid():
            try:
                job = confirmation.draft_confirm(
                    draft=draft,
                    actor=request.user,
                    version=form.cleaned_data["version"],
                    content_hash=form.cleaned_data["content_hash"],
                    acknowledged_warnings=form.cleaned_data["acknowledge_warnings"],
                    idempotency_key=str(form.cleaned_data["idempotency_key"]),
                )
            except drafts.DraftConflict as conflict:
                draft, status, notice = conflict.current, 409, str(conflict)
            except drafts.DraftRefused as refused:
                status, notice = 400, str(refused)
            else:
                messages.success(
                    request,
                    f"Confirmed: import job {job.pk} is on its way to HealthImaging.",
                )
                return redirect("imports:job_detail", pk=job.pk)
        else:
            status, notice = (
                400,
                "The confirmation form was incomplete; reload the page.",
            )
        form = DraftConfirmForm(
            initial={
                "version": draft.version,
                "content_hash": draft.content_hash,
                "idempotency_key": uuid.uuid4(),
            }
        )
    problems = drafts.draft_validate(draft=draft)
    request_payload = drafts.draft_request(draft=draft)
    context = {
        "draft": draft,
        "form": form,
        "problems": problems,
        "errors": [p for p in problems if p.severity == "error"],
        "warnings": [p for p in problems if p.severity == "warning"],
        "request_json": json.dumps(request_payload, indent=2),
        "notice": notice,
        "can_edit": request.user.has_perm(EDIT_PERMISSION),
        "jobs": draft.jobs.order_by("-created_at")[:5],
        "duplicates": jobdrafts.job_duplicate_instances(
            datastore=draft.datastore, scan=draft.scan
        )
        if draft.scan is not None and draft.scan.status == Scan.Status.COMPLETED
        else None,
    }
    return render(request, "imports/draft_confirm.html", context, status=status)
