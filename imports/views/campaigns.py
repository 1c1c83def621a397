"""Campaigns: the list, one campaign's page with its live progress, and pause, resume and cancel for operators."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HTMX_STOP_POLLING

from imports.audit import records as audit
from imports.campaigns import accounting, cleanup, retry, selectors, services
from imports.forms.campaigns import CampaignObjectFilterForm, CampaignPlanForm
from imports.models import Campaign
from imports.views.common import (
    HtmxHttpRequest,
    csv_response,
    filters_query,
    key_mask,
    page_number,
    permission_required,
    render_page,
)

OBJECTS_PER_PAGE = 50

# Who sees campaigns: whoever sees import jobs (a campaign is a set of them).
VIEW = "imports.view_importjob"


def _get_campaign_for_user(request: HttpRequest, pk: int) -> Campaign:
    if not request.user.has_perm(VIEW):
        raise PermissionDenied(VIEW)
    return get_object_or_404(Campaign.objects.select_related("datastore"), pk=pk)


@require_GET
@permission_required(VIEW)
def campaign_list(request: HtmxHttpRequest) -> HttpResponse:
    return _list(request, CampaignPlanForm())


def _list(
    request: HttpRequest, form: CampaignPlanForm, status: int = 200
) -> HttpResponse:
    context = {
        "campaigns": selectors.campaigns_listed()[:200],
        "can_import": request.user.has_perm("imports.import_to_datastore"),
        "plan_form": form,
    }
    return render(request, "imports/campaign_list.html", context, status=status)


@require_POST
@permission_required("imports.import_to_datastore")
def campaign_plan(request: HttpRequest) -> HttpResponse:
    """Plan a campaign from the page's form (nothing runs): its page shows the plan and Start."""
    form = CampaignPlanForm(request.POST, request.FILES)
    if form.is_valid():
        data = form.cleaned_data
        try:
            planned = services.campaign_plan(
                actor=request.user,
                datastore=data["datastore"],
                inputs=data["inputs"],
                mappings=data["mappings"],
                max_files=data["max_files"],
                max_bytes=data["max_bytes"],
                staging_uri=data["staging"],
            )
        except services.CampaignRefused as refused:
            form.add_refusals(refused.problems)
        else:
            campaign = planned.campaign
            messages.success(
                request,
                f"Campaign {campaign.pk} planned: {len(planned.plan.jobs):,} jobs for "
                f"{campaign.object_count:,} objects. Nothing runs until it is started.",
            )
            return redirect("imports:campaign_detail", pk=campaign.pk)
    return _list(request, form, status=400)


def _progress_context(campaign: Campaign) -> dict[str, Any]:
    counts = accounting.campaign_counts(campaign=campaign)
    done = counts["objects"] - counts["unaccounted"]
    return {
        "campaign": campaign,
        "counts": counts,
        "done": done,
        "percent": 100 * done // counts["objects"] if counts["objects"] else 100,
        "job_states": selectors.campaign_job_states(campaign=campaign),
        "live": campaign.ended_at is None and campaign.state != Campaign.State.PLANNED,
    }


class _Masks:
    """Several sources' masks applied in turn: a campaign's keys lie under any of its sources."""

    do_not_call_in_templates = True

    def __init__(self, masks: list[Callable[[str | None], str]]) -> None:
        self._masks = masks

    def __bool__(self) -> bool:
        return any(self._masks)

    def __call__(self, text: str | None) -> str:
        text = text or ""
        for mask in self._masks:
            text = mask(text)
        return text


def _campaign_mask(request: HttpRequest, campaign: Campaign) -> _Masks:
    """Keys may carry patient IDs: masked for viewers with what the scans of each source found (staged keys hold
    the source key whole, so the same masks cover them); unchanged for those who may reveal patient details."""
    return _Masks(
        [
            key_mask(request, uri)
            for uri in campaign.sources.values_list("input_uri", flat=True)
        ]
    )


@require_GET
def campaign_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    campaign = _get_campaign_for_user(request, pk)
    form = CampaignObjectFilterForm(request.GET)
    objects = Paginator(
        selectors.campaign_objects(campaign=campaign, outcome=form.outcome_chosen()),
        OBJECTS_PER_PAGE,
    ).get_page(page_number(request))
    context = _progress_context(campaign)
    context.update(
        {
            "jobs": selectors.campaign_jobs_shown(campaign=campaign),
            "jobs_shown": selectors.JOBS_SHOWN,
            "can_import": request.user.has_perm("imports.import_to_datastore"),
            "key_mask": _campaign_mask(request, campaign),
            "object_form": form,
            "objects": objects,
            "objects_query": filters_query(request),
            "outcome": form.outcome_chosen(),
        }
    )
    return render_page(request, "imports/campaign_detail.html", "objects", context)


