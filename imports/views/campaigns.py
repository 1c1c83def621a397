"""Campaigns: the list, one campaign's page with its live progress, and pause, resume and cancel for operators."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HTMX_STOP_POLLING

from imports.campaigns import accounting, selectors, services
from imports.models import Campaign
from imports.views.common import HtmxHttpRequest, key_mask, permission_required

# Who sees campaigns: whoever sees import jobs (a campaign is a set of them).
VIEW = "imports.view_importjob"


def _get_campaign_for_user(request: HttpRequest, pk: int) -> Campaign:
    if not request.user.has_perm(VIEW):
        raise PermissionDenied(VIEW)
    return get_object_or_404(Campaign.objects.select_related("datastore"), pk=pk)


@require_GET
@permission_required(VIEW)
def campaign_list(request: HtmxHttpRequest) -> HttpResponse:
    campaigns = selectors.campaigns_listed()[:200]
    return render(request, "imports/campaign_list.html", {"campaigns": campaigns})


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


@require_GET
def campaign_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    campaign = _get_campaign_for_user(request, pk)
    first = campaign.sources.first()
    context = _progress_context(campaign)
    context.update(
        {
            "jobs": selectors.campaign_jobs_shown(campaign=campaign),
            "jobs_shown": selectors.JOBS_SHOWN,
            "can_import": request.user.has_perm("imports.import_to_datastore"),
            # Keys may carry patient IDs: masked for viewers with what the scans of the first source found
            # (staged keys hold the source key whole, so the same mask covers them).
            "key_mask": key_mask(request, first.input_uri if first else ""),
        }
    )
    return render(request, "imports/campaign_detail.html", context)


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
