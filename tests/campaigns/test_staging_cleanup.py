"""Deleting an ended campaign's staging copies against localaws: only its own copies, each once, what S3 refuses
kept and retried, audited; by the campaign page, `campaign clean` or by itself at the end (a setting)."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from imports.campaigns import accounting, cleanup, services
from imports.campaigns.staging import campaign_job_stage
from imports.enqueue import CAMPAIGN_STAGING_DELETE
from imports.models import AuditEvent, Campaign, CampaignCopy, CampaignJob, Datastore
from localaws.testing import LocalAWSHandle
from tests.campaigns.conftest import ARCHIVE, STAGING

pytestmark = pytest.mark.django_db


@pytest.fixture
def staged(archive: Datastore, mappings_csv: Path) -> Campaign:
    """A campaign whose staged job (3) was copied, then ended."""
    call_command(
        "campaign", "plan", "--datastore", archive.name, "--input", ARCHIVE, "--mappings", str(mappings_csv),
        "--max-files", "4", "--staging", STAGING, stdout=StringIO(),
    )  # fmt: skip
    campaign = Campaign.objects.get()
    assert services.campaign_start(actor=None, campaign_id=campaign.pk)
    job = CampaignJob.objects.get(campaign=campaign, number=3)
    assert campaign_job_stage(campaign_job_id=job.pk) is None
    return campaign


def _end(campaign: Campaign) -> None:
    Campaign.objects.filter(pk=campaign.pk).update(
        state=Campaign.State.COMPLETED, ended_at=timezone.now()
    )


def _staged_keys(localaws: LocalAWSHandle, campaign: Campaign) -> list[str]:
    listed = localaws.s3_client().list_objects_v2(
        Bucket="staging", Prefix=f"campaigns/{campaign.pk}/"
    )
    return [o["Key"] for o in listed.get("Contents", [])]


def test_a_running_campaign_keeps_its_copies(
    localaws: LocalAWSHandle, staged: Campaign
) -> None:
    with pytest.raises(cleanup.CleanupRefused, match="has not ended"):
        cleanup.campaign_staging_delete(campaign_id=staged.pk, actor=None)
    assert len(_staged_keys(localaws, staged)) == 4


def test_an_ended_campaigns_copies_are_deleted_once_and_audited(
    localaws: LocalAWSHandle, staged: Campaign
) -> None:
    _end(staged)
    localaws.put("s3://staging/campaigns/other-team/keep.dcm", b"not ours")
    localaws.clear_calls()
    done = cleanup.campaign_staging_delete(campaign_id=staged.pk, actor=None)
    assert (done.deleted, done.failed, done.refused) == (4, 0, 0)
    assert len(localaws.calls("s3", "DeleteObject")) == 4
    assert _staged_keys(localaws, staged) == []
    assert localaws.s3_client().get_object(
        Bucket="staging", Key="campaigns/other-team/keep.dcm"
    )
    # Job 3's copies, the only ones made (the other jobs' never ran): deleted; the others left as they were.
    assert set(
        CampaignCopy.objects.filter(job__number=3).values_list("status", flat=True)
    ) == {"deleted"}
    assert "deleted" not in set(
        CampaignCopy.objects.exclude(job__number=3).values_list("status", flat=True)
    )
    event = AuditEvent.objects.get(action=AuditEvent.Action.CAMPAIGN_STAGING_DELETED)
    assert event.details == {
        "staging": f"{STAGING}{staged.pk}/",
        "deleted": 4,
        "failed": 0,
        "refused": 0,
    }
    with pytest.raises(cleanup.CleanupRefused, match="deleted already"):
        cleanup.campaign_staging_delete(campaign_id=staged.pk, actor=None)


def test_a_copy_outside_the_campaigns_folder_is_never_deleted(
    localaws: LocalAWSHandle, staged: Campaign
) -> None:
    _end(staged)
    localaws.put("s3://staging/campaigns/other-team/keep.dcm", b"not ours")
    stray = CampaignCopy.objects.filter(job__campaign=staged, status="copied").first()
    assert stray is not None
    CampaignCopy.objects.filter(pk=stray.pk).update(
        dest_key="campaigns/other-team/keep.dcm"
    )
    done = cleanup.campaign_staging_delete(campaign_id=staged.pk, actor=None)
    assert (done.deleted, done.refused) == (3, 1)
    assert localaws.s3_client().get_object(
        Bucket="staging", Key="campaigns/other-team/keep.dcm"
    )
    stray.refresh_from_db()
    assert stray.status == "copied"
    assert "outside s3://staging/campaigns/" in stray.error


def test_what_s3_refuses_is_kept_with_its_reason_and_retried_on_request(
    localaws: LocalAWSHandle, staged: Campaign
) -> None:
    _end(staged)
    localaws.add_fault(
        service="s3", operation="DeleteObject", error="AccessDenied", count=1
    )
    done = cleanup.campaign_staging_delete(campaign_id=staged.pk, actor=None)
    assert (done.deleted, done.failed) == (3, 1)
    kept = CampaignCopy.objects.get(job__campaign=staged, status="failed")
    assert "not deleted" in kept.error
    assert "AccessDenied" in kept.error
    assert len(_staged_keys(localaws, staged)) == 1
    localaws.clear_calls()
    again = cleanup.campaign_staging_delete(campaign_id=staged.pk, actor=None)
    assert (again.deleted, again.failed) == (1, 0)
    assert len(localaws.calls("s3", "DeleteObject")) == 1
    assert _staged_keys(localaws, staged) == []


def test_campaign_clean_says_what_it_did_and_refuses_a_running_campaign(
    staged: Campaign,
) -> None:
    with pytest.raises(CommandError, match="has not ended") as refused:
        call_command("campaign", "clean", str(staged.pk), stdout=StringIO())
    assert refused.value.returncode == 1
    _end(staged)
    out = StringIO()
    call_command("campaign", "clean", str(staged.pk), stdout=out)
    assert out.getvalue() == f"Campaign {staged.pk}: 4 staging copies deleted.\n"


def test_the_campaign_page_deletes_them_for_an_operator(
    localaws: LocalAWSHandle, staged: Campaign, client_alice: Client
) -> None:
    page = reverse("imports:campaign_detail", args=[staged.pk])
    assert "Delete the staging copies" not in client_alice.get(page).content.decode()
    _end(staged)
    assert "Delete the staging copies" in client_alice.get(page).content.decode()
    response = client_alice.post(
        reverse("imports:campaign_clean", args=[staged.pk]), follow=True
    )
    content = response.content.decode()
    assert "4 staging copies deleted." in content
    assert "the copies were deleted on" in content
    assert _staged_keys(localaws, staged) == []
    assert (
        AuditEvent.objects.get(
            action=AuditEvent.Action.CAMPAIGN_STAGING_DELETED
        ).actor_username
        == "alice"
    )


@pytest.mark.parametrize("on", [True, False])
def test_with_the_setting_on_the_end_of_a_campaign_sends_the_clean_up(
    staged: Campaign,
    settings: Any,
    on: bool,
    sent_tasks: list[tuple[str, int]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.CAMPAIGN_STAGING_DELETE_ON_END = on
    # Every job of the campaign accounted for: the next advance ends it.
    CampaignJob.objects.filter(campaign=staged).update(
        state=CampaignJob.State.CANCELLED, accounted_at=timezone.now()
    )
    Campaign.objects.filter(pk=staged.pk).update(state=Campaign.State.CANCELLED)
    with django_capture_on_commit_callbacks(execute=True):
        accounting.campaign_advance(campaign_id=staged.pk)
    assert Campaign.objects.get(pk=staged.pk).ended_at is not None
    assert ((CAMPAIGN_STAGING_DELETE, staged.pk) in sent_tasks) is on
