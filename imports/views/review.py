"""Reviewing a draft before it becomes a job: the header preview, the audited reveal, and the confirmation.

The composer (imports/views/drafts.py) makes the draft; these pages show what the import will do and
confirm it once.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HTMX_STOP_POLLING

from imports.audit import records as audit
from imports.drafts import approval, confirmation, prediction, prediction_runs, preview
from imports.drafts import services as drafts
from imports.drafts.composer import draft_problems_with_studies
from imports.drafts.summary import draft_summary
from imports.forms import (
    DraftConfirmForm,
)
from imports.jobs import derived as duplicates
from imports.models import ImportDraft, Scan, ScanSeries
from imports.views.common import (
    HtmxHttpRequest,
    key_mask,
    permission_required,
)
from imports.views.drafts import (
    EDIT_PERMISSION,
    REVEAL_PERMISSION,
    REVEALED_SESSION_KEY,
    composer_pages,
    get_draft_for_user,
)

# --- Preview --------------------------------------------------------------------------------


@require_GET
def draft_preview(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """One mapped series at a time: its header now, next to the header it will be imported with."""
    draft = get_draft_for_user(request, pk)
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
        "across": preview.series_across_instances(draft=draft, series=series)
        if series
        else None,
        "changed_only": request.GET.get("changed") == "1",
        "revealed": draft.pk in request.session.get(REVEALED_SESSION_KEY, []),
        "can_reveal": request.user.has_perm("imports.reveal_phi"),
        "key_mask": key_mask(request, draft.input_s3_uri),
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
@permission_required(REVEAL_PERMISSION)
def draft_reveal(request: HttpRequest, pk: int) -> HttpResponse:
    """Reveal (audited) or mask again the patient values of a draft's preview and metadata editor."""
    draft = get_draft_for_user(request, pk)
    back = request.POST.get("back")
    in_editor = back == "editor"
    where = {"editor": "metadata editor", "corrections": "correction sheet review"}
    revealed = set(request.session.get(REVEALED_SESSION_KEY, []))
    if request.POST.get("hide"):
        revealed.discard(draft.pk)
    else:
        audit.phi_reveal(
            actor=request.user,
            target=draft,
            where=f"the {where.get(back or '', 'preview')} of import draft {draft.pk}",
        )
        revealed.add(draft.pk)
    request.session[REVEALED_SESSION_KEY] = sorted(revealed)
    if in_editor:
        # Back to the file that was open; the editor bounds and checks these values itself.
        opened = {
            name: request.POST.get(name, "")[:limit]
            for name, limit in (
                ("path", 1024),
                ("study", 64),
                ("series", 64),
                ("fix", 64),
            )
        }
        return redirect(
            reverse("imports:editor", kwargs={"pk": draft.pk})
            + "?"
            + urlencode({k: v for k, v in opened.items() if v})
        )
    if back == "corrections":
        return redirect("imports:draft_corrections", pk=draft.pk)
    series = composer_pages(request).get("series", "")
    return redirect(
        reverse("imports:draft_preview", kwargs={"pk": draft.pk})
        + (f"?{urlencode({'series': series})}" if series else "")
    )


# --- Confirmation ---------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def draft_confirm(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The exact request, the validation and the content hash; confirming re-runs every check first."""
    draft = get_draft_for_user(request, pk)
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
    non_primary_refusal = ""
    same_request = None
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
                    import_again=form.cleaned_data["import_again"],
                    accepted_non_primary=form.cleaned_data["accept_non_primary"],
                )
            except confirmation.NonPrimaryRefused as refused:
                status, non_primary_refusal = 400, str(refused)
            except duplicates.SameRequest as same:
                status, notice, same_request = 409, str(same), same.job
            except drafts.DraftConflict as conflict:
                draft, status, notice = conflict.current, 409, str(conflict)
            except drafts.DraftRefused as refused:
                status, notice = 400, str(refused)
            else:
                if job.idempotency_key != str(form.cleaned_data["idempotency_key"]):
                    # Back then Confirm, or a second tab: the draft confirms once.
                    messages.info(
                        request,
                        f"This draft was already confirmed as import job {job.pk}; nothing new was started.",
                    )
                else:
                    # Worded to stay true once the job has ended: the live status card says where it is.
                    messages.success(
                        request,
                        f"Confirmed as import job {job.pk}. Its status below follows it to HealthImaging.",
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
    frozen = drafts.draft_frozen_problem(draft)
    if same_request is None and not frozen:
        # Known before pressing Confirm: the box to tick is on the page from the start.
        same_request = duplicates.job_same_request(
            datastore=draft.datastore, request=request_payload
        )
    # Once confirmed, the datastore holds the import itself: a prediction would describe nothing.
    predicted = (
        prediction_runs.draft_prediction_state(draft=draft)
        if draft.scan is not None
        and draft.scan.status == Scan.Status.COMPLETED
        and not frozen
        else None
    )
    context = {
        "draft": draft,
        "form": form,
        "problems": problems,
        "problem_rows": draft_problems_with_studies(draft=draft, problems=problems),
        "errors": [p for p in problems if p.severity == "error"],
        "warnings": [p for p in problems if p.severity == "warning"],
        "request_json": json.dumps(request_payload, indent=2),
        "notice": notice,
        "same_request": same_request,
        "can_edit": request.user.has_perm(EDIT_PERMISSION),
        "frozen": frozen,
        "acknowledged": request.method == "POST"
        and request.POST.get("acknowledge_warnings") == "on",
        "summary": draft_summary(draft=draft),
        "jobs": draft.jobs.order_by("-created_at")[:5],
        "duplicates": duplicates.job_duplicate_instances(
            datastore=draft.datastore, scan=draft.scan
        )
        if draft.scan is not None and draft.scan.status == Scan.Status.COMPLETED
        else None,
        "prediction": predicted.prediction if predicted else None,
        "prediction_running": predicted if predicted and predicted.running else None,
        "non_primary_refusal": non_primary_refusal,
        # Known before pressing Confirm too: who still has to approve.
        "approval_needed": ""
        if frozen or notice
        else approval.approval_problem(draft=draft),
        "accepted_non_primary": request.method == "POST"
        and request.POST.get("accept_non_primary") == "on",
        "revealed": draft.pk in request.session.get(REVEALED_SESSION_KEY, []),
        "cost_note": prediction.COST_NOTE,
    }
    return render(request, "imports/draft_confirm.html", context, status=status)


@require_GET
def draft_prediction(request: HttpRequest, pk: int) -> HttpResponse:
    """The polled progress of a large draft's prediction; once it is done the page reloads to show it."""
    draft = get_draft_for_user(request, pk)
    state = prediction_runs.draft_prediction_state(draft=draft)
    if not state.running:
        response = HttpResponse(status=HTMX_STOP_POLLING)
        response["HX-Refresh"] = "true"
        return response
    return render(
        request,
        "imports/draft_confirm.html#prediction-progress",
        {"draft": draft, "prediction_running": state},
    )
