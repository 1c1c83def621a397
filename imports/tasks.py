"""Celery tasks: adapters that take primary keys and call the services."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from imports.campaigns import accounting as campaigns
from imports.campaigns import cleanup as campaigncleanup
from imports.campaigns import staging as campaignstaging
from imports.drafts import prediction_runs
from imports.jobs import results as jobresults
from imports.jobs import submit as jobs
from imports.jobs import tracking as jobtracking
from imports.jobs import verification
from imports.operations import audit_checkpoints, health
from imports.scanning import control, fanout


@shared_task(
    name="imports.scan_prefix",
    acks_late=True,
    soft_time_limit=6 * 60 * 60,
    time_limit=6 * 60 * 60 + 300,
)
def scan_prefix(scan_id: int) -> None:
    # The coordinator: it claims the scan with a conditional UPDATE (a redelivered message does nothing),
    # writes the listing as chunks and sends imports.scan_chunk for each; it does not wait for them.
    fanout.scan_coordinate(scan_id=scan_id)


@shared_task(
    name="imports.scan_chunk",
    acks_late=True,
    soft_time_limit=60 * 60,
    time_limit=60 * 60 + 300,
)
def scan_chunk(chunk_id: int) -> None:
    # Claimed with a lease by a conditional UPDATE: a duplicate does nothing, a lost worker's chunk is
    # claimed again once its lease has run out (beat requeues it, scans_recover_stalled).
    fanout.scan_chunk_run(chunk_id=chunk_id)


@shared_task(name="imports.scans_recover_stalled", ignore_result=True)
def scans_recover_stalled() -> None:
    control.scans_recover_stalled()


# --- Import jobs ----------------------------------------------------------------------------


@shared_task(
    name="imports.job_submit",
    bind=True,
    acks_late=True,
    max_retries=None,
    soft_time_limit=150,
    time_limit=180,
)
def job_submit(self: Task[Any, Any], job_id: int) -> None:
    # job_submit claims the job (PENDING → SUBMITTING) with a conditional UPDATE, so a duplicate
    # message does nothing; every attempt sends the job's own clientToken, so no retry makes a second
    # AWS job. It counts attempts itself and fails the job when they run out.
    retry_in = jobs.job_submit(job_id=job_id)
    if retry_in is not None:
        raise self.retry(countdown=retry_in)


@shared_task(
    name="imports.jobs_requeue_pending",
    ignore_result=True,
    soft_time_limit=120,
    time_limit=150,
)
def jobs_requeue_pending() -> None:
    jobs.jobs_requeue_pending()


@shared_task(
    name="imports.jobs_poll",
    ignore_result=True,
    soft_time_limit=120,
    time_limit=150,
    # Beat sends one every few seconds; a run that waited longer than that is stale.
    expires=30,
)
def jobs_poll() -> None:
    jobtracking.jobs_poll()


@shared_task(
    name="imports.job_ingest_results",
    bind=True,
    acks_late=True,
    max_retries=None,
    soft_time_limit=30 * 60,
    time_limit=30 * 60 + 60,
)
def job_ingest_results(self: Task[Any, Any], job_id: int) -> None:
    retry_in = jobresults.job_ingest_results(job_id=job_id)
    if retry_in is not None:
        raise self.retry(countdown=retry_in)


@shared_task(
    name="imports.job_verify",
    bind=True,
    acks_late=True,
    max_retries=None,
    soft_time_limit=30 * 60,
    time_limit=30 * 60 + 60,
)
def job_verify(self: Task[Any, Any], job_id: int) -> None:
    # job_verify claims the job's verification with a conditional UPDATE (a duplicate does nothing) and keeps
    # the image sets it read, so a retry after "not consistent yet" or throttling resumes where it stopped.
    retry_in = verification.job_verify(job_id=job_id)
    if retry_in is not None:
        raise self.retry(countdown=retry_in)


@shared_task(
    name="imports.draft_predict",
    acks_late=True,
    soft_time_limit=30 * 60,
    time_limit=30 * 60 + 60,
)
def draft_predict(prediction_id: int) -> None:
    # Claims the row by its lease: a duplicate message does nothing; a task that died is replaced by the page.
    prediction_runs.draft_prediction_run(prediction_id=prediction_id)


@shared_task(
    name="imports.jobs_sync_external",
    ignore_result=True,
    soft_time_limit=540,
    time_limit=600,
)
def jobs_sync_external() -> None:
    jobtracking.jobs_sync_external()


@shared_task(
    name="imports.job_notify", acks_late=True, soft_time_limit=90, time_limit=120
)
def job_notify(job_id: int) -> None:
    jobtracking.job_notify(job_id=job_id)


# --- Campaigns ------------------------------------------------------------------------------


@shared_task(
    name="imports.campaign_stage",
    bind=True,
    acks_late=True,
    max_retries=30,
    soft_time_limit=60 * 60,
    time_limit=60 * 60 + 60,
)
def campaign_stage(self: Task[Any, Any], campaign_job_id: int) -> None:
    # Only a STAGING job is staged, copy by copy, each marked when verified: a redelivery repeats no copy.
    retry_in = campaignstaging.campaign_job_stage(campaign_job_id=campaign_job_id)
    if retry_in is not None:
        raise self.retry(countdown=retry_in)


@shared_task(
    name="imports.campaign_advance", acks_late=True, soft_time_limit=300, time_limit=330
)
def campaign_advance(campaign_id: int) -> None:
    # Each job is handed over by a conditional UPDATE and an idempotency key: a duplicate message hands none twice.
    campaigns.campaign_advance(campaign_id=campaign_id)


@shared_task(
    name="imports.campaign_notify", acks_late=True, soft_time_limit=90, time_limit=120
)
def campaign_notify(campaign_id: int) -> None:
    # Sent once: campaign_notify claims the campaign's notified_at with a conditional UPDATE first.
    campaigns.campaign_notify(campaign_id=campaign_id)


@shared_task(
    name="imports.campaign_staging_delete",
    acks_late=True,
    soft_time_limit=60 * 60,
    time_limit=60 * 60 + 60,
)
def campaign_staging_delete(campaign_id: int) -> None:
    # The clean-up claims the campaign first, so a duplicate message deletes nothing twice.
    try:
        campaigncleanup.campaign_staging_delete(campaign_id=campaign_id, actor=None)
    except campaigncleanup.CleanupRefused:
        # Not ended, staged nothing, or cleaned already: there is nothing for this message to do.
        return


@shared_task(
    name="imports.campaigns_advance",
    ignore_result=True,
    soft_time_limit=300,
    time_limit=330,
    expires=30,
)
def campaigns_advance() -> None:
    campaigns.campaigns_advance()


@shared_task(name="imports.beat_heartbeat", ignore_result=True, expires=60)
def beat_heartbeat() -> None:
    health.beat_heartbeat()


@shared_task(
    name="imports.audit_checkpoint",
    ignore_result=True,
    soft_time_limit=120,
    time_limit=150,
    expires=600,
)
def audit_checkpoint() -> None:
    # Each run writes a new checkpoint of the head as it is then: a duplicate delivery adds one more, harmlessly.
    audit_checkpoints.audit_checkpoint_write()
