"""What the campaign pages show: the list with each campaign's outcome counts, and one campaign's jobs."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from imports.models import Campaign, CampaignJob, CampaignObject

# A campaign's jobs shown on its page; the CLI's status covers any number.
JOBS_SHOWN = 500


def campaigns_listed() -> QuerySet[Campaign]:
    """Every campaign with its job count and imported objects, in one query."""
    return Campaign.objects.select_related("datastore").annotate(
        job_count=Count("jobs", distinct=True),
        imported=Count(
            "objects_of",
            filter=Q(objects_of__outcome=CampaignObject.Outcome.IMPORTED),
            distinct=True,
        ),
    )


def campaign_jobs_shown(*, campaign: Campaign) -> QuerySet[CampaignJob]:
    return campaign.jobs.select_related("import_job").order_by("number")[:JOBS_SHOWN]


def campaign_job_states(*, campaign: Campaign) -> dict[str, int]:
    """Jobs by what the page says of them: queued, staging, running, completed, failed."""
    states = {"queued": 0, "staging": 0, "running": 0, "completed": 0, "failed": 0}
    for state, status in campaign.jobs.values_list("state", "import_job__status"):
        if state in (CampaignJob.State.PLANNED, CampaignJob.State.STAGED):
            states["queued"] += 1
        elif state == CampaignJob.State.STAGING:
            states["staging"] += 1
        elif state != CampaignJob.State.SUBMITTED or status in (
            "failed",
            "submit_failed",
        ):
            states["failed"] += 1
        elif status == "completed":
            states["completed"] += 1
        else:
            states["running"] += 1
    return states
