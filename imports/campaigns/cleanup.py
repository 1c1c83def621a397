"""Deleting a campaign's staging copies once it has ended: on request (the campaign page, `campaign clean ID`) or by
itself when CAMPAIGN_STAGING_DELETE_ON_END is on.

Only what the campaign copied is deleted, one DeleteObject a copy, and only under the campaign's own staging
prefix (`<staging>/<campaign>/`): a key outside it is refused and kept, whatever the row says. A copy S3 will not
delete is kept with its error and the rest go on; the run is audited with its counts. The campaign's
`staging_deleted_at` is claimed by a conditional UPDATE, so two runs at once delete nothing twice; a run that
failed on some copies can be asked again, and retries only those.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from imports.audit.records import Actor, audit_record
from imports.aws import client as aws
from imports.models import AuditEvent, Campaign, CampaignCopy
from imports.validators import split_s3_uri


class CleanupRefused(Exception):
    """The campaign cannot have its staging deleted now; the message says why."""


@dataclass(frozen=True)
class Cleanup:
    deleted: int
    failed: int
    refused: int


def staging_prefix(campaign: Campaign) -> tuple[str, str]:
    """(bucket, key prefix) of the campaign's own staging folder."""
    bucket, prefix = split_s3_uri(campaign.staging_uri)
    return bucket, f"{prefix}{campaign.pk}/"


def campaign_staging_delete(*, campaign_id: int, actor: Actor) -> Cleanup:
    campaign = Campaign.objects.select_related("datastore").get(pk=campaign_id)
    if campaign.ended_at is None:
        raise CleanupRefused(
            f"Campaign {campaign.pk} has not ended: its jobs still need their staged copies."
        )
    if not campaign.staging_uri:
        raise CleanupRefused(f"Campaign {campaign.pk} staged nothing.")
    remaining = CampaignCopy.objects.filter(
        job__campaign=campaign,
        status__in=(CampaignCopy.Status.COPIED, CampaignCopy.Status.FAILED),
    ).exclude(dest_key="")
    if campaign.staging_deleted_at is not None and not remaining.exists():
        raise CleanupRefused(
            f"The staging copies of campaign {campaign.pk} were deleted already."
        )
    # The claim: of two runs at once only one goes on (a failed run leaves it set, and may be asked again).
    claimed_at = timezone.now()
    if not Campaign.objects.filter(
        pk=campaign.pk, staging_deleted_at=campaign.staging_deleted_at
    ).update(staging_deleted_at=claimed_at):
        raise CleanupRefused(
            f"The staging copies of campaign {campaign.pk} are being deleted already."
        )
    bucket, prefix = staging_prefix(campaign)
    deleted = failed = refused = 0
    for copy in remaining.order_by("pk").iterator():
        if copy.dest_bucket != bucket or not copy.dest_key.startswith(prefix):
            # Never outside the campaign's own folder, whatever the row says.
            refused += 1
            CampaignCopy.objects.filter(pk=copy.pk).update(
                error=f"not deleted: outside s3://{bucket}/{prefix}"
            )
            continue
        try:
            aws.s3_delete_object(
                region=campaign.datastore.region, bucket=bucket, key=copy.dest_key
            )
        except aws.AwsError as error:
            failed += 1
            CampaignCopy.objects.filter(pk=copy.pk).update(
                status=CampaignCopy.Status.FAILED, error=f"not deleted: {error}"[:2000]
            )
            continue
        deleted += 1
        CampaignCopy.objects.filter(pk=copy.pk).update(
            status=CampaignCopy.Status.DELETED, error=""
        )
    result = Cleanup(deleted=deleted, failed=failed, refused=refused)
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=AuditEvent.Action.CAMPAIGN_STAGING_DELETED,
            target=campaign,
            summary=f"Deleted {deleted:,} staging cop{'y' if deleted == 1 else 'ies'} of campaign {campaign.pk}"
            + (f"; {failed + refused:,} kept" if failed + refused else ""),
            details={
                "staging": f"s3://{bucket}/{prefix}",
                "deleted": deleted,
                "failed": failed,
                "refused": refused,
            },
        )
    return result