@require_GET
def campaign_export(
    request: HttpRequest, pk: int, export_format: str
) -> HttpResponseBase:
    """Every object of the campaign and its outcome (or those of one ?outcome=), streamed as CSV or JSON Lines;
    keys and reasons masked for viewers; audited."""
    campaign = _get_campaign_for_user(request, pk)
    form = CampaignObjectFilterForm(request.GET)
    if not form.is_valid():
        problems = "; ".join(
            f"{name}: {' '.join(str(e) for e in errors)}"
            for name, errors in form.errors.items()
        )
        return HttpResponse(
            f"Nothing was exported: {problems}",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    outcome = form.outcome_chosen()
    audit.export_record(
        actor=request.user,
        what=f"the objects of campaign {campaign.pk}",
        export_format=export_format,
        filters={"outcome": outcome},
        target=campaign,
    )
    mask = _campaign_mask(request, campaign)
    fields = selectors.OBJECT_FIELDS
    masked = [name in selectors.MASKED_OBJECT_FIELDS for name in fields]
    rows = (
        [
            mask(value) if hide else value
            for value, hide in zip(row, masked, strict=True)
        ]
        for row in selectors.campaign_object_rows(campaign=campaign, outcome=outcome)
    )
    name = f"campaign-{campaign.pk}-objects" + (f"-{outcome}" if outcome else "")
    if export_format == "csv":
        return csv_response(f"{name}.csv", fields, rows)

    def lines() -> Iterator[str]:
        for row in rows:
            yield json.dumps(dict(zip(fields, row, strict=True))) + "\n"

    response = StreamingHttpResponse(
        lines(), content_type="application/x-ndjson; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{name}.jsonl"'
    return response


@require_GET
def campaign_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The polled progress fragment; 286 (stop polling) once the campaign has ended."""
    campaign = _get_campaign_for_user(request, pk)
    context = {
        **_progress_context(campaign),
        "can_import": request.user.has_perm("imports.import_to_datastore"),
    }
    response = render(request, "imports/campaign_detail.html#progress", context)
    if not context["live"]:
        response.status_code = HTMX_STOP_POLLING
    return response


def _change(request: HttpRequest, pk: int, change: Any, done: str) -> HttpResponse:
    campaign = _get_campaign_for_user(request, pk)
    if change(actor=request.user, campaign_id=campaign.pk):
        messages.success(request, f"Campaign {campaign.pk} {done}.")
    else:
        messages.error(
            request,
            f"Campaign {campaign.pk} is {campaign.get_state_display().lower()}: it cannot be {done} now.",
        )
    return redirect("imports:campaign_detail", pk=campaign.pk)


@require_POST
@permission_required("imports.import_to_datastore")
def campaign_start(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _get_campaign_for_user(request, pk)
    try:
        started = services.campaign_start(actor=request.user, campaign_id=campaign.pk)
    except services.CampaignRefused as refused:
        messages.error(request, " ".join(refused.problems))
        return redirect("imports:campaign_detail", pk=campaign.pk)
    if started:
        messages.success(
            request,
            f"Campaign {campaign.pk} started: its jobs are handed to submission as the datastore's quota allows.",
        )
    else:
        campaign.refresh_from_db()
        messages.error(
            request,
            f"Campaign {campaign.pk} is {campaign.get_state_display().lower()}: it was started already, and "
            "nothing was submitted again.",
        )
    return redirect("imports:campaign_detail", pk=campaign.pk)


@require_POST
@permission_required("imports.import_to_datastore")
def campaign_clean(request: HttpRequest, pk: int) -> HttpResponse:
    """Delete an ended campaign's staging copies (audited); what S3 kept is said and can be asked again."""
    campaign = _get_campaign_for_user(request, pk)
    try:
        done = cleanup.campaign_staging_delete(
            campaign_id=campaign.pk, actor=request.user
        )
    except cleanup.CleanupRefused as refused:
        messages.error(request, str(refused))
        return redirect("imports:campaign_detail", pk=campaign.pk)
    kept = done.failed + done.refused
    if kept:
        messages.warning(
            request,
            f"{done.deleted:,} staging copies deleted; {kept:,} kept (their reasons are in the copies' list). "
            "Delete them again to retry.",
        )
    else:
        messages.success(request, f"{done.deleted:,} staging copies deleted.")
    return redirect("imports:campaign_detail", pk=campaign.pk)


@require_POST
@permission_required("imports.import_to_datastore")
def campaign_retry_failed(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _get_campaign_for_user(request, pk)
    try:
        retried = retry.campaign_retry_failed(
            actor=request.user, campaign_id=campaign.pk
        )
    except services.CampaignRefused as refused:
        messages.error(request, " ".join(refused.problems))
        return redirect("imports:campaign_detail", pk=campaign.pk)
    said = []
    if retried.jobs:
        n = len(retried.jobs)
        said.append(
            f"{n} job{'s' if n != 1 else ''} that failed as a whole {'are' if n != 1 else 'is'} handed over again "
            f"(job{'s' if n != 1 else ''} {', '.join(map(str, retried.jobs))}); the campaign runs until "
            "their objects are accounted for."
        )
    if retried.drafts:
        n = len(retried.drafts)
        said.append(
            f"{n} draft{'s' if n != 1 else ''} ({', '.join(f'draft {d.pk}' for d in retried.drafts)}) "
            f"hold{'s' if n == 1 else ''} the studies of the files that failed in completed jobs: review and "
            "confirm them on the Drafts page."
        )
    if retried.already_drafted:
        said.append(
            f"{retried.already_drafted} completed job{'s' if retried.already_drafted != 1 else ''} with failed "
            "files already had a draft made from them."
        )
    if retried.unknown_files:
        said.append(
            f"{retried.unknown_files} failed file{'s are' if retried.unknown_files != 1 else ' is'} not DICOM "
            "or not in a scan, so a retry cannot help: fix or remove them under the source prefix."
        )
    if retried:
        messages.success(request, " ".join(said))
    else:
        messages.warning(
            request,
            " ".join(
                [
                    "Nothing to retry: no job failed as a whole, and no failed file belongs to a known study."
                ]
                + said
            ),
        )
    return redirect("imports:campaign_detail", pk=campaign.pk)


@require_POST
@permission_required("imports.import_to_datastore")
def campaign_pause(request: HttpRequest, pk: int) -> HttpResponse:
    return _change(request, pk, services.campaign_pause, "paused")


@require_POST
@permission_required("imports.import_to_datastore")
def campaign_resume(request: HttpRequest, pk: int) -> HttpResponse:
    return _change(request, pk, services.campaign_resume, "resumed")


@require_POST
@permission_required("imports.import_to_datastore")
def campaign_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    return _change(request, pk, services.campaign_cancel, "cancelled")
