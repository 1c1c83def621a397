"""What the campaign pages show: the list with each campaign's outcome counts, and one campaign's jobs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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


# The per-object export's columns, in order: what became of each object, and the job that took it.
OBJECT_FIELDS = [
    "bucket", "key", "size", "outcome", "job", "import_job", "image_set_id", "image_set_version",
    "is_primary", "reason",
]  # fmt: skip
# The columns that may carry patient names (keys, and AWS's or the dashboard's reasons, which name keys).
MASKED_OBJECT_FIELDS = frozenset({"key", "reason"})


def campaign_objects(
    *, campaign: Campaign, outcome: str = ""
) -> QuerySet[CampaignObject]:
    """The campaign's objects in plan order, those of one outcome when `outcome` is given, with their jobs."""
    objects = CampaignObject.objects.filter(campaign=campaign)
    if outcome:
        objects = objects.filter(outcome=outcome)
    return objects.select_related("job").order_by("id")


def campaign_object_rows(
    *, campaign: Campaign, outcome: str = ""
) -> Iterator[tuple[Any, ...]]:
    """The export's rows (OBJECT_FIELDS), read in chunks: flat memory however many objects there are."""
    return (
        campaign_objects(campaign=campaign, outcome=outcome)
        .values_list(
            "bucket",
            "key",
            "size",
            "outcome",
            "job__number",
            "job__import_job_id",
            "image_set_id",
            "image_set_version",
            "is_primary",
            "reason",
        )  # fmt: skip
        .iterator(chunk_size=2000)
    )
