""" "Retry failed files" across a campaign.

Two kinds of failure, two kinds of retry:
- A job whose objects are "not imported" because the job failed as a whole at AWS, or could not be staged, is
  handed over again inside the campaign: a new attempt with its own idempotency key (so it is submitted once),
  its objects pending again, the campaign running again until they are accounted for.
- A job that completed with some files failed is retried as the job page's "Retry failed files" does
  (imports.drafts.from_job): a draft of the failed files' studies, to review and confirm. Its input is the whole
  job's, so it is not submitted blindly; those objects stay "failed" in the campaign, which reports what its own
  jobs did.

Jobs that were cancelled or refused are not retried: the campaign was cancelled, or the same request would be
refused again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Q

from imports.audit.records import Actor, audit_record
from imports.campaigns.services import CampaignRefused
from imports.drafts import from_job
from imports.enqueue import CAMPAIGN_ADVANCE, CAMPAIGN_STAGE, enqueue_task
from imports.models import (
    AuditEvent,
    Campaign,
    CampaignCopy,
    CampaignJob,
    CampaignObject,
    ImportDraft,
    ImportJob,
)

# Jobs that failed as a whole: at AWS, or before (the submission failed for good), or in staging. A job taken
# out of the queue by a cancel ends SUBMIT_FAILED with error_code "Cancelled": not retried.
FAILED_AS_A_WHOLE = Q(state=CampaignJob.State.STAGING_FAILED) | (
    Q(
        state=CampaignJob.State.SUBMITTED,
        import_job__status__in=(
            ImportJob.Status.FAILED,
            ImportJob.Status.SUBMIT_FAILED,
        ),
    )
    & ~Q(import_job__error_code="Cancelled")
)


@dataclass
class Retried:
    # Campaign jobs handed over again, by number, and the import job each attempt before had.
    jobs: list[int] = field(default_factory=list)
    previous: dict[int, int | None] = field(default_factory=dict)
    # Drafts made for the failed files of completed jobs.
    drafts: list[ImportDraft] = field(default_factory=list)
    # Failed files no retry can help (not DICOM, or never scanned).
    unknown_files: int = 0
    # Completed jobs with failed files that already have a draft made from them.
    already_drafted: int = 0

    def __bool__(self) -> bool:
        return bool(self.jobs or self.drafts)


def campaign_retry_failed(*, actor: Actor, campaign_id: int) -> Retried:
    """Retry what can be retried; an empty Retried when nothing can. Raises CampaignRefused for a campaign that
    is planned (nothing has failed) or cancelled (nothing is to run again)."""
    campaign = Campaign.objects.get(pk=campaign_id)
    if campaign.state in (Campaign.State.PLANNED, Campaign.State.CANCELLED):
        raise CampaignRefused(
            [
                f"Campaign {campaign.pk} is {campaign.get_state_display().lower()}: only a started campaign "
                "has failed files to retry."
            ]
        )
    retried = Retried()
    with transaction.atomic():
        for job in (
            campaign.jobs.filter(FAILED_AS_A_WHOLE, accounted_at__isnull=False)
            .select_related("import_job")
            .order_by("number")
        ):
            if _hand_over_again(job):
                retried.jobs.append(job.number)
                retried.previous[job.number] = job.import_job_id
        if retried.jobs:
            # An ended campaign runs again until the retried objects are accounted for (the advance hands the
            # jobs over); a paused one stays paused, and hands them over once resumed.
            Campaign.objects.filter(
                pk=campaign.pk,
                state__in=(Campaign.State.COMPLETED, Campaign.State.ENDED),
            ).update(state=Campaign.State.RUNNING, ended_at=None)
            enqueue_task(CAMPAIGN_ADVANCE, campaign.pk)
        _draft_failed_files(campaign, actor, retried)
        if retried:
            audit_record(
                actor=actor,
                action=AuditEvent.Action.CAMPAIGN_RETRIED,
                target=campaign,
                summary=f"Retried the failed files of campaign {campaign.pk}: "
                f"{len(retried.jobs)} job{'s' if len(retried.jobs) != 1 else ''} handed over again, "
                f"{len(retried.drafts)} draft{'s' if len(retried.drafts) != 1 else ''} made",
                details={
                    "jobs": retried.jobs,
                    "previous_import_jobs": {
                        str(n): pk for n, pk in retried.previous.items()
                    },
                    "drafts": [d.pk for d in retried.drafts],
                    "from": campaign.state,
                },
            )
    return retried


def _hand_over_again(job: CampaignJob) -> bool:
    """The job as it was before it was handed over, one attempt later. A conditional UPDATE on the attempt, so
    two retries at once make one new attempt."""
    staging_failed = job.state == CampaignJob.State.STAGING_FAILED
    state = (
        CampaignJob.State.STAGING
        if staging_failed
        else CampaignJob.State.STAGED
        if job.staged
        else CampaignJob.State.PLANNED
    )
    if not CampaignJob.objects.filter(
        pk=job.pk, attempt=job.attempt, accounted_at__isnull=False
    ).update(
        state=state,
        attempt=job.attempt + 1,
        import_job=None,
        accounted_at=None,
        error="",
    ):
        return False
    CampaignObject.objects.filter(
        job=job, outcome=CampaignObject.Outcome.NOT_IMPORTED
    ).update(outcome=CampaignObject.Outcome.PENDING, reason="")
    if staging_failed:
        CampaignCopy.objects.filter(job=job, status=CampaignCopy.Status.FAILED).update(
            status=CampaignCopy.Status.PENDING, error=""
        )
        enqueue_task(CAMPAIGN_STAGE, job.pk)
    return True


def _draft_failed_files(campaign: Campaign, actor: Actor, retried: Retried) -> None:
    """A draft per completed job with failed files, as the job page makes one (once: not for a job that already
    has a draft made from it)."""
    import_jobs = (
        ImportJob.objects.filter(
            campaign_job__campaign=campaign,
            status=ImportJob.Status.COMPLETED,
            campaign_job__objects_of__outcome=CampaignObject.Outcome.FAILED,
        )
        .select_related("datastore", "draft")
        .distinct()
        .order_by("pk")
    )
    for import_job in import_jobs:
        if ImportDraft.objects.filter(source_job=import_job).exists():
            retried.already_drafted += 1
            continue
        draft, scope = from_job.job_draft_retry_failed(job=import_job, actor=actor)
        retried.unknown_files += len(scope.unknown_files)
        if draft is not None:
            retried.drafts.append(draft)
