"""A campaign's advance: hand the next jobs to submission, and account for every object from the jobs' results.

Every object ends as exactly one of: imported (image set, version, primary or not), failed (AWS's reason),
skipped (the dashboard's reason, known at planning), or not imported (its job failed as a whole, was refused,
could not be staged, or was cancelled). The campaign is Completed only when none is left unaccounted.

`campaign_advance` runs in Celery (`imports.campaign_advance`, and beat's `imports.campaigns_advance`) and inline
from `campaign status --wait`; every step is a conditional UPDATE, so running it twice at once does no step twice.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from imports.enqueue import CAMPAIGN_NOTIFY, CAMPAIGN_STAGING_DELETE, enqueue_task
from imports.jobs import submit as jobs
from imports.jobs.derived import SameRequest
from imports.jobs.request import InvalidJobRequest, job_request_build
from imports.mappings.rules import Mapping
from imports.models import (
    Campaign,
    CampaignJob,
    CampaignObject,
    ImportJob,
    ImportJobResult,
)

logger = logging.getLogger(__name__)

BATCH = 2000
# The campaign's jobs that wait for a state of their own before they can be handed over.
READY = Q(staged=False, state=CampaignJob.State.PLANNED) | Q(
    state=CampaignJob.State.STAGED
)
# Jobs that never reached submission: every object of theirs is "not imported".
NEVER_SUBMITTED = (
    CampaignJob.State.STAGING_FAILED,
    CampaignJob.State.CANCELLED,
    CampaignJob.State.REFUSED,
)


def campaigns_advance() -> None:
    """Beat: advance every campaign that has work left."""
    for pk in Campaign.objects.filter(
        state__in=(
            Campaign.State.RUNNING,
            Campaign.State.PAUSED,
            Campaign.State.CANCELLED,
        ),
        ended_at__isnull=True,
    ).values_list("pk", flat=True):
        campaign_advance(campaign_id=pk)


def campaign_advance(*, campaign_id: int) -> None:
    campaign = (
        Campaign.objects.select_related("datastore").filter(pk=campaign_id).first()
    )
    if (
        campaign is None
        or campaign.state == Campaign.State.PLANNED
        or campaign.ended_at
    ):
        return
    if campaign.state == Campaign.State.CANCELLED:
        _cancel_unsubmitted(campaign)
    elif campaign.state == Campaign.State.RUNNING:
        _hand_over(campaign)
    for job in campaign.jobs.filter(accounted_at__isnull=True).select_related(
        "import_job"
    ):
        campaign_job_account(job)
    _finish(campaign)


# --- Handing jobs to submission -------------------------------------------------------------


def _hand_over(campaign: Campaign) -> None:
    """As many ready jobs as the datastore's concurrent-jobs quota leaves room for, in plan order.

    The submission path queues behind the same quota anyway; handing over only what can run keeps a pause
    meaningful (nothing handed over is held back) and the datastore's queue short for other users.
    """
    active = (
        CampaignJob.objects.filter(campaign=campaign, state=CampaignJob.State.SUBMITTED)
        .exclude(import_job__status__in=ImportJob.ENDED)
        .count()
    )
    room = campaign.datastore.max_concurrent_jobs - active
    if room <= 0:
        return
    for job in campaign.jobs.filter(READY).order_by("number")[:room]:
        campaign_job_submit(job=job, campaign=campaign)


def campaign_job_submit(*, job: CampaignJob, campaign: Campaign) -> ImportJob | None:
    """Hand one planned job to imports.jobs.submit, once: the claim and the job's creation are one transaction,
    and the idempotency key makes a second creation return the first one's job."""
    # The first attempt keeps the key it always had; each retry (imports.campaigns.retry) has its own.
    key = f"campaign-{campaign.pk}-job-{job.number}" + (
        f"-retry-{job.attempt}" if job.attempt else ""
    )
    request = job_request_build(
        datastore=campaign.datastore,
        input_s3_uri=job.input_s3_uri,
        job_name=key,
        mappings=[
            Mapping(
                m["studyInstanceUID"],
                m.get("seriesInstanceUID", ""),
                m["metadataFilePath"],
            )
            for m in job.mappings
        ],
    )
    with transaction.atomic():
        claimed = CampaignJob.objects.filter(
            pk=job.pk, state=job.state, import_job__isnull=True
        ).update(state=CampaignJob.State.SUBMITTED)
        if not claimed:
            return None
        try:
            with transaction.atomic():
                created = jobs.job_create(
                    actor=campaign.created_by,
                    draft=None,
                    datastore=campaign.datastore,
                    request=request,
                    idempotency_key=key,
                    # A retry asks again on purpose for a job that failed as a whole; its audit names the first.
                    import_again=job.attempt > 0,
                )
        except SameRequest as error:
            CampaignJob.objects.filter(pk=job.pk).update(
                state=CampaignJob.State.REFUSED,
                error=f"Not submitted: import job {error.job.pk} made this same request recently, and importing "
                "the same prefix twice makes duplicate image sets.",
            )
            return None
        except InvalidJobRequest as error:
            CampaignJob.objects.filter(pk=job.pk).update(
                state=CampaignJob.State.REFUSED, error=f"Not submitted: {error}"
            )
            return None
        CampaignJob.objects.filter(pk=job.pk).update(import_job=created)
    return created


