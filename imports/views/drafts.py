"""Composing an import: start a draft and map files in the composer (preview and confirmation: views/review).

Every change is a POST that carries the draft version the page showed. With htmx the answer is the composer
fragment; without JavaScript, a redirect back to the page. A refused change answers the composer with the
reason, and saves nothing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HTMX_STOP_POLLING

from imports.audit import records as audit
from imports.drafts import approval
from imports.drafts import selectors as draft_selectors
from imports.drafts import services as drafts
from imports.drafts.composer import draft_composer
from imports.forms import (
    ComposerPagesForm,
    DraftApprovalForm,
    DraftAssignForm,
    DraftCsvForm,
    DraftFilterForm,
    DraftFromScanForm,
    DraftSettingsForm,
    DraftStartForm,
    DraftUnmapForm,
    DraftVersionForm,
)
from imports.mappings import csvfile as mappingcsv
from imports.models import ImportDraft, Scan, ScanSeries
from imports.views.common import (
    CONFLICT,
    REFUSED,
    HtmxHttpRequest,
    csv_response,
    filters_query,
    get_scan_for_user,
    page_number,
    permission_required,
)

REVEALED_SESSION_KEY = "revealed_drafts"
# The composer form whose refusal is shown inside it, next to its fields, by the view that refused it.
REFUSAL_PLACES = {
    "draft_assign": "assign",
    "draft_upload_csv": "csv",
    "draft_settings": "settings",
    "draft_corrections": "corrections",
}
EDIT_PERMISSION = "imports.import_to_datastore"
REVEAL_PERMISSION = "imports.reveal_phi"


def get_draft_for_user(request: HttpRequest, pk: int) -> ImportDraft:
    if not request.user.has_perm("imports.view_importdraft"):
        raise PermissionDenied("imports.view_importdraft")
    return get_object_or_404(
        ImportDraft.objects.select_related("datastore", "scan", "owner", "changed_by"),
        pk=pk,
    )


@require_GET
@permission_required("imports.view_importdraft")
def draft_list(request: HtmxHttpRequest) -> HttpResponse:
    form = DraftFilterForm(request.GET)
    listed = (
        draft_selectors.drafts_listed(
            owner=request.user if form.cleaned_data["mine"] else None,
            state=form.cleaned_data["state"],
            text=form.cleaned_data["q"],
        )
        if form.is_valid()
        else ImportDraft.objects.none().order_by("-updated_at")
    )
    page = Paginator(listed, 25).get_page(page_number(request))
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
    start = DraftFromScanForm(request.GET)
    if not start.is_valid():
        notice = " ".join(f"Scan: {error}" for error in start.errors["scan"])
        return render(
            request,
            "imports/draft_new.html",
            {"form": DraftStartForm(), "notice": notice},
            status=400,
        )
    if start.cleaned_data["scan"] is not None:
        scan = get_scan_for_user(request, start.cleaned_data["scan"])
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
    fix = {
        name: request.POST.get(f"fix_{name}", "")[:64]
        for name in ("study", "series", "attribute")
    }
    reused = (
        draft_selectors.draft_open_for_scan(actor=request.user, scan=scan)
        if fix["study"] and fix["attribute"]
        else None
    )
    if reused is not None:
        messages.info(
            request,
            f"Opened your draft {reused.pk} of this prefix: no job was made from it yet. "
            "“New import from this scan” starts a fresh one.",
        )
    draft = reused or drafts.draft_start(
        actor=request.user,
        datastore=scan.datastore,
        input_s3_uri=scan.uri,
        output_s3_uri=scan.datastore.output_s3_uri,
    )
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


def composer_response(
    request: HtmxHttpRequest,
    draft: ImportDraft,
    *,
    status: int = 200,
    refusal: str = "",
    refusal_problems: list[Any] | None = None,
    settings_form: DraftSettingsForm | None = None,
    approval_form: DraftApprovalForm | None = None,
    undo: dict[str, str] | None = None,
) -> HttpResponse:
    # The pages shown, from the link (GET) or carried by the change's form (POST).
    pages = composer_pages(request)
    composer = draft_composer(
        draft=draft,
        studies_page=pages.get("studies_page") or 1,
        rows_page=pages.get("rows_page") or 1,
    )
    context = {
        "draft": draft,
        "composer": composer,
        "can_edit": request.user.has_perm(EDIT_PERMISSION) and not draft.confirmed_at,
        "confirmed_job": draft.jobs.order_by("created_at", "pk").first()
        if draft.confirmed_at
        else None,
        "approval": approval.approval_card(
            draft=draft,
            user=request.user if isinstance(request.user, User) else None,
        ),
        "approval_form": approval_form
        or DraftApprovalForm(initial={"version": draft.version}),
        "refusal": refusal,
        "undo": undo,
        "refusal_problems": refusal_problems or [],
        "refusal_place": _refusal_place(request, draft, status) if refusal else "",
        # A refused change keeps what was typed and ticked in its form.
        "submitted": request.POST if refusal else {},
        "submitted_targets": request.POST.getlist("target") if refusal else [],
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


def _refusal_place(request: HttpRequest, draft: ImportDraft, status: int) -> str:
    """Where the composer shows a refusal: in the form that was refused, or at the top.

    A conflict is about the whole draft (the newer state is shown), and the forms exist only once the
    scan has completed.
    """
    url_name = request.resolver_match.url_name if request.resolver_match else ""
    if status == CONFLICT or draft.scan is None:
        return "top"
    if draft.scan.status != Scan.Status.COMPLETED:
        return "top"
    return REFUSAL_PLACES.get(url_name or "", "top")


@require_GET
def draft_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    return composer_response(request, get_draft_for_user(request, pk))


@require_GET
def draft_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The scan progress inside the composer, polled; once the scan has ended the page reloads with the tree."""
    draft = get_draft_for_user(request, pk)
    response = render(
        request, "imports/draft_detail.html#index-progress", {"draft": draft}
    )
    if draft.scan is None or not draft.scan.is_active:
        response.status_code = HTMX_STOP_POLLING
        response["HX-Refresh"] = "true"
    return response


