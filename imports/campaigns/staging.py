"""Staging: the CopyObjects of a staged campaign job, each pinned to the scanned version and verified by ETag.

Run by the `imports.campaign_stage` task (acks late): a worker killed mid-way leaves the job STAGING, the message
comes again, and the copies already made are not made twice (CopyObject is idempotent anyway).
"""

from __future__ import annotations

import logging

from django.conf import settings

from imports.aws import client as aws
from imports.aws.copies import s3_copy_object
from imports.enqueue import CAMPAIGN_ADVANCE, enqueue_task
from imports.models import Campaign, CampaignCopy, CampaignJob

logger = logging.getLogger(__name__)


def campaign_job_stage(*, campaign_job_id: int) -> float | None:
    """Make the job's pending copies. None when done (staged, or failed for good); else seconds until a retry."""
    job = (
        CampaignJob.objects.select_related("campaign__datastore")
        .filter(pk=campaign_job_id)
        .first()
    )
    if job is None or job.state != CampaignJob.State.STAGING:
        return None
    if job.campaign.state == Campaign.State.CANCELLED:
        return None  # the campaign's advance cancels the job
    region = job.campaign.datastore.region
    for copy in (
        job.copies.filter(status=CampaignCopy.Status.PENDING).order_by("pk").iterator()
    ):
        try:
            s3_copy_object(
                region=region,
                bucket=copy.bucket,
                key=copy.key,
                etag=copy.etag,
                dest_bucket=copy.dest_bucket,
                dest_key=copy.dest_key,
            )
        except aws.AwsError as error:
            if error.transient:
                logger.warning(
                    "Campaign job %s: staging copy %s: %s; retrying",
                    job.pk,
                    copy.pk,
                    error.code,
                )
                return float(settings.CAMPAIGN_STAGE_RETRY_S)
            reason = (
                "the source was rewritten since its scan"
                if isinstance(error, aws.PreconditionFailed)
                else str(error)
            )
            CampaignCopy.objects.filter(pk=copy.pk).update(
                status=CampaignCopy.Status.FAILED, error=str(error)
            )
            CampaignJob.objects.filter(
                pk=job.pk, state=CampaignJob.State.STAGING
            ).update(
                state=CampaignJob.State.STAGING_FAILED,
                error=f"Staging failed, so the job was not submitted: s3://{copy.bucket}/{copy.key}: {reason}.",
            )
            enqueue_task(CAMPAIGN_ADVANCE, job.campaign_id)
            return None
        CampaignCopy.objects.filter(pk=copy.pk).update(
            status=CampaignCopy.Status.COPIED
        )
    CampaignJob.objects.filter(pk=job.pk, state=CampaignJob.State.STAGING).update(
        state=CampaignJob.State.STAGED
    )
    enqueue_task(CAMPAIGN_ADVANCE, job.campaign_id)
    return None