def _cancel_unsubmitted(campaign: Campaign) -> None:
    """Jobs not handed over are cancelled; handed-over jobs still waiting in the dashboard's queue are taken out
    of it (a conditional UPDATE that loses to a submission that claimed the job first). Jobs at AWS run on."""
    CampaignJob.objects.filter(campaign=campaign).exclude(
        state=CampaignJob.State.SUBMITTED
    ).exclude(state__in=NEVER_SUBMITTED).update(
        state=CampaignJob.State.CANCELLED,
        error="Cancelled with the campaign before it was submitted.",
    )
    waiting = ImportJob.objects.filter(
        campaign_job__campaign=campaign, status=ImportJob.Status.PENDING
    )
    for import_job in waiting:
        with transaction.atomic():
            if ImportJob.objects.filter(
                pk=import_job.pk, status=ImportJob.Status.PENDING
            ).update(
                status=ImportJob.Status.SUBMIT_FAILED,
                error_code="Cancelled",
                error_message=f"Cancelled with campaign {campaign.pk} before it reached HealthImaging.",
                ended_at=timezone.now(),
            ):
                import_job.status = ImportJob.Status.SUBMIT_FAILED
                jobs.job_status_audit(
                    import_job, ImportJob.Status.PENDING, extra="campaign cancelled"
                )


# --- Accounting -----------------------------------------------------------------------------


def campaign_job_account(job: CampaignJob) -> bool:
    """Give each pending object of an ended job its outcome. False while the job's outcome is not known yet."""
    import_job = job.import_job
    if job.state in NEVER_SUBMITTED:
        reason = job.error or "The job was not submitted."
    elif import_job is None:
        return False
    elif import_job.status in (ImportJob.Status.FAILED, ImportJob.Status.SUBMIT_FAILED):
        said = import_job.message or import_job.error_message or import_job.error_code
        reason = f"Import job {import_job.pk} failed as a whole: {said}"
    elif (
        import_job.status == ImportJob.Status.COMPLETED
        and import_job.results == ImportJob.Results.DONE
    ):
        _account_results(job, import_job)
        return _mark_accounted(job)
    else:
        return False
    CampaignObject.objects.filter(
        job=job, outcome=CampaignObject.Outcome.PENDING
    ).update(outcome=CampaignObject.Outcome.NOT_IMPORTED, reason=reason[:2000])
    return _mark_accounted(job)


def _mark_accounted(job: CampaignJob) -> bool:
    CampaignJob.objects.filter(pk=job.pk, accounted_at__isnull=True).update(
        accounted_at=timezone.now()
    )
    return True


def _result_key(input_file: str) -> str:
    # localaws names the key; a full s3:// URI is read the same way (AWS's form is UNVERIFIED).
    if input_file.startswith("s3://"):
        return input_file[len("s3://") :].partition("/")[2]
    return input_file