def _changed(
    request: HtmxHttpRequest,
    draft: ImportDraft,
    change: Any,
    *,
    undo: dict[str, str] | None = None,
    **kwargs: Any,
) -> HttpResponse:
    """Run one change; answer the composer (htmx) or redirect, or show why nothing was saved.

    `undo` (a removal's): what the answer offers to put back with one press.
    """
    try:
        updated = change(draft=draft, actor=request.user, **kwargs)
    except drafts.DraftConflict as conflict:
        return composer_response(
            request, conflict.current, status=CONFLICT, refusal=str(conflict)
        )
    except drafts.DraftRefused as refused:
        return composer_response(
            request,
            draft,
            status=REFUSED,
            refusal=str(refused),
            refusal_problems=refused.problems,
        )
    if request.htmx:
        return composer_response(request, updated, undo=undo)
    return _back_to_composer(request, draft)


def composer_pages(request: HttpRequest) -> dict[str, Any]:
    """The pages shown, from the link (GET) or carried by the change's form (POST); the valid ones only."""
    form = ComposerPagesForm(request.POST if request.method == "POST" else request.GET)
    form.is_valid()
    return {name: value for name, value in form.cleaned_data.items() if value}


def _back_to_composer(request: HttpRequest, draft: ImportDraft) -> HttpResponse:
    """Without JavaScript: back to the composer, on the pages the change was made from."""
    pages = {
        name: value
        for name, value in composer_pages(request).items()
        if name in ("studies_page", "rows_page")
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
    for error in form.errors.get("version", []):
        # The page sends the version it showed: a bad one means the page was incomplete or altered.
        reasons.append(f"Draft version: {error} Reload the page.")
    return composer_response(
        request,
        draft,
        status=REFUSED,
        refusal=" ".join(reasons) + " Nothing was saved.",
    )


def editable_draft(request: HttpRequest, pk: int) -> ImportDraft:
    if not request.user.has_perm(EDIT_PERMISSION):
        raise PermissionDenied(EDIT_PERMISSION)
    return get_draft_for_user(request, pk)


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
    draft = editable_draft(request, pk)
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
    draft = editable_draft(request, pk)
    form = DraftUnmapForm(request.POST)
    if not form.is_valid():
        return _form_refused(request, draft, form)
    removed = draft.mappings.filter(pk=form.cleaned_data["mapping"]).first()
    return _changed(
        request,
        draft,
        drafts.draft_unmap,
        # The answer offers to put it back: the same file on the same study or series (draft_assign).
        undo={
            "target": f"{removed.study_instance_uid}|{removed.series_instance_uid}",
            "path": removed.metadata_file_path,
            "level": "series" if removed.series_instance_uid else "study",
        }
        if removed is not None
        else None,
        version=form.cleaned_data["version"],
        mapping_ids=[form.cleaned_data["mapping"]],
    )


@require_POST
def draft_accept_suggestions(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    draft = editable_draft(request, pk)
    form = DraftVersionForm(request.POST)
    if not form.is_valid():
        return _form_refused(request, draft, form)
    return _changed(
        request,
        draft,
        drafts.draft_accept_suggestions,
        version=form.cleaned_data["version"],
    )


@require_POST
def draft_upload_csv(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    draft = editable_draft(request, pk)
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
@permission_required(approval.PERMISSION)
def draft_approve(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """An approver approves or refuses the patient changes of the draft version the page showed."""
    draft = get_draft_for_user(request, pk)
    form = DraftApprovalForm(request.POST)
    if not form.is_valid():
        reasons = " ".join(
            f"{form.fields[name].label or name.capitalize()}: {' '.join(str(e) for e in errors)}"
            for name, errors in form.errors.items()
        )
        return composer_response(
            request,
            draft,
            status=REFUSED,
            refusal=f"Nothing was recorded. {reasons}",
            approval_form=form,
        )
    assert isinstance(request.user, User)
    try:
        approval.draft_decide(
            draft=draft,
            actor=request.user,
            version=form.cleaned_data["version"],
            approve=form.cleaned_data["decision"] == "approve",
            reason=form.cleaned_data["reason"],
            note=form.cleaned_data["note"],
        )
    except approval.ApprovalRefused as refused:
        return composer_response(
            request, draft, status=REFUSED, refusal=str(refused), approval_form=form
        )
    return _back_to_composer(request, draft)


@require_POST
def draft_settings(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    draft = editable_draft(request, pk)
    form = DraftSettingsForm(request.POST)
    if not form.is_valid():
        return composer_response(
            request,
            draft,
            status=REFUSED,
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
    draft = editable_draft(request, pk)
    form = DraftVersionForm(request.POST)
    if not form.is_valid():
        return _form_refused(request, draft, form)
    try:
        draft = drafts.draft_refresh_index(
            draft=draft, actor=request.user, version=form.cleaned_data["version"]
        )
    except drafts.DraftConflict as conflict:
        return composer_response(
            request, conflict.current, status=CONFLICT, refusal=str(conflict)
        )
    return redirect("imports:draft_detail", pk=draft.pk)


@require_http_methods(["GET", "POST"])
def draft_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks (a deleted draft cannot come back); POST deletes."""
    draft = editable_draft(request, pk)
    if request.method == "GET":
        return render(
            request,
            "imports/draft_delete.html",
            {"draft": draft, "mappings": draft.mappings.count()},
        )
    drafts.draft_delete(draft=draft, actor=request.user)
    messages.success(request, "The draft was deleted.")
    return redirect("imports:draft_list")


@require_GET
def draft_export(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    draft = get_draft_for_user(request, pk)
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
