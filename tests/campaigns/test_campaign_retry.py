""" "Retry failed files" across a campaign: jobs that failed as a whole are handed over again as a new attempt
(submitted once, with their own key); completed jobs' failed files get a draft, as on the job page."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from imports.campaigns import accounting, retry, services
from imports.models import (
    AuditEvent,
    Campaign,
    CampaignJob,
    CampaignObject,
    Datastore,
    ImportDraft,
    ImportJob,
    ImportJobResult,
)
from tests.builders import make_job
from tests.campaigns.conftest import ARCHIVE, STAGING

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(archive: Datastore) -> Campaign:
    campaign = services.campaign_plan(
        actor=None,
        datastore=archive,
        inputs=[ARCHIVE],
        max_files=4,
        staging_uri=STAGING,
    ).campaign
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.RUNNING)
    campaign.refresh_from_db()
    return campaign


def study3_job(campaign: Campaign) -> CampaignJob:
    return campaign.jobs.get(input_s3_uri=f"{ARCHIVE}study3/")


def handed_over(
    campaign: Campaign, job: CampaignJob, status: str, **fields: Any
) -> ImportJob:
    """The job as submission leaves it: its import job, with `status`, and accounted for when it has ended."""
    created = accounting.campaign_job_submit(job=job, campaign=campaign)
    assert created is not None
    ImportJob.objects.filter(pk=created.pk).update(status=status, **fields)
    created.refresh_from_db()
    job.refresh_from_db()
    return created


def retried_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=AuditEvent.Action.CAMPAIGN_RETRIED))


def test_a_job_that_failed_as_a_whole_is_handed_over_again_once_with_its_own_key(
    campaign: Campaign,
) -> None:
    job = study3_job(campaign)
    first = handed_over(campaign, job, ImportJob.Status.FAILED, message="broken")
    assert accounting.campaign_job_account(job)
    assert set(job.objects_of.values_list("outcome", flat=True)) == {"not_imported"}
    Campaign.objects.filter(pk=campaign.pk).update(
        state=Campaign.State.COMPLETED, ended_at="2026-12-04T12:00:00Z"
    )

    done = retry.campaign_retry_failed(actor=None, campaign_id=campaign.pk)
    assert (done.jobs, done.previous, done.drafts) == (
        [job.number],
        {job.number: first.pk},
        [],
    )
    job.refresh_from_db()
    assert (job.state, job.attempt, job.import_job, job.accounted_at) == (
        CampaignJob.State.PLANNED, 1, None, None,
    )  # fmt: skip
    assert set(job.objects_of.values_list("outcome", flat=True)) == {"pending"}
    campaign.refresh_from_db()
    assert (campaign.state, campaign.ended_at) == (Campaign.State.RUNNING, None)
    [event] = retried_events()
    assert event.details["jobs"] == [job.number]
    assert event.details["previous_import_jobs"] == {str(job.number): first.pk}

    # A second retry before the new attempt ended finds nothing: no attempt is made twice.
    assert not retry.campaign_retry_failed(actor=None, campaign_id=campaign.pk)
    assert len(retried_events()) == 1

    # The new attempt is a new import job, asked again on purpose, under its own key; submitted once.
    second = accounting.campaign_job_submit(job=job, campaign=campaign)
    assert second is not None
    assert second.pk != first.pk
    assert second.idempotency_key == f"campaign-{campaign.pk}-job-{job.number}-retry-1"
    assert second.request["jobName"] == second.idempotency_key
    assert accounting.campaign_job_submit(job=job, campaign=campaign) is None
    job.refresh_from_db()
    assert job.import_job == second


def test_a_first_attempt_whose_request_a_recent_job_made_is_refused_and_a_retry_is_not(
    campaign: Campaign, archive: Datastore
) -> None:
    """The rule above has its failing case: only a retry asks again; a first attempt is refused as a duplicate."""
    job = study3_job(campaign)
    make_job(
        archive,
        input_s3_uri=job.input_s3_uri,
        key="earlier",
        status=ImportJob.Status.FAILED,
    )
    assert accounting.campaign_job_submit(job=job, campaign=campaign) is None
    job.refresh_from_db()
    assert job.state == CampaignJob.State.REFUSED
    assert "made this same request recently" in job.error
    CampaignJob.objects.filter(pk=job.pk).update(
        state=CampaignJob.State.PLANNED, attempt=1, error=""
    )
    job.refresh_from_db()
    created = accounting.campaign_job_submit(job=job, campaign=campaign)
    assert created is not None
    assert str(created.idempotency_key).endswith("-retry-1")


def test_a_paused_campaign_stays_paused_when_its_failed_jobs_are_retried(
    campaign: Campaign,
) -> None:
    job = study3_job(campaign)
    handed_over(campaign, job, ImportJob.Status.FAILED)
    accounting.campaign_job_account(job)
    Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.PAUSED)
    assert retry.campaign_retry_failed(actor=None, campaign_id=campaign.pk).jobs == [
        job.number
    ]
    assert Campaign.objects.get(pk=campaign.pk).state == Campaign.State.PAUSED
    # Paused: nothing is handed over until it is resumed.
    accounting.campaign_advance(campaign_id=campaign.pk)
    job.refresh_from_db()
    assert (job.state, job.import_job) == (CampaignJob.State.PLANNED, None)


def test_cancelled_and_refused_jobs_and_a_planned_or_cancelled_campaign_are_not_retried(
    campaign: Campaign,
) -> None:
    job = study3_job(campaign)
    handed_over(campaign, job, ImportJob.Status.SUBMIT_FAILED, error_code="Cancelled")
    accounting.campaign_job_account(job)
    other = campaign.jobs.exclude(pk=job.pk).first()
    assert other is not None
    CampaignJob.objects.filter(pk=other.pk).update(
        state=CampaignJob.State.REFUSED, accounted_at="2026-12-04T12:00:00Z"
    )
    assert not retry.campaign_retry_failed(actor=None, campaign_id=campaign.pk)
    assert retried_events() == []
    for state in (Campaign.State.PLANNED, Campaign.State.CANCELLED):
        Campaign.objects.filter(pk=campaign.pk).update(state=state)
        with pytest.raises(services.CampaignRefused, match="only a started campaign"):
            retry.campaign_retry_failed(actor=None, campaign_id=campaign.pk)


def test_failed_files_of_a_completed_job_get_one_draft_of_their_study(
    campaign: Campaign,
) -> None:
    job = study3_job(campaign)
    import_job = handed_over(
        campaign, job, ImportJob.Status.COMPLETED, results=ImportJob.Results.DONE
    )
    ImportJobResult.objects.bulk_create(
        [
            ImportJobResult(job=import_job, line=1, outcome="success", input_file="in/study3/0.dcm",
                            image_set_id="b" * 32, image_set_version=1, is_primary=True),
            ImportJobResult(job=import_job, line=2, outcome="failure", input_file="in/study3/1.dcm",
                            exception_type="ValidationException", message="no pixel data"),
        ]
    )  # fmt: skip
    assert accounting.campaign_job_account(job)
    assert dict(job.objects_of.values_list("key", "outcome")) == {
        "in/study3/0.dcm": "imported",
        "in/study3/1.dcm": "failed",
    }

    done = retry.campaign_retry_failed(actor=None, campaign_id=campaign.pk)
    [draft] = done.drafts
    assert done.jobs == []
    assert draft.source_job == import_job
    assert draft.input_s3_uri == f"{ARCHIVE}study3/"
    # The campaign reports what its own jobs did: the failed file stays failed.
    assert CampaignObject.objects.get(key="in/study3/1.dcm").outcome == "failed"
    assert [e.details["drafts"] for e in retried_events()] == [[draft.pk]]

    again = retry.campaign_retry_failed(actor=None, campaign_id=campaign.pk)
    assert (again.drafts, again.already_drafted) == ([], 1)
    assert ImportDraft.objects.count() == 1


def test_the_page_offers_the_retry_to_operators_and_says_what_it_did(
    client_alice: Client, client_bob: Client, campaign: Campaign
) -> None:
    url = reverse("imports:campaign_detail", args=[campaign.pk])
    assert "Retry failed files" not in client_alice.get(url).content.decode()
    job = study3_job(campaign)
    handed_over(campaign, job, ImportJob.Status.FAILED)
    accounting.campaign_job_account(job)
    assert "Retry failed files" in client_alice.get(url).content.decode()
    assert "Retry failed files" not in client_bob.get(url).content.decode()
    post = reverse("imports:campaign_retry_failed", args=[campaign.pk])
    assert client_bob.post(post).status_code == 403
    page = client_alice.post(post, follow=True).content.decode()
    assert (
        f"1 job that failed as a whole is handed over again (job {job.number})" in page
    )
    nothing = client_alice.post(post, follow=True).content.decode()
    assert "Nothing to retry" in nothing
    assert [e.actor_username for e in retried_events()] == ["alice"]