def _account_results(job: CampaignJob, import_job: ImportJob) -> None:
    results: dict[str, tuple[str, str, int | None, bool | None, str]] = {}
    for outcome, input_file, image_set, version, primary, kind, message in (
        ImportJobResult.objects.filter(job=import_job)
        .exclude(outcome=ImportJobResult.Outcome.INVALID)
        .values_list(
            "outcome",
            "input_file",
            "image_set_id",
            "image_set_version",
            "is_primary",
            "exception_type",
            "message",
        )
        .iterator(chunk_size=BATCH)
    ):
        results[_result_key(input_file)] = (
            outcome,
            image_set,
            version,
            primary,
            f"{kind}: {message}" if kind else message,
        )
    changed = []
    for obj in CampaignObject.objects.filter(
        job=job, outcome=CampaignObject.Outcome.PENDING
    ).only("pk", "result_key"):
        found = results.get(obj.result_key)
        if found is None:
            continue  # no result line names it: it stays unaccounted, and the campaign cannot complete
        outcome, obj.image_set_id, obj.image_set_version, obj.is_primary, message = (
            found
        )
        if outcome == ImportJobResult.Outcome.FAILURE:
            obj.outcome, obj.reason = CampaignObject.Outcome.FAILED, message[:2000]
        else:
            obj.outcome, obj.reason = CampaignObject.Outcome.IMPORTED, ""
        changed.append(obj)
    CampaignObject.objects.bulk_update(
        changed,
        ["outcome", "reason", "image_set_id", "image_set_version", "is_primary"],
        batch_size=BATCH,
    )


def _finish(campaign: Campaign) -> None:
    if campaign.state not in (Campaign.State.RUNNING, Campaign.State.CANCELLED):
        return
    if campaign.jobs.filter(accounted_at__isnull=True).exists():
        return
    counts = campaign_counts(campaign=campaign)
    state = campaign.state
    if state == Campaign.State.RUNNING:
        state = (
            Campaign.State.COMPLETED
            if counts["unaccounted"] == 0
            else Campaign.State.ENDED
        )
    ended = Campaign.objects.filter(
        pk=campaign.pk, state=campaign.state, ended_at__isnull=True
    ).update(state=state, ended_at=timezone.now())
    if ended:
        enqueue_task(CAMPAIGN_NOTIFY, campaign.pk)
        if campaign.staging_uri and settings.CAMPAIGN_STAGING_DELETE_ON_END:
            enqueue_task(CAMPAIGN_STAGING_DELETE, campaign.pk)


def campaign_notify(*, campaign_id: int) -> bool:
    """Tell the campaign's creator how it ended, once. True if an email went out.

    Counts and a link only: no keys, no UIDs, no patient values leave the dashboard.
    """
    campaign = (
        Campaign.objects.select_related("created_by", "datastore")
        .filter(pk=campaign_id)
        .first()
    )
    if (
        campaign is None
        or campaign.ended_at is None
        or campaign.created_by is None
        or not campaign.created_by.email
    ):
        return False
    if not Campaign.objects.filter(pk=campaign.pk, notified_at__isnull=True).update(
        notified_at=timezone.now()
    ):
        return False
    counts = campaign_counts(campaign=campaign)
    link = settings.SITE_URL.rstrip("/") + reverse(
        "imports:campaign_detail", args=[campaign.pk]
    )
    lines = [
        f"Campaign {campaign.pk} into “{campaign.datastore.name}”: {campaign.get_state_display()}.",
        "",
        f"Jobs: {counts['jobs']}. Objects: {counts['objects']}: imported {counts['imported']}, "
        f"failed {counts['failed']}, skipped {counts['skipped']}, not imported {counts['not_imported']}, "
        f"not accounted for {counts['unaccounted']}.",
        "",
        f"Details: {link}",
    ]
    send_mail(
        subject=f"Campaign {campaign.pk}: {campaign.get_state_display()}",
        message="\n".join(lines),
        from_email=None,
        recipient_list=[campaign.created_by.email],
    )
    return True


def campaign_counts(*, campaign: Campaign) -> dict[str, Any]:
    """`campaign status --json`'s object: jobs, objects, and each outcome, with what is not accounted for."""
    by_outcome = dict(
        CampaignObject.objects.filter(campaign=campaign)
        .values("outcome")
        .annotate(n=Count("pk"))
        .values_list("outcome", "n")
    )
    outcomes: dict[str, int] = {
        name: by_outcome.get(outcome, 0)
        for name, outcome in (
            ("imported", CampaignObject.Outcome.IMPORTED),
            ("failed", CampaignObject.Outcome.FAILED),
            ("skipped", CampaignObject.Outcome.SKIPPED),
            ("not_imported", CampaignObject.Outcome.NOT_IMPORTED),
        )
    }
    return {
        "campaign": campaign.pk,
        "state": campaign.state,
        "jobs": campaign.jobs.count(),
        "objects": campaign.object_count,
        **outcomes,
        "unaccounted": campaign.object_count - sum(outcomes.values()),
    }
