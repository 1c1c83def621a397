"""Staging copies against localaws: each copy verified, made once, and a source rewritten since its scan fails the
job, whose objects are then "not imported"."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from imports.campaigns import accounting, services
from imports.campaigns.staging import campaign_job_stage
from imports.models import (
    Campaign,
    CampaignCopy,
    CampaignJob,
    CampaignObject,
    Datastore,
)
from localaws.testing import LocalAWSHandle
from tests.campaigns.conftest import ARCHIVE, STAGING

pytestmark = pytest.mark.django_db


@pytest.fixture
def started(archive: Datastore, mappings_csv: Path) -> Campaign:
    call_command(
        "campaign", "plan", "--datastore", archive.name, "--input", ARCHIVE, "--mappings", str(mappings_csv),
        "--max-files", "4", "--staging", STAGING, stdout=StringIO(),
    )  # fmt: skip
    campaign = Campaign.objects.get()
    assert services.campaign_start(actor=None, campaign_id=campaign.pk)
    return campaign


def test_a_staged_job_is_copied_once_and_then_staged(
    localaws: LocalAWSHandle, started: Campaign
) -> None:
    job = CampaignJob.objects.get(campaign=started, number=3)
    localaws.clear_calls()
    assert campaign_job_stage(campaign_job_id=job.pk) is None
    assert len(localaws.calls("s3", "CopyObject")) == 4
    job.refresh_from_db()
    assert job.state == CampaignJob.State.STAGED
    assert set(job.copies.values_list("status", flat=True)) == {"copied"}
    localaws.clear_calls()
    # A redelivered message: the job is no longer staging, so nothing is copied again.
    assert campaign_job_stage(campaign_job_id=job.pk) is None
    assert localaws.calls("s3", "CopyObject") == []
    listed = localaws.s3_client().list_objects_v2(
        Bucket="staging", Prefix=f"campaigns/{started.pk}/3/"
    )
    assert sorted(o["Key"] for o in listed["Contents"]) == sorted(
        f"campaigns/{started.pk}/3/{key}"
        for key in [f"in/study1/series1/{n}.dcm" for n in range(3)]
        + ["in/meta/study1.json"]
    )


def test_a_source_rewritten_since_its_scan_fails_the_job_and_its_objects_are_not_imported(
    localaws: LocalAWSHandle, started: Campaign
) -> None:
    localaws.put(f"{ARCHIVE}flat/1.dcm", b"rewritten")
    job = CampaignJob.objects.get(campaign=started, number=1)
    assert campaign_job_stage(campaign_job_id=job.pk) is None
    job.refresh_from_db()
    assert job.state == CampaignJob.State.STAGING_FAILED
    assert "in/flat/1.dcm: the source was rewritten since its scan" in job.error
    assert CampaignCopy.objects.filter(job=job, status="failed").count() == 1
    accounting.campaign_advance(campaign_id=started.pk)
    outcomes = set(
        CampaignObject.objects.filter(job=job).values_list("outcome", flat=True)
    )
    assert outcomes == {"not_imported"}
